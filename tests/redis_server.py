"""A redis-server of a test's (or the benchmark's) own, on a free port, that may be stopped and
started again: it keeps nothing on disk, so it comes back empty, as after a crash."""

import subprocess
import time

import redis

from .prefect.server import free_port


class PrivateRedis:
    def __init__(self, workdir):
        self.workdir = workdir
        self.port = free_port()
        self.process = None
        self.client = redis.Redis(port=self.port)

    def start(self, timeout=10):
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
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
