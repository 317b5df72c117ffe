"""A redis-server of a test's (or the benchmark's) own, on a free port, that may be stopped and
started again: it keeps no data on disk, so it comes back empty, as after a crash (with
`aclfile=True` its ACL users are kept in an aclfile, as a production server keeps them). With
`replica_of=` (another PrivateRedis) it is that server's replica (`replicaof`): data replicates,
ACL users do not, as in production.

With `tls=` (a `tests.tls.ServerFiles`) it listens on TLS only, as a production server reachable
from other hosts should: a client without TLS, or one that does not trust its CA, gets nothing."""

import subprocess
import time
from pathlib import Path

import redis

from .prefect.server import free_port


class PrivateRedis:
    def __init__(self, workdir, aclfile=False, tls=None, replica_of=None):
        self.workdir = workdir
        self.aclfile = aclfile
        self.tls = tls
        self.replica_of = replica_of
        self.port = free_port()
        self.process = None
        self.client = redis.Redis(port=self.port, **self._client_tls())

    def _client_tls(self):
        """The test's own client trusts the server's CA and checks its name: 127.0.0.1, which
        the test certificates carry, not redis-py's default "localhost"."""
        if not self.tls:
            return {}
        return {
            "host": "127.0.0.1",
            "ssl": True,
            "ssl_ca_certs": str(self.tls.ca_path),
            "ssl_cert_reqs": "required",
        }

    def start(self, timeout=10):
        self.process = subprocess.Popen(
            [
                "redis-server",
                *self._listen_arguments(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                *self._acl_arguments(),
                *self._replica_arguments(),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def _listen_arguments(self):
        """The plain port, or with TLS no plain port at all (`--port 0`) and the TLS port.

        Clients present no certificate (`tls-auth-clients no`): the hub's connections authenticate
        with an ACL user and password, not with client certificates."""
        if not self.tls:
            return ["--port", str(self.port)]
        return [
            "--port",
            "0",
            "--tls-port",
            str(self.port),
            "--tls-cert-file",
            str(self.tls.cert_path),
            "--tls-key-file",
            str(self.tls.key_path),
            "--tls-ca-cert-file",
            str(self.tls.ca_path),
            "--tls-auth-clients",
            "no",
        ]

    def _acl_arguments(self):
        if not self.aclfile:
            return []
        path = Path(self.workdir) / f"users-{self.port}.acl"
        path.touch()
        return ["--aclfile", str(path)]

    def _replica_arguments(self):
        if self.replica_of is None:
            return []
        return ["--replicaof", "127.0.0.1", str(self.replica_of.port)]

    def wait_in_sync(self, timeout=10):
        """Wait until this replica's link to its primary is up."""
        deadline = time.monotonic() + timeout
        while self.client.info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise RuntimeError("the replica did not connect to its primary")
            time.sleep(0.05)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def _answers(self):
        try:
            return self.client.ping()
        except redis.ConnectionError:
            return False
