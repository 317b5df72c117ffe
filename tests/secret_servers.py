"""Real secret managers for the secret backends' tests, each its own process on a free loopback
port, started once per test session and stopped after it: moto's standalone server for AWS
Secrets Manager, and an OpenBao dev server (Vault's API, KV v2 mounted at `secret/`). Both
keep everything in memory, so every test names its secrets uniquely (`unique_name`)."""

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import boto3
import hvac
import pytest

from .prefect.server import free_port

BIN = Path(sys.executable).parent  # moto_server and bao come with the dev requirements
ROOT_TOKEN = "root"
AWS_REGION = "eu-west-1"


class SecretServer:
    """A server process and the log of its output; `start` waits until `health_path` answers."""

    health_path = "/"

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.port = self.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.workdir / "server.log"
        self.process = None

    def free_port(self):
        return free_port()

    def command(self):
        raise NotImplementedError

    def start(self, timeout=60):
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.workdir,
                env={"PATH": os.environ.get("PATH", os.defpath), "HOME": str(self.workdir)},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.command()[0]} did not start:\n{self.log()[-3000:]}")
            time.sleep(0.2)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _answers(self):
        try:
            with urllib.request.urlopen(self.url + self.health_path, timeout=2):  # noqa: S310 - loopback
                return True
        except (OSError, urllib.error.URLError):
            return False


class MotoServer(SecretServer):
    health_path = "/moto-api/"

    def command(self):
        return [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)]

    def client(self):
        """A client of the server's Secrets Manager, as someone else than the hub would use."""
        return boto3.client(
            "secretsmanager",
            endpoint_url=self.url,
            region_name=AWS_REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


class OpenBaoServer(SecretServer):
    health_path = "/v1/sys/health"

    def free_port(self):
        """A free port whose next one is free too: the dev server listens there for its
        cluster, with no option to move it."""
        while True:
            port = free_port()
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port

    def command(self):
        return [
            str(BIN / "bao"),
            "server",
            "-dev",
            f"-dev-root-token-id={ROOT_TOKEN}",
            f"-dev-listen-address=127.0.0.1:{self.port}",
            "-dev-no-store-token",
        ]

    def client(self, token=ROOT_TOKEN):
        return hvac.Client(url=self.url, token=token)


def unique_name(prefix="test"):
    return f"{prefix}/{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def openbao_server(tmp_path_factory):
    server = OpenBaoServer(tmp_path_factory.mktemp("openbao"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def aws_secrets(moto_server, settings, monkeypatch):
    """The aws backend pointed at moto, with the region and the (fake) credentials that the AWS
    chain reads from the environment; a client of moto for changes made outside the hub."""
    settings.AWS_SECRETS_ENDPOINT_URL = moto_server.url
    monkeypatch.setenv("AWS_DEFAULT_REGION", AWS_REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return moto_server.client()


@pytest.fixture
def vault_secrets(openbao_server, settings):
    """The vault backend pointed at OpenBao with the root token; a client for changes made
    outside the hub."""
    settings.VAULT_ADDR = openbao_server.url
    settings.VAULT_TOKEN = ROOT_TOKEN
    settings.VAULT_ROLE_ID = settings.VAULT_SECRET_ID = ""
    settings.VAULT_KV_MOUNT = "secret"
    return openbao_server.client()
