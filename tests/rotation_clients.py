"""Clients of the rotation tests, each a thread of the test's process: a load of commands as
the rotated users, a checker that the stored password logs in, and a reader of everything a
Redis node holds (to look for secrets there)."""

import threading
import time

import redis

from pipelinehub.credentials.models import SecretRef
from pipelinehub.state.connections import environment_client, login_works, target_node_clients

ADMIN_USER = "ph-admin"
RATE = 1000  # commands a second, as the issue asks
RECONNECT_EVERY = 20  # commands between new connections


def users(target, environment):
    """(username, secret id) of the target's own user and of the environment's."""
    return [
        (ADMIN_USER, target.password_id),
        (environment.acl_username, environment.acl_password_id),
    ]


def node_addresses(target):
    return [(target.host, target.port), *target.replica_nodes]


class Load(threading.Thread):
    """Commands as the rotated users at RATE a second (a write as the environment's user on the
    primary, reads as the target's user on the primary and the replica), through the hub's own
    clients, with a new connection every RECONNECT_EVERY commands. Every failure is kept."""

    def __init__(self, target, environment):
        super().__init__(daemon=True)
        key = f"{environment.key_prefix}load"
        env_client = environment_client(environment)
        primary, replica = target_node_clients(target)
        self.commands = [
            (env_client, lambda: env_client.set(key, "x")),
            (primary, lambda: primary.get(key)),
            (replica, lambda: replica.get(key)),
        ]
        self.stopping = threading.Event()
        self.done = 0
        self.failures = []

    def run(self):
        from django.db import connection

        started = time.monotonic()
        while not self.stopping.is_set():
            time.sleep(max(0.0, started + self.done / RATE - time.monotonic()))
            client, command = self.commands[self.done % len(self.commands)]
            try:
                command()
            except redis.RedisError as exc:
                self.failures.append(type(exc).__name__)
            if self.done % RECONNECT_EVERY == 0:
                client.connection_pool.disconnect(inuse_connections=False)
            self.done += 1
        connection.close()

    def stop(self):
        self.stopping.set()
        self.join(30)


READ_BY_TYPE = {
    "string": lambda client, key: [client.get(key)],
    "hash": lambda client, key: list(client.hgetall(key).items()),
    "list": lambda client, key: client.lrange(key, 0, -1),
    "set": lambda client, key: client.smembers(key),
    "zset": lambda client, key: client.zrange(key, 0, -1),
    "stream": lambda client, key: client.xrange(key),
}


def redis_contents(server):
    """Every key name and value of every database of a node, as bytes."""
    seen = []
    for db in range(16):
        client = redis.Redis(port=server.port, db=db)
        for key in client.scan_iter(count=1000):
            value = READ_BY_TYPE[client.type(key).decode()](client, key)
            seen.append(repr((key, value)).encode())
        client.close()
    return b"\n".join(seen)


class Checker(threading.Thread):
    """Proves at every moment that the current stored version of each user's password logs in
    on every node (read again once when it does not: the store may have moved meanwhile)."""

    def __init__(self, target, environment):
        super().__init__(daemon=True)
        self.target, self.users = target, users(target, environment)
        self.stopping = threading.Event()
        self.checks, self.failures = 0, []

    def run(self):
        from django.db import connection

        while not self.stopping.is_set():
            for username, ref_id in self.users:
                for host, port in node_addresses(self.target):
                    if not any(self._logs_in(username, ref_id, host, port) for _ in range(2)):
                        self.failures.append(f"{username} on {port}")
            self.checks += 1
        connection.close()

    def _logs_in(self, username, ref_id, host, port):
        password = SecretRef.objects.get(pk=ref_id).reveal()
        return login_works(self.target, host, port, username, password)

    def wait_for_checks(self, count, timeout=30):
        until, deadline = self.checks + count, time.monotonic() + timeout
        while self.checks < until and time.monotonic() < deadline:
            time.sleep(0.01)

    def stop(self):
        self.stopping.set()
        self.join(30)
