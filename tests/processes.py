"""PipelineHub's processes started the way they are deployed, for tests that need the real thing.

A long-running role runs its Procfile line through a shell, as `make run` (honcho) does; a
one-shot runs `python manage.py ...`. Each gets the repository root as its working directory and
only the environment a user is told to set: PATH, HOME and LANG, the variables of `.env.example`
at their documented values, PYTHONUNBUFFERED (the Dockerfile sets it), and the test's own
database, Redis and keys, all explicit so that a `.env` in the checkout cannot leak into a test.
Nothing else of the test process's environment (no PREFECT_*, no DJANGO_SETTINGS_MODULE) goes in.
"""

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

from django.conf import settings
from django.db import connection

from .prefect.server import free_port

BASE_DIR = Path(__file__).resolve().parents[1]
ONE_SHOTS = {"reconcile": "python manage.py reconcile", "manage": "python manage.py"}
# What each long-running role logs once it is ready for work.
READY_LINES = {
    "worker": " ready.",
    "beat": "beat: Starting...",
    "ingest": "ingest: ",
    "relay": "relay: ",
}


class Response(NamedTuple):
    status: int
    body: str


class DeployedProcess:
    """One role: `web`, `worker`, `beat`, `ingest` (the Procfile's) or a one-shot `reconcile`
    or `manage` (`args` are appended). `env_overrides` replace documented values, e.g. another
    DATABASE_URL or REDIS_URL; unset, the database and Redis are the test process's own."""

    def __init__(self, role, tmp_path, env_overrides=None, args=()):
        self.role = role
        self.command = " ".join([role_command(role), shlex.join(args)]).strip()
        self.log_path = Path(tmp_path) / f"{role}.log"
        self.env_overrides = dict(env_overrides or {})
        self.port = free_port() if role == "web" else None
        self.process = None

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                ["/bin/sh", "-c", self.command],
                cwd=BASE_DIR,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout=60):
        """Until the web server answers HTTP, or a Celery role logs that it is ready."""
        if self.role == "web":
            wait_until(self._answers, timeout, lambda: f"web is not serving:\n{self.tail()}")
        elif self.role in READY_LINES:
            self.wait_for_log(READY_LINES[self.role], timeout)

    def run(self, timeout=120):
        """Run a one-shot to its end; its exit status."""
        self.start()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.command} did not finish:\n{self.tail()}") from None

    def environment(self):
        """Read when the process starts, so that settings a test changed (keys) are passed."""
        env = documented_environment()
        env.update(
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
            HOME=os.environ.get("HOME", "/tmp"),
            LANG=os.environ.get("LANG", "C.UTF-8"),
            PYTHONUNBUFFERED="1",
            DJANGO_SECRET_KEY=settings.SECRET_KEY,
            PIPELINEHUB_SECRET_KEYS=",".join(settings.SECRET_ENCRYPTION_KEYS),
            REDIS_URL=settings.REDIS_URL,
            LOG_LEVEL="INFO",
        )
        if "DATABASE_URL" not in self.env_overrides:
            env["DATABASE_URL"] = database_url()
        if self.port:
            env["WEB_PORT"] = str(self.port)
        env.update(self.env_overrides)
        return env

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, chars=3000):
        return self.log()[-chars:]

    def wait_for_log(self, text, timeout=60, count=1):
        """Until `text` is in the log `count` times; fails at once if the process has ended."""
        wait_until(
            lambda: self.log().count(text) >= count or self._ended(),
            timeout,
            lambda: f"no {text!r} in the {self.role} log:\n{self.tail()}",
        )
        if self.log().count(text) < count:
            raise AssertionError(f"{self.role} ended ({self.process.poll()}):\n{self.tail()}")

    def get(self, path, timeout=10):
        """GET from the web role; HTTP errors are answers too."""
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=timeout) as response:  # noqa: S310 - loopback
                return Response(response.status, response.read().decode())
        except urllib.error.HTTPError as error:
            return Response(error.code, error.read().decode())

    def stop(self, timeout=15):
        """SIGTERM to the process group (a warm shutdown), SIGKILL if it is not gone in time."""
        if not self.process:
            return None
        self._signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.process.returncode

    def kill(self):
        self._signal(signal.SIGKILL)
        if self.process:
            self.process.wait()

    def _signal(self, signum):
        """The whole group: the shell, the role and its children (Celery's pool processes)."""
        if self.process:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def _ended(self):
        return self.process is not None and self.process.poll() is not None

    def _answers(self):
        if self._ended():
            raise AssertionError(f"web ended ({self.process.poll()}):\n{self.tail()}")
        try:
            self.get("/healthz", timeout=2)
        except OSError:
            return False
        return True


def role_command(role):
    if role in ONE_SHOTS:
        return ONE_SHOTS[role]
    for line in (BASE_DIR / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == role:
            return command.strip()
    raise ValueError(f"no role {role!r} in the Procfile or {sorted(ONE_SHOTS)}")


def documented_environment():
    """Every variable of `.env.example` at its documented value."""
    env = {}
    for line in (BASE_DIR / ".env.example").read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            env[name.strip()] = value.strip()
    return env


def database_url():
    """The database the test process uses (pytest-django's test_<name> once it is set up)."""
    db = connection.settings_dict
    password = f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
    return (
        f"postgres://{quote(db['USER'], safe='')}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    )


def wait_until(condition, timeout=60, message=lambda: "condition not met"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(message())
        time.sleep(0.25)
