"""Reconcile benchmark: what each mode costs against a week of history.

    .venv/bin/python -m bench --only reconcile      (also part of `make bench`)

It seeds a Prefect server of its own (basic auth on, as in the tests) with DAYS days of
PER_DAY finished flow runs a day, TASKS task runs each, plus RUNNING flow runs still running;
makes an environment (TTL DAYS days) in a private SQLite database and a private Redis; runs a
full reconcile (the whole window, which is what every reconcile did before modes), then
measures "changes" with nothing changed, "changes" after CHANGED new finished flow runs written
through the API, one sweep slice and a whole sweep cycle. The measuring runs in a process of
its own, so that its database is its own whatever DATABASE_URL says; the results replace the
"Reconcile" section of docs/benchmarks.md.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .report import replace_section

DAYS = 7
PER_DAY = 2000
TASKS = 4
RUNNING = 20
CHANGED = 100
QUIET_REPEATS = 5
SECTION = "## Reconcile"


def run(output):
    """Measure in a child process and write the section into `output` (docs/benchmarks.md)."""
    with tempfile.TemporaryDirectory(prefix="ph-bench-reconcile-") as workdir:
        child = subprocess.run(
            [sys.executable, "-m", "bench.reconcile", workdir],
            env={
                **os.environ,
                "DATABASE_URL": f"sqlite:///{workdir}/pipelinehub.sqlite3",
                "LOG_LEVEL": "WARNING",
            },
            cwd=Path(__file__).resolve().parent.parent,
            stdout=subprocess.PIPE,
            text=True,
            check=True,
        )
    write_section(output, json.loads(child.stdout.strip().splitlines()[-1]))


def measure(workdir):
    """The measurements, as a dict; runs in the child process, with Django set up."""
    from tests.prefect.server import PrefectServer
    from tests.redis_server import PrivateRedis

    redis_server = PrivateRedis(workdir)
    prefect = PrefectServer(Path(workdir) / "prefect")
    redis_server.start()
    try:
        seed_seconds = _seed(prefect)
        prefect.start()
        return {"seed_seconds": seed_seconds, **_reconciles(prefect, redis_server.port)}
    finally:
        prefect.stop()
        redis_server.stop()


def _seed(prefect):
    from tests.prefect.server import clean_env

    prefect.start()  # creates the database
    prefect.stop()
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            str(Path(__file__).with_name("seed_prefect.py")),
            str(DAYS * PER_DAY),
            *("--days", str(DAYS), "--tasks", str(TASKS), "--running", str(RUNNING)),
        ],
        env=clean_env(PREFECT_HOME=str(prefect.home)),
        check=True,
    )
    return time.perf_counter() - started


def _reconciles(prefect, redis_port):
    from pipelinehub.state.store import EnvironmentState

    environment = _environment(prefect.api_url, redis_port)
    results = {"full": _timed(environment, "full")}
    results["quiet"] = [_timed(environment, "changes") for _ in range(QUIET_REPEATS)]
    _write_changed_runs(prefect.api_url)
    results["changed"] = _timed(environment, "changes")
    results["sweeps"] = _sweep_cycle(environment)
    results["held_flow_runs"] = len(EnvironmentState.for_environment(environment).flow_run_ids())
    return results


def _environment(api_url, redis_port):
    from pipelinehub.credentials.models import SecretRef
    from pipelinehub.environments.models import Environment, PrefectWorkspace, RedisTarget, Team
    from tests.prefect.server import AUTH_STRING

    key = SecretRef.objects.create(name="prefect/bench")
    key.store(AUTH_STRING)
    return Environment.objects.create(
        team=Team.objects.create(slug="bench", name="Bench"),
        slug="week",
        workspace=PrefectWorkspace.objects.create(name="bench", api_url=api_url, api_key=key),
        redis_target=RedisTarget.objects.create(name="bench", host="127.0.0.1", port=redis_port),
        key_prefix="ph:{bench.week}:",
    )


def _timed(environment, mode):
    """One reconcile: wall seconds (database and event loop included), requests, counts."""
    from pipelinehub.sync.reconcile import reconcile

    started = time.perf_counter()
    report = reconcile(environment, trigger="command", mode=mode)
    seconds = time.perf_counter() - started
    if report.error:
        raise RuntimeError(f"{mode} reconcile failed: {report.error}")
    return {
        "mode": report.mode,
        "seconds": seconds,
        "requests": report.requests,
        "checked": report.checked,
        "missing": report.missing,
        "stale": report.stale,
        "orphaned": report.orphaned,
    }


def _sweep_cycle(environment):
    """Sweeps until the cursor wraps: a whole cycle, back to back."""
    from pipelinehub.state.store import EnvironmentState

    state = EnvironmentState.for_environment(environment)
    sweeps = [_timed(environment, "sweep")]
    while state.meta().get("sweep_cursor"):
        sweeps.append(_timed(environment, "sweep"))
    return sweeps


def _write_changed_runs(api_url):
    """CHANGED flow runs that run and complete now, TASKS task runs each, through the API."""
    import asyncio

    from prefect import flow, task
    from prefect.client.orchestration import PrefectClient
    from prefect.states import Completed, Running

    from tests.prefect.server import AUTH_STRING

    @flow(name="bench-changed")
    def changed():
        pass

    @task(name="bench-step")
    def step():
        pass

    async def write():
        async with PrefectClient(api_url, auth_string=AUTH_STRING) as client:
            for _ in range(CHANGED):
                run = await client.create_flow_run(changed, state=Running())
                for t in range(TASKS):
                    task_run = await client.create_task_run(
                        step, run.id, dynamic_key=str(t), state=Running()
                    )
                    await client.set_task_run_state(task_run.id, Completed(), force=True)
                await client.set_flow_run_state(run.id, Completed())

    asyncio.run(write())


def write_section(output, results):
    replace_section(output, SECTION, _section(results))


def _section(r):
    full, changed, sweeps = r["full"], r["changed"], r["sweeps"]
    quiet_seconds = [q["seconds"] for q in r["quiet"]]
    quiet_requests = {q["requests"] for q in r["quiet"]}
    first, cycle_seconds = sweeps[0], sum(s["seconds"] for s in sweeps)
    return f"""{SECTION}: a week of history, {DAYS * PER_DAY:,} finished flow runs

