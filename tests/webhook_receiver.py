"""A webhook receiver on loopback (http.server in a thread), as a team would run one: it checks
each body's signature the way docs/alerts.md tells receivers to, and answers with the statuses
it is told to (a 503 first, to be "down" for a while), then 200."""

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple


def verify(secret, timestamp, body, signature, tolerance=300):
    """The receiver's check (the snippet of docs/alerts.md): a fresh timestamp, and the
    signature of `<timestamp>.<body>` with the shared secret, compared in constant time."""
    if abs(time.time() - int(timestamp)) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest("sha256=" + expected.hexdigest(), signature)


class Received(NamedTuple):
    headers: dict
    body: bytes
    signed: bool  # the signature verified with the receiver's secret
    at: float  # time.monotonic() on arrival

    @property
    def json(self):
        return json.loads(self.body)


class Receiver:
    def __init__(self, secret="", port=0, statuses=()):
        self.secret = secret
        self.port = port
        self.statuses = list(statuses)  # answered in order to the first requests, then 200
        self.received = []
        self.refused = 0
        self.arrived = threading.Event()
        self._server = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                if status >= 300:
                    receiver.refused += 1
                else:
                    receiver.take(dict(self.headers), body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def take(self, headers, body):
        signed = bool(self.secret) and verify(
            self.secret,
            headers.get("X-PipelineHub-Timestamp", "0"),
            body,
            headers.get("X-PipelineHub-Signature", ""),
        )
        self.received.append(Received(headers, body, signed, time.monotonic()))
        self.arrived.set()

    def wait_for(self, count, timeout=60):
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.received)} of {count} messages arrived")
            time.sleep(0.05)
        return self.received

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
