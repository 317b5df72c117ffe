"""Password rotation's benchmark: a client at 1,000 commands a second, failed commands and p99
latency during a full rotation, next to the same client without one.

    .venv/bin/python -m bench --only rotation      (also part of `make bench`)

A private Redis primary and its replica (each with an aclfile) hold an environment's ACL user
and the target's own admin user; the measuring process (a child of `python -m bench`, with a
SQLite database and encryption key of its own, the secrets in the database backend) runs the
client in a thread through the hub's own connections (`environment_client`: the cached
credential provider), opening a new connection every RECONNECT_EVERY commands, as the rotated
environment's user. The rotation is the service's two phases (`rotate`, then `retire` after a
grace period shortened to GRACE_SECONDS so that both fall within the window).
"""

import json
import os
import platform
import secrets
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime

from .child import measure_in_child
from .report import replace_section

RATE = 1000
SECONDS = 12
ROTATE_AT = 3.0  # seconds into the rotation window
GRACE_SECONDS = 3.0
RECONNECT_EVERY = 20
SECTION = "## Password rotation"


def run(output):
    """Measure in a child process and write the section into `output`."""
    from cryptography.fernet import Fernet

    from tests.redis_server import PrivateRedis

    with tempfile.TemporaryDirectory(prefix="ph-bench-rotation-") as workdir:
        primary = PrivateRedis(workdir, aclfile=True)
        primary.start()
        primary.client.config_set("repl-diskless-sync-delay", 0)
        replica = PrivateRedis(workdir, aclfile=True, replica_of=primary)
        replica.start()
        try:
            replica.wait_in_sync()
            results = measure_in_child(
                "bench.rotation",
                [primary.port, replica.port],
                workdir,
                f"redis://127.0.0.1:{primary.port}/0",
                PIPELINEHUB_SECRET_KEYS=Fernet.generate_key().decode(),
                PIPELINEHUB_SECRET_BACKEND="database",  # noqa: S106 - a backend name
            )
        finally:
            replica.stop()
            primary.stop()
    write_section(output, results)


def measure(primary_port, replica_port):
    """Both runs, as a dict; in the child, with Django set up."""
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    target, environment = _target(primary_port, replica_port)
    baseline = _client_run(environment, during=None)
    rotated = _client_run(environment, during=lambda: _rotate(target))
    return {"baseline": baseline, "rotation": rotated, "machine": _machine()}


def _target(primary_port, replica_port):
    import redis

    from pipelinehub.credentials.models import SecretRef
    from pipelinehub.environments.models import Environment, PrefectWorkspace, RedisTarget, Team
    from pipelinehub.state.acl import ensure_acl_user

    password = SecretRef.objects.create(name="redis-admin")
    password.store(secrets.token_urlsafe(32))
    for port in (primary_port, replica_port):
        redis.Redis(port=port).execute_command(
            "ACL", "SETUSER", "ph-admin", "on", f">{password.reveal()}", "~*", "&*", "+@all"
        )
    target = RedisTarget.objects.create(
        name="bench",
        host="127.0.0.1",
        port=primary_port,
        username="ph-admin",
        password=password,
        replicas=f"127.0.0.1:{replica_port}",
    )
    environment = Environment.objects.create(
        team=Team.objects.create(slug="bench", name="Bench"),
        slug="rotation",
        workspace=PrefectWorkspace.objects.create(name="bench", api_url="http://127.0.0.1:9/api"),
        redis_target=target,
    )
    ensure_acl_user(environment)
    environment.refresh_from_db()
    return target, environment


def _rotate(target):
    """Both phases, timed; the grace period shortened to fit the window."""
    from pipelinehub.rotation import service

    started = time.perf_counter()
    service.rotate(target)
    first = time.perf_counter() - started
    time.sleep(GRACE_SECONDS)
    started = time.perf_counter()
    rotations = service.retire(target)
    second = time.perf_counter() - started
    return {
        "first_phase_ms": first * 1000,
        "second_phase_ms": second * 1000,
        "statuses": sorted({r.status for r in rotations}),
    }


