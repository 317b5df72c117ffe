"""The benchmarks that run the hub's own code measure in a child process (`python -m bench.<name>
...`) with a database, a Redis and a secret key of the run's own, so that nothing on the
machine is touched and nothing of the parent's Django setup leaks in."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def measure_in_child(module, args, workdir, redis_url, **env):
    """Run `python -m <module> <args>` in `workdir`'s SQLite database with REDIS_URL
    `redis_url` (and `env`), and return the dict its last line of output holds in JSON."""
    child = subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        env={
            **os.environ,
            "DATABASE_URL": f"sqlite:///{workdir}/pipelinehub.sqlite3",
            "REDIS_URL": redis_url,
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
            "LOG_LEVEL": "WARNING",
            **env,
        },
        cwd=BASE_DIR,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return json.loads(child.stdout.strip().splitlines()[-1])
