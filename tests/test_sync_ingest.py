"""Ingest under real traffic: a burst that overflows Prefect's live backlog, a Redis target
that stops answering, and events nobody should send. Real Prefect server, real Redis."""

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest
from prefect.states import Running

from pipelinehub.credentials.models import SecretRef
from pipelinehub.environments.models import Environment, PrefectWorkspace, RedisTarget, Team
from pipelinehub.state.store import EnvironmentState
from pipelinehub.sync.models import ReconcileReport
from pipelinehub.sync.prefect import RUN_EVENT_PREFIXES, KeptClient, rest_client
from pipelinehub.sync.reads import events

from .prefect.fixtures import (
    assert_mirrors_prefect,
    deployment_run,
    prefect,
    prefect_truth,
    wait_until,
)
from .prefect.server import AUTH_STRING

pytestmark = pytest.mark.prefect
FLOWS = Path(__file__).parent / "prefect" / "flows.py"
BURSTS = 3  # flows at once, each mapping 300 tasks: about 2,700 events in under a minute


def test_a_burst_beyond_the_live_backlog_converges_without_reconcile(
    prefect_server, prefect_environment, ingest
):
    ingest.start()
    ingest.wait_for_log("live environments=")
    started = datetime.now(UTC)
    flows = [
        subprocess.Popen(
            [sys.executable, str(FLOWS), "burst"],
            env=prefect_server.client_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(BURSTS)
    ]
    for process in flows:
        assert process.wait(300) == 0, process.stderr.read()[-2000:]

    flows_done = time.monotonic()
    # Prefect records task states after the flows end, late under load: nothing can mirror
    # what its API does not hold yet, so the 30 s count from when the API has settled.
    wait_until(lambda: _settled(prefect_environment), 120, lambda: "Prefect's API never settled")
    settled = time.monotonic()
    try:
        assert_mirrors_prefect(prefect_environment, timeout=30)
    except AssertionError as failure:
        lines = [line for line in ingest.log().splitlines() if "pipelinehub" in line]
        raise AssertionError(f"{failure}\ningest:\n" + "\n".join(lines[-40:])) from None
    converged = time.monotonic() - settled

    persisted = _persisted_events(prefect_environment, started)
    delivered = sum(map(int, re.findall(r"source=live events=(\d+)", ingest.log())))
    print(
        f"\nburst: {persisted} events persisted, {delivered} delivered live, "
        f"Prefect's API settled {settled - flows_done:.1f} s after the last flow ended, "
        f"Redis equal to it {converged:.1f} s later"
    )
    assert delivered < persisted, "the burst did not overflow the live stream: make it bigger"
    # Only the first catch-up reconciled: the rest was the follow-up's doing.
    assert ReconcileReport.objects.filter(environment=prefect_environment).count() == 1


def test_a_redis_that_stops_answering_stalls_only_its_own_environment(
    prefect_server, prefect_environment, private_redis, ingest
):
    paused = environment_on(prefect_server, "127.0.0.1", private_redis.port)
    ingest.start()
    ingest.wait_for_log("live environments=", count=2)
    os.kill(private_redis.process.pid, signal.SIGSTOP)
    try:
        prefect_server.run_flows("ok,fail")
        assert_mirrors_prefect(prefect_environment, timeout=30)
    finally:
        os.kill(private_redis.process.pid, signal.SIGCONT)
    assert_mirrors_prefect(paused, timeout=60)


def _settled(environment):
    """Whether the Prefect API shows the same runs in the same states twice, 3 s apart."""
    first = {(c.kind, c.id, c.version) for c in prefect_truth(environment)}
    time.sleep(3)
    return first == {(c.kind, c.id, c.version) for c in prefect_truth(environment)}


def environment_on(prefect_server, host, port):
    """Another team's environment on the test Prefect server, in a Redis of the test's own."""
    name = uuid.uuid4().hex[:8]
    key = SecretRef.objects.create(name=f"prefect/{name}")
    key.store(AUTH_STRING)
    return Environment.objects.create(
        team=Team.objects.create(slug=f"t{name}", name=name),
        slug="dev",
        workspace=PrefectWorkspace.objects.create(
            name=name, api_url=prefect_server.api_url, api_key=key
        ),
        redis_target=RedisTarget.objects.create(name=name, host=host, port=port),
    )


def _persisted_events(environment, since):
    async def count():
        total = 0
        async with rest_client(environment.workspace) as client:
            until = datetime.now(UTC) + timedelta(minutes=1)
            async for page in events(client, since, until, RUN_EVENT_PREFIXES):
                total += len(page)
        return total

    return asyncio.run(count())


def test_a_run_deleted_in_prefect_while_in_flight_leaves_redis(
    prefect_server, prefect_environment, ingest
):
    """The follow-up asks Prefect by id about runs held unfinished and unchanged for a while;
    one Prefect no longer has is removed (with its removal on the change stream)."""
    ingest.start()
    ingest.wait_for_log("live environments=")
    run_id = str(deployment_run(prefect_environment, Running()))
    state = EnvironmentState.for_environment(prefect_environment)
    wait_until(lambda: state.records("flow", [run_id]), 30, lambda: "the run never arrived")
    cursor = state.cursor()
    prefect(prefect_environment, lambda client: client.delete_flow_run(UUID(run_id)))
    wait_until(lambda: not state.records("flow", [run_id]), 90, lambda: ingest.tail())
    removals = [e.run_id for e in state.changes_since(cursor).entries if e.run is None]
    assert run_id in removals


async def test_follow_up_passes_keep_one_client_until_one_fails(prefect_environment):
    """Prefect's client asks a server for a CSRF token before its first write-like request
    (the follow-up's reads are POSTs); a kept client asks once, not at every pass."""
    paths = []

    async def seen(request):
        paths.append(request.url.path)

    kept = KeptClient(prefect_environment.workspace, on_request=seen)
    first = await kept.get()
    for _ in range(3):
        await (await kept.get()).read_flow_runs(limit=1)
    assert await kept.get() is first
    assert [p.endswith("/csrf-token") for p in paths].count(True) == 1

    await kept.discard()  # after a failed pass
    assert await kept.get() is not first
    await (await kept.get()).read_flow_runs(limit=1)
    assert [p.endswith("/csrf-token") for p in paths].count(True) == 2
    await kept.discard()
