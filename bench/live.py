"""The live board's benchmark: how long a change takes from `apply` to the browsers watching.

    .venv/bin/python -m bench --only live      (also part of `make bench`)

Everything runs as deployed, on this machine: a private Redis holds the environment's state
and is the hub's REDIS_URL (the channel layer); `web` (daphne) and `relay` are the Procfile's
roles (tests/processes.py) over a SQLite database of the run's own, and the clients send the
session cookie of a viewer of the environment. Processes:

- the coordinator (`measure`, a child of `python -m bench`, so that DATABASE_URL, REDIS_URL and
  SECRET_KEY are the run's own) applies changes at a paced rate through
  `EnvironmentState.apply_batch`, keeps the time of each, and listens on the environment's
  channel-layer group as one more process would (a thread), which times the relay alone;
- one client process (bench/live_clients.py) holds the websockets, so that their reading does
  not share the web process; it timestamps each frame's arrival per socket (parsing each
  distinct frame once) and, after the drain, joins each change's first arrival per socket with
  the coordinator's times.

A change is a new flow run whose id carries the run's number and its sequence number, so
nobody needs a table of ids. Times across processes are `time.time()` (one clock); durations
within a process `time.perf_counter()`. CPU seconds per process come from /proc.
"""

import asyncio
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from .child import measure_in_child
from .live_clients import CONNECTING, DRAIN_SECONDS, SNAPSHOT_REPEATS, percentiles, seq_of
from .report import replace_section

CLIENTS = (1, 100, 500)
RATES = (100, 1000)
SECONDS = 15  # of writing, per run
TICK = 0.01  # the writer applies what is due every TICK seconds
SNAPSHOT_RUNS = 10_000
SECTION = "## Live board"
TEAM = "bench"
BASE_DIR = Path(__file__).resolve().parent.parent


def run(output):
    """Measure in a child process (its own database, Redis and secret key) and write the section
    into `output` (docs/benchmarks.md)."""
    from tests.redis_server import PrivateRedis

    with tempfile.TemporaryDirectory(prefix="ph-bench-live-") as workdir:
        redis_server = PrivateRedis(workdir)
        redis_server.start()
        try:
            # Above channels_redis's 5 s BZPOPMIN: redis-py 8 times reads out after 5 s by
            # default, which kills a consumer whenever its process had no message for 5 s
            # (django/channels_redis#422).
            redis_url = f"redis://127.0.0.1:{redis_server.port}/0?socket_timeout=30"
            results = measure_in_child("bench.live", ["measure", workdir], workdir, redis_url)
        finally:
            redis_server.stop()
    write_section(output, results)


# The coordinator


def measure(workdir):
    """Every measurement, as a dict; runs in the coordinator, with Django set up."""
    from django.core.management import call_command

    from pipelinehub.live.relay import SEND_INTERVAL
    from pipelinehub.state.store import EnvironmentState

    call_command("migrate", verbosity=0)
    environment, cookie = _viewed_environment()
    state = EnvironmentState.for_environment(environment)
    state.apply_batch(
        [_change(0, seq, 1_764_000_000_000_000 + seq) for seq in range(SNAPSHOT_RUNS)]
    )
    web, relay = _start_roles(workdir)
    try:
        url = f"ws://127.0.0.1:{web.port}/ws/environments/{TEAM}/live/"
        results = {"machine": _machine(state), "board": _board_seconds(state)}
        results["send_interval"] = SEND_INTERVAL
        snapshot = _client_process(["snapshot", url, cookie]).communicate()[0]
        results["snapshot"] = json.loads(snapshot)
        pids = {"web": web.process.pid, "relay": relay.process.pid}
        results["runs"] = [
            _latency_run(state, environment.pk, pids, (url, cookie), clients, rate, number)
            for number, (clients, rate) in enumerate(itertools.product(CLIENTS, RATES), start=1)
        ]
        return results
    except Exception:
        print(f"web:\n{web.tail()}\nrelay:\n{relay.tail()}", file=sys.stderr)
        raise
    finally:
        web.stop()
        relay.stop()


def _viewed_environment():
    """The environment on the private Redis, and the cookie of a viewer's session."""
    from django.conf import settings
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.contrib.sessions.backends.db import SessionStore

    from pipelinehub.accounts.models import Membership
    from pipelinehub.environments.models import Environment, PrefectWorkspace, RedisTarget, Team

    redis_port = urlsplit(settings.REDIS_URL).port
    team = Team.objects.create(slug=TEAM, name="Bench")
    environment = Environment.objects.create(
        team=team,
        slug="live",
        workspace=PrefectWorkspace.objects.create(name="bench", api_url="http://127.0.0.1:9/api"),
        redis_target=RedisTarget.objects.create(name="bench", host="127.0.0.1", port=redis_port),
        key_prefix="ph:{bench.live}:",
    )
    user = get_user_model().objects.create_user(username="viewer")
    Membership.objects.create(user=user, team=team, role="viewer")
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "pipelinehub.accounts.backends.SingleSignOnBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return environment, f"{settings.SESSION_COOKIE_NAME}={session.session_key}"


