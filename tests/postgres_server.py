"""A PostgreSQL server of a test's own, on a free loopback port with trust auth, that the test may
stop and start again: restarting the machine's shared server would break everyone else's tests.

Debian's binaries (/usr/lib/postgresql/<version>/bin). PostgreSQL refuses to run as root, so as
root it runs as the `postgres` user, in a directory outside pytest's root-only tmp_path.
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from .prefect.server import free_port


def _bin_dir():
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if versions:
        return versions[-1]
    if pg_ctl := shutil.which("pg_ctl"):
        return Path(pg_ctl).parent
    raise RuntimeError("no PostgreSQL server binaries (initdb, pg_ctl) found")


class PrivatePostgres:
    def __init__(self, database="pipelinehub"):
        self.port = free_port()
        self.database = database
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/{database}"
        self.bin = _bin_dir()
        self.workdir = Path(tempfile.mkdtemp(prefix="pipelinehub-pg-"))
        self.datadir = self.workdir / "data"

    def create(self):
        """initdb, start, and create the database."""
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres", "postgres")
        self._run("initdb", "-D", self.datadir, "-U", "postgres", "--auth=trust", "-E", "UTF8")
        settings = {
            "port": self.port,
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.workdir}'",
            # A test database: durability is not worth the time.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        with open(self.datadir / "postgresql.conf", "a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())
        self.start()
        with psycopg.connect(self.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{self.database}"')

    def start(self):
        self._run("pg_ctl", "-D", self.datadir, "-l", self.workdir / "server.log", "-w", "start")

    def stop(self):
        """A fast shutdown: clients are disconnected ("terminating connection due to
        administrator command"), as in a restart for maintenance or a failover."""
        self._run("pg_ctl", "-D", self.datadir, "-m", "fast", "-w", "stop")

    def destroy(self):
        if (self.datadir / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _run(self, program, *args):
        command = [str(self.bin / program), *map(str, args)]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)