def _client_run(environment, during):
    """SECONDS of the client at RATE; `during` runs ROTATE_AT seconds in, in this thread."""
    from django.db import connection

    from pipelinehub.state.connections import environment_client

    client = environment_client(environment)
    key = f"{environment.key_prefix}bench"
    latencies, failures, stop = [], [], threading.Event()

    def load():
        started, done = time.monotonic(), 0
        while not stop.is_set():
            time.sleep(max(0.0, started + done / RATE - time.monotonic()))
            sent = time.perf_counter()
            try:
                client.set(key, done) if done % 2 else client.get(key)
            except Exception as exc:  # counted: any failure is what the bench measures
                failures.append(type(exc).__name__)
            latencies.append(time.perf_counter() - sent)
            if done % RECONNECT_EVERY == 0:
                client.connection_pool.disconnect(inuse_connections=False)
            done += 1
        connection.close()

    thread = threading.Thread(target=load)
    started = time.monotonic()
    thread.start()
    rotation = None
    if during is not None:
        time.sleep(ROTATE_AT)
        rotation = during()
    time.sleep(max(0.0, started + SECONDS - time.monotonic()))
    stop.set()
    thread.join()
    elapsed = time.monotonic() - started
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "commands": len(latencies),
        "rate": len(latencies) / elapsed,
        "failed": len(failures),
        "failures": sorted(set(failures)),
        "p50_ms": quantiles[49] * 1000,
        "p99_ms": quantiles[98] * 1000,
        "max_ms": max(latencies) * 1000,
        "rotation": rotation,
    }


def _machine():
    import redis

    from pipelinehub.state.connections import reset_pools

    reset_pools()
    return {
        "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "node": platform.node(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "redis": redis.Redis.from_url(os.environ["REDIS_URL"]).info("server")["redis_version"],
    }


def write_section(output, results):
    replace_section(output, SECTION, _section(results))


def _section(r):
    base, rot, machine = r["baseline"], r["rotation"], r["machine"]
    phases = rot["rotation"]
    ratio = rot["p99_ms"] / base["p99_ms"]
    met = rot["failed"] == 0 and ratio <= 2
    rows = "\n".join(
        f"| {label} | {run['commands']:,} | {run['rate']:,.0f} | {run['failed']} | "
        f"{run['p50_ms']:.2f} | {run['p99_ms']:.2f} | {run['max_ms']:.1f} |"
        for label, run in (("without a rotation", base), ("during a rotation", rot))
    )
    return f"""{SECTION}: a client at {RATE:,} commands a second

`.venv/bin/python -m bench --only rotation` (bench/rotation.py) on {machine["date"]},
{machine["node"]} ({machine["cores"]} cores, Python {machine["python"]}, Redis
{machine["redis"]}). A private Redis primary and its replica, each with an aclfile; the client
is one thread of the measuring process using the hub's own connections as an environment's ACL
user (the cached credential provider), a GET or SET every millisecond, a new connection every
{RECONNECT_EVERY} commands, for {SECONDS} s. The rotation (the target's own user and the
environment's, both phases) starts {ROTATE_AT:.0f} s in; the grace period is shortened to
{GRACE_SECONDS:.0f} s so that the removal of the old passwords falls within the window too.

| run | commands | per second | failed | p50 ms | p99 ms | max ms |
| --- | --- | --- | --- | --- | --- | --- |
{rows}

First phase (add, store, verify; two users, two nodes) {phases["first_phase_ms"]:.0f} ms, second
phase (remove, persist) {phases["second_phase_ms"]:.0f} ms; rotations {", ".join(phases["statuses"])}.
p99 during the rotation is **{ratio:.2f}x** the baseline's. Target: zero failed commands and p99
within 2x: {"met" if met else "missed"}.
"""


if __name__ == "__main__":
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pipelinehub.settings")
    django.setup()
    print(json.dumps(measure(int(sys.argv[1]), int(sys.argv[2]))))
