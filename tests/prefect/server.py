"""A real Prefect server for the tests: `prefect server start` on a free loopback port, with its
own PREFECT_HOME and SQLite database, and basic auth on so that keys are really checked."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

AUTH_STRING = "pipelinehub:prefect-test-secret"

# Services a state mirror does not need. Kept on: the task-run recorder, the event persister
# (read_events, replay) and the event stream.
SERVER_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_UI_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_FOREMAN_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_CANCELLATION_CLEANUP_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_EVENT_LOGGER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_REPOSSESSOR_ENABLED": "false",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    "PREFECT_SERVER_API_AUTH_STRING": AUTH_STRING,
}


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(extra)
    return env


class PrefectServer:
    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.home = self.workdir / "prefect-home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.process = None

    def start(self, timeout=120):
        env = clean_env(**SERVER_ENV, PREFECT_HOME=str(self.home))
        log = open(self.workdir / "server.log", "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Prefect server did not start; see {self.workdir}/server.log")
            time.sleep(0.2)

    def healthy(self):
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=1) as response:  # noqa: S310
                return response.status == 200
        except OSError:
            return False

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def restart(self):
        self.stop()
        self.start()

    def client_env(self, **extra):
        """Environment for a process that runs flows against this server."""
        home = self.workdir / "client-home"
        home.mkdir(exist_ok=True)
        return clean_env(
            PREFECT_API_URL=self.api_url,
            PREFECT_API_AUTH_STRING=AUTH_STRING,
            PREFECT_HOME=str(home),
            PREFECT_LOGGING_LEVEL="WARNING",
            PREFECT_LOGGING_TO_API_ENABLED="false",
            PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED="false",
            **extra,
        )

    def run_flows(self, which="all", timeout=300):
        """Run the test flows (tests/prefect/flows.py) in their own process and wait."""
        result = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("flows.py")), which],
            env=self.client_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"flows failed: {result.stderr[-2000:]}")
        return result.stdout