def _start_roles(workdir):
    """`web` and `relay` as deployed, on this run's database (the rest is the settings')."""
    from tests.processes import DeployedProcess

    overrides = {"DATABASE_URL": os.environ["DATABASE_URL"]}
    web = DeployedProcess("web", workdir, overrides)
    relay = DeployedProcess("relay", workdir, overrides)
    for role in (web, relay):
        role.start()
    for role in (web, relay):
        role.wait_ready()
    return web, relay


def _change(run_number, seq, version):
    """A new flow run whose id says which run and which change it is (see `seq_of`)."""
    from pipelinehub.state.records import RunChange

    completed = seq % 2 == 1
    return RunChange(
        "flow",
        f"{run_number:08x}-0000-4000-8000-{seq:012x}",
        version,
        "COMPLETED" if completed else "RUNNING",
        "Completed" if completed else "Running",
        name=f"bench-{seq}",
        flow="etl-nightly",
        start=version,
        end=version if completed else None,
        run_count=1,
    )


def _machine(state):
    return {
        "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "node": platform.node(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "redis": state.client.info("server")["redis_version"],
    }


def _board_seconds(state):
    """What a snapshot reads, in-process: `board()` alone, and with the frame built as the
    consumer builds it (rows as dicts, JSON), median of SNAPSHOT_REPEATS."""
    from pipelinehub.live import protocol

    def frame():
        board = state.board(limit=protocol.SNAPSHOT_SCAN)
        rows = [protocol.row(run) for run in board.runs[: protocol.SNAPSHOT_ROWS]]
        return json.dumps(protocol.snapshot(rows, board.counts, board.cursor))

    return {
        "board": _median_seconds(lambda: state.board(limit=protocol.SNAPSHOT_SCAN)),
        "frame": _median_seconds(frame),
        "scan": protocol.SNAPSHOT_SCAN,
        "rows": protocol.SNAPSHOT_ROWS,
        "runs": SNAPSHOT_RUNS,
    }