`.venv/bin/python -m bench --only reconcile` (bench/reconcile.py). Its own Prefect server (basic
auth on) holds {DAYS * PER_DAY:,} completed flow runs with end times spread evenly over the last
{DAYS} days ({PER_DAY:,} a day), {TASKS} task runs each ({DAYS * PER_DAY * TASKS:,}), plus
{RUNNING} flow runs still running ({TASKS} running task runs each), written into its database
by `bench/seed_prefect.py` in {r["seed_seconds"]:.0f} s; the environment keeps finished runs
{DAYS} days, in a Redis of its own. Seconds are wall time of `reconcile()`, reading the
environment from the database included.

| reconcile | API requests | seconds | runs read | missing / stale / removed |
| --- | --- | --- | --- | --- |
| full: the whole window (what every reconcile did before modes) | {full["requests"]} | {full["seconds"]:.1f} | {full["checked"]:,} | {full["missing"]:,} / {full["stale"]} / {full["orphaned"]} |
| changes, nothing changed (median of {QUIET_REPEATS}; slowest {max(quiet_seconds):.2f} s) | {"/".join(map(str, sorted(quiet_requests)))} | {statistics.median(quiet_seconds):.2f} | {r["quiet"][0]["checked"]} | 0 / 0 / 0 |
| changes after {CHANGED} new finished flow runs ({TASKS} task runs each, through the API) | {changed["requests"]} | {changed["seconds"]:.2f} | {changed["checked"]} | {changed["missing"]} / {changed["stale"]} / {changed["orphaned"]} |
| sweep, one slice (the oldest twelfth of the window plus 5 minutes) | {first["requests"]} | {first["seconds"]:.2f} | {first["checked"]:,} | {first["missing"]} / {first["stale"]} / {first["orphaned"]} |
| sweep, a whole cycle ({len(sweeps)} slices, back to back) | {sum(s["requests"] for s in sweeps)} | {cycle_seconds:.1f} | {sum(s["checked"] for s in sweeps):,} | {sum(s["missing"] for s in sweeps)} / {sum(s["stale"] for s in sweeps)} / {sum(s["orphaned"] for s in sweeps)} |

Targets for "changes" with nothing changed: at most 20 requests and under 2 s. What it reads
then is the running flow runs and their task runs: two listings, the flow names, the task runs
of the running flow runs, and the CSRF token the Prefect client asks for before its first POST
(the server answers 422: CSRF protection is off). Per hour at the default schedules (both every 5 minutes), an
environment like this one now costs 12 "changes" and one sweep cycle, about
{12 * max(quiet_requests) + sum(s["requests"] for s in sweeps)} requests when nothing changes,
instead of 12 full reconciles, about {12 * full["requests"]:,}. A sweep reads about a twelfth of
what a full reconcile reads; the cycle reads a little more than one full reconcile (slices
share their boundaries, and the {CHANGED} new runs are in it too). Redis holds
{r["held_flow_runs"]:,} flow runs at the end: the seeded ones and the new ones, less the oldest,
which passed the {DAYS}-day TTL while the benchmark ran and were pruned.
"""


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pipelinehub.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    print(json.dumps(measure(sys.argv[1])))
