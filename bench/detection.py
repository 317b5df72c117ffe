"""Detection benchmark: one pass over an environment with 10,000 flow runs in flight.

    .venv/bin/python -m bench --only detection      (also part of `make bench`)

It fills a private Redis, through `state` as ingest would, with FLOWS flows' completed history
(their baselines) and IN_FLIGHT unfinished flow runs: most running (half of them with
heartbeats), some pending, some scheduled (a few of them late), a few past their baseline.
Then it times the Redis part of a pass as the Celery task runs it (`judge_and_flag`: read the
in-flight runs with their heartbeats, flags and baselines, judge, write the flags, take the
newly failed runs), PASSES times, and the read alone. The results go to the "Detection"
section at the end of docs/benchmarks.md.
"""

import os
import platform
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime

from pipelinehub.detection import rules
from pipelinehub.detection.service import judge_and_flag
from pipelinehub.state.records import RunChange
from pipelinehub.state.store import EnvironmentState
from tests.redis_server import PrivateRedis

from .report import replace_section

IN_FLIGHT = 10_000
FLOWS = 100
HISTORY = 50  # completed runs per flow
PASSES = 20
SECTION = "## Detection"
SECOND = 1_000_000
TARGET_MS = 200


def seed(state, now):
    """The environment's history and its runs in flight; returns how many are past their
    baseline (the flags a pass must find, late runs aside)."""
    deployments = [str(uuid.uuid4()) for _ in range(FLOWS)]
    history = []
    for f in range(FLOWS):
        for n in range(HISTORY):
            start = now - (n + 2) * 3600 * SECOND
            end = start + (60 + n) * SECOND
            history.append(_run("COMPLETED", end, f, deployments[f], start=start, end=end))
    state.apply_batch(history)
    in_flight, beats = [], []
    for i in range(IN_FLIGHT):
        f = i % FLOWS
        if i % 10 == 0:  # scheduled, one in ten of them late
            expected = now + (60 if i % 100 else -600) * SECOND
            in_flight.append(_run("SCHEDULED", now - SECOND, f, deployments[f], expected=expected))
        elif i % 10 == 1:
            in_flight.append(_run("PENDING", now - 30 * SECOND, f, deployments[f]))
        else:  # running for up to 4 minutes; one in a hundred for an hour (runaway)
            started = now - (3600 if i % 100 == 2 else i % 240) * SECOND
            in_flight.append(_run("RUNNING", started, f, deployments[f], start=started))
            if i % 2:
                beats.append((in_flight[-1].id, now - 20 * SECOND))
    for i in range(0, len(in_flight), 500):
        state.apply_batch(in_flight[i : i + 500])
    state.record_heartbeats(beats)
    return sum(1 for i in range(IN_FLIGHT) if i % 100 == 2)


def _run(state_type, version, flow, deployment, start=None, end=None, expected=None):
    return RunChange(
        "flow",
        str(uuid.uuid4()),
        version,
        state_type,
        state_type.title(),
        name="calm-fox",
        flow=f"flow-{flow:03d}",
        deployment=deployment,
        start=start,
        end=end,
        run_count=1,
        expected_start=expected,
    )


def measure(client):
    state = EnvironmentState(client, "ph:{bench.detect}:", 7 * 86400)
    now = time.time_ns() // 1000
    runaway = seed(state, now)
    thresholds = rules.Thresholds()
    passes, judged = [], []
    for _ in range(PASSES):
        started = time.perf_counter()
        runs, judged, _ = judge_and_flag(state, thresholds, now)
        passes.append((time.perf_counter() - started) * 1000)
    reads = []
    for _ in range(PASSES):
        started = time.perf_counter()
        state.unfinished()
        reads.append((time.perf_counter() - started) * 1000)
    kinds = {}
    for flag, _ in judged:
        kinds[flag.kind] = kinds.get(flag.kind, 0) + 1
    return {
        "runs": runs,
        "median_ms": statistics.median(passes),
        "max_ms": max(passes),
        "first_ms": passes[0],
        "read_ms": statistics.median(reads),
        "kinds": kinds,
        "runaway_seeded": runaway,
    }


def run(output):
    redis_server = PrivateRedis(tempfile.mkdtemp(prefix="ph-bench-detect-"))
    redis_server.start()
    try:
        results = measure(redis_server.client)
        version = redis_server.client.info("server")["redis_version"]
    finally:
        redis_server.stop()
    write_section(output, results, version)


def write_section(output, r, redis_version):
    met = "met" if r["median_ms"] < TARGET_MS else "NOT met"
    flags = ", ".join(f"{n:,} {kind}" for kind, n in sorted(r["kinds"].items()))
    section = f"""{SECTION}: one pass over {r["runs"]:,} flow runs in flight

`.venv/bin/python -m bench --only detection` (bench/detection.py) on
{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()} ({os.cpu_count()} cores, Python
{platform.python_version()}, Redis {redis_version} on loopback started by the command). A private
Redis holds {FLOWS} flows with {HISTORY} completed runs each (their baselines) and
{r["runs"]:,} unfinished flow runs: 80% running (half with heartbeats, 1% for an hour, past
their baseline), 10% pending, 10% scheduled (a tenth of them late). The pass is the Redis part
of the Celery task (`detection.service.judge_and_flag`: read the in-flight index, the records,
heartbeats, flags and baselines; judge every run; write the flags with flags.lua; take the
newly failed runs), the same thresholds as the defaults, {PASSES} passes.

| measure | ms |
| --- | --- |
| pass, median | {r["median_ms"]:.0f} |
| pass, slowest | {r["max_ms"]:.0f} |
| first pass (writes every flag and its stream entry) | {r["first_ms"]:.0f} |
| the read alone (`EnvironmentState.unfinished`), median | {r["read_ms"]:.0f} |

Flags found: {flags} (the {r["runaway_seeded"]:,} seeded runaways among them). Target: a
pass under {TARGET_MS} ms with 10,000 runs in flight: **{met}**. The read is a few round trips
whatever the number of runs (the in-flight index, two hashes, the records in HMGETs of 1,000,
the durations of the flows and deployments in flight, pipelined); the rest is decoding and
judging in Python, linear in the runs.
"""
    replace_section(output, SECTION, section)