def _median_seconds(operation):
    times = []
    for _ in range(SNAPSHOT_REPEATS):
        started = time.perf_counter()
        operation()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _client_process(args):
    return subprocess.Popen(
        [sys.executable, "-m", "bench.live_clients", *args],
        cwd=BASE_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _latency_run(state, environment_id, pids, target, clients, rate, number):
    """One run: `clients` sockets watch while `rate` changes a second are applied."""
    total = rate * SECONDS
    _settle(pids["web"])
    process = _client_process(["clients", *target, str(clients), str(total), str(number)])
    if process.stdout.readline().strip() != "ready":
        raise RuntimeError("the client process did not connect its sockets")
    pids = {**pids, "redis": state.client.info("server")["process_id"], "clients": process.pid}
    with RelayListener(environment_id, number, total) as listener:
        before = _cpu_seconds(pids)
        started = time.perf_counter()
        applied = _write(state, rate, total, number)
        writing = time.perf_counter() - started
        cpu = {name: (after - before[name]) / writing for name, after in _cpu_seconds(pids).items()}
        output, _ = process.communicate(json.dumps(applied))
    cpu["others"] = max(0.0, cpu.pop("machine") - sum(cpu.values()))
    result = {
        "clients": clients,
        "rate": rate,
        "achieved_rate": total / writing,
        "cpu": cpu,
        "relay": listener.summary(applied, writing),
        **json.loads(output),
    }
    print(json.dumps(result), file=sys.stderr, flush=True)  # progress: a run takes a while
    return result


def _settle(web_pid, timeout=30):
    """Until the web process is idle (under 10% of a core for half a second): a run that left
    it behind must not slow the next one down."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = _cpu_seconds({"web": web_pid})["web"]
        time.sleep(0.5)
        if _cpu_seconds({"web": web_pid})["web"] - before < 0.05:
            return


def _write(state, rate, total, number):
    """Apply `total` changes, what is due every TICK; the time.time() each batch was sent."""
    applied = [0.0] * total
    sent = tick = 0
    started = time.perf_counter()
    while sent < total:
        tick += 1
        due = min(total, round(rate * TICK * tick))
        version = time.time_ns() // 1000
        batch = [_change(number, seq, version) for seq in range(sent, due)]
        if batch:
            at = time.time()
            state.apply_batch(batch)
            applied[sent:due] = [at] * len(batch)
        sent = due
        time.sleep(max(0.0, started + tick * TICK - time.perf_counter()))
    return applied


def _cpu_seconds(pids):
    """{name: CPU seconds} of each process and its process group (a role's shell, daphne),
    and of the whole machine."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[2]), int(fields[11]) + int(fields[12]))
    cpu = {"coordinator": sum(os.times()[:2]), "machine": _machine_busy_seconds()}
    for name, pid in pids.items():
        used = sum(t for p, (group, t) in stats.items() if p == pid or group == pid)
        cpu[name] = used / ticks
    return cpu


def _machine_busy_seconds():
    """CPU seconds all cores spent on anything but idling: with ours taken out, what other
    processes on the machine took from the run."""
    user, nice, system, idle, iowait, *rest = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + sum(rest)) / os.sysconf("SC_CLK_TCK")


class RelayListener:
    """A member of the environment's channel-layer group, in a thread of its own: when each
    relay message arrives, and how many changes it carries (the relay alone, no websocket)."""

    def __init__(self, environment_id, number, total):
        from pipelinehub.live.relay import group_name

        self.group = group_name(environment_id)
        self.number, self.arrived = number, [0.0] * total
        self.messages = self.changes = 0
        self.ready, self.loop, self.stopping = threading.Event(), None, None
        self.thread = threading.Thread(target=asyncio.run, args=(self._listen(),))

    def __enter__(self):
        self.thread.start()
        self.ready.wait(10)
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(10)

    async def _listen(self):
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(self.group, channel)
        self.loop, self.stopping = asyncio.get_running_loop(), asyncio.Event()
        self.ready.set()
        stop = asyncio.create_task(self.stopping.wait())
        while not stop.done():
            receive = asyncio.create_task(layer.receive(channel))
            await asyncio.wait({receive, stop}, return_when=asyncio.FIRST_COMPLETED)
            if receive.done():
                self._record(time.time(), receive.result())
            else:
                receive.cancel()
        await layer.group_discard(self.group, channel)
        await layer.close_pools()

    def _record(self, at, message):
        self.messages += 1
        self.changes += len(message["changes"])
        for change in message["changes"]:
            seq = seq_of(change["id"], self.number)
            if seq is not None and not self.arrived[seq]:
                self.arrived[seq] = at

    def summary(self, applied, writing):
        latencies = [a - s for a, s in zip(self.arrived, applied, strict=True) if a]
        return {
            "messages_per_second": self.messages / writing,
            "changes_per_message": self.changes / max(1, self.messages),
            **percentiles(latencies, len(applied)),
        }


# The section of docs/benchmarks.md


def write_section(output, results):
    replace_section(output, SECTION, _section(results))


def _ms(value):
    return "missed" if value is None else f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def _run_row(r):
    cpu, relay = r["cpu"], r["relay"]
    rate = f"{r['rate']:,}"
    if r["achieved_rate"] < 0.98 * r["rate"]:
        rate += f" ({r['achieved_rate']:,.0f} applied)"
    socket_messages = r["clients"] * relay["messages_per_second"]
    return (
        f"| {r['clients']} | {rate} | {_ms(r['p50_ms'])} | {_ms(r['p99_ms'])} "
        f"| {_ms(relay['p50_ms'])} / {_ms(relay['p99_ms'])} | {relay['messages_per_second']:.0f} "
        f"({relay['changes_per_message']:.0f}) | {cpu['web'] / socket_messages * 1e6:.0f} "
        f"| {r['missing']:,} | {cpu['web']:.0%} / {cpu['relay']:.0%} / {cpu['redis']:.0%} / "
        f"{cpu['clients']:.0%} / {cpu['others']:.0%} |"
    )


def _section(r):
    machine, board, snapshot = r["machine"], r["board"], r["snapshot"]
    rows = "\n".join(_run_row(run) for run in r["runs"])
    return f"""{SECTION}: from `apply` to the browsers

`.venv/bin/python -m bench --only live` (bench/live.py) on {machine["date"]}, {machine["node"]}
({machine["cores"]} cores, Python {machine["python"]}, Redis {machine["redis"]}). One private
Redis holds the environment and is the hub's channel layer; `web` (daphne) and `relay` run as
deployed (the Procfile's lines, `.env.example`'s values, so DEBUG is on) over a SQLite database;
the websockets, with a viewer's session cookie, live in one client process of their own. The
writer applies new flow runs through `apply_batch`, what is due every {TICK * 1000:.0f} ms, for
{SECONDS} s per row. Latency is from the call of `apply_batch` to a change's first arrival on
each socket, over every socket and change (one that had not arrived {DRAIN_SECONDS} s after the
last write counts as slower than any: "missed"). "Relay" is the same to a plain member of the
environment's channel-layer group (the relay's message, no daphne, no websocket); then its
messages a second (changes in each), and the web process's CPU per socket and relay message in
µs (offered: where web fell behind it did not do all of them). CPU is the share of one core
each process used while the writer ran: web, relay, redis-server, the client process, and every
other process on the machine (the machine has {machine["cores"]} cores; other work on it is not
ours to stop).

| clients | changes/s | p50 ms | p99 ms | relay p50 / p99 ms | relay messages/s (changes each) | web µs per socket-message | missing | CPU web / relay / redis / clients / others |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
{rows}

What dominates is the number of sockets times relay messages, not changes. The relay sends
at most one message per environment every {r["send_interval"] * 1000:.0f} ms (`relay.SEND_INTERVAL`;
before, it sent one per write, 100 to 200 a second at these rates, and 100 sockets were seconds
behind). A web process joins each environment's channel-layer group once (`live/fanout.py`) and
hands every relay message to its sockets itself; messages that queued meanwhile go out merged
where each follows the previous. Before, each socket was a group member: channels_redis stored a
copy of every message per socket and woke each consumer's receive loop for it, which was most
of web's time (p99 215 ms with 100 sockets, and 500 sockets saturated one daphne and fell
seconds behind, on this machine on 2026-11-26). Now what is left per socket and message is the
write (daphne, autobahn's framing, Twisted registering the socket as a writer): the µs above.
The delta is filtered and encoded once per process and filter (`consumer.delta_text`). The
relay and Redis take a few percent; the relay's own latency is mostly its interval.
At 500 sockets and 1,000 changes a second every socket gets about 19 frames a second of about
50 rows each, and the machine's two cores are shared by web, the clients, Redis and the relay.
The client process parses each distinct frame once (`Frames`): parsing the same frame again for
each socket, change by change, took its whole core and delayed its own timestamps (p99 401 ms
at 500 sockets and 1,000 changes a second, measured that way in the same hour). More web
processes (on more cores) divide the per-socket writes.

The bench's REDIS_URL carries `socket_timeout=30`: redis-py 8 times reads out after 5 s by
default and channels_redis blocks 5 s in BZPOPMIN, so a consumer is killed (1011) whenever its
process had no message for 5 s (django/channels_redis#422). Its sockets close
{CONNECTING} at a time: redis-py 8 caps the layer's pool at 100 connections and raises
beyond, and as many consumers leaving their group at once fail.

Snapshot of an environment holding {board["runs"]:,} flow runs: the consumer reads the newest
{board["scan"]:,} (`board(limit={board["scan"]})`, {board["board"] * 1000:.1f} ms alone, median of
{SNAPSHOT_REPEATS}; {board["frame"] * 1000:.1f} ms with the {board["rows"]} rows of the frame as dicts
and JSON); a socket gets its snapshot frame ({snapshot["bytes"]:,} bytes)
{snapshot["connect_median"] * 1000:.1f} ms after it starts connecting (median of {SNAPSHOT_REPEATS},
slowest {snapshot["connect_max"] * 1000:.1f} ms), {snapshot["handshake_median"] * 1000:.1f} ms after
its handshake ended (the session and access check, the group, the board and the frame).

Targets: p99 under 100 ms at 1,000 changes a second with 100 clients, under 250 ms with 500;
a snapshot under 50 ms. {_verdict(r)}
"""


def _verdict(r):
    """Each target, met or missed, in this run."""
    p99 = {(run["clients"], run["rate"]): run["p99_ms"] for run in r["runs"]}
    checks = [
        ("p99 with 100 clients", p99[100, 1000], 100),
        ("p99 with 500 clients", p99[500, 1000], 250),
        ("snapshot", r["snapshot"]["connect_median"] * 1000, 50),
    ]
    return "Here: " + "; ".join(_check(*check) for check in checks) + "."


def _check(name, value, bound):
    if value is None:
        return f"{name} beyond the {DRAIN_SECONDS} s drain, missed"
    return f"{name} {_ms(value)} ms, {'met' if value < bound else 'missed'}"


if __name__ == "__main__":
    role, *arguments = sys.argv[1:]
    if role == "measure":
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pipelinehub.settings")
        import django

        django.setup()
        print(json.dumps(measure(*arguments)))
