"""Fixtures for the sync tests: the Prefect server, an environment wired to it, the ingest
process, and the comparison of Redis with the Prefect API."""

import asyncio
import time
import uuid

import pytest
from prefect.flows import Flow

from pipelinehub.credentials.models import SecretRef
from pipelinehub.environments.models import Environment, PrefectWorkspace, Team
from pipelinehub.state.records import RunRecord
from pipelinehub.state.store import EnvironmentState
from pipelinehub.sync.mapping import change_from_flow_run, change_from_task_run
from pipelinehub.sync.prefect import rest_client
from pipelinehub.sync.reconcile import PAGE

from .. import factories
from ..conftest import delete_prefix, redis_for_tests
from ..processes import DeployedProcess
from ..redis_server import PrivateRedis
from .server import AUTH_STRING, PrefectServer

COMPARED = RunRecord.FIELDS


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    server = PrefectServer(tmp_path_factory.mktemp("prefect"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def prefect_environment(transactional_db, prefect_server):
    """An environment on the test Prefect server and the real Redis, with its own prefix.
    Committed (transactional_db), so that an ingest process sees it."""
    name = uuid.uuid4().hex[:8]
    key = SecretRef.objects.create(name=f"prefect/{name}")
    key.store(AUTH_STRING)
    workspace = PrefectWorkspace.objects.create(
        name=name, api_url=prefect_server.api_url, api_key=key
    )
    target = factories.redis_target(name=name)
    environment = Environment.objects.create(
        team=Team.objects.create(slug=f"t{name}", name=name),
        slug="dev",
        workspace=workspace,
        redis_target=target,
        key_prefix=f"ph:{{sync-{name}}}:",
    )
    yield environment
    delete_prefix(redis_for_tests(), environment.key_prefix)


@pytest.fixture
def ingest(tmp_path):
    """`manage.py ingest` as its own process, as it runs in production."""
    process = DeployedProcess("ingest", tmp_path)
    yield process
    process.kill()


def wait_until(condition, timeout=60, message=lambda: "condition not met"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(message())
        time.sleep(0.25)


def prefect_truth(environment):
    """Every flow run and task run the Prefect API has, as the changes reconcile would make."""

    async def read():
        async with rest_client(environment.workspace) as client:
            flow_runs = await _all(client.read_flow_runs)
            task_runs = await _all(client.read_task_runs)
            flows = {flow.id: flow.name for flow in await client.read_flows(limit=PAGE)}
        return flow_runs, task_runs, flows

    flow_runs, task_runs, flows = asyncio.run(read())
    # A run with no state yet (a mapped task Prefect has created but not started) is nothing
    # to mirror.
    changes = [
        change_from_flow_run(run, flows.get(run.flow_id, "")) for run in flow_runs if run.state
    ]
    changes += [change_from_task_run(run) for run in task_runs if run.flow_run_id and run.state]
    return changes


async def _all(read):
    items, offset = [], 0
    while page := await read(limit=PAGE, offset=offset):
        items += page
        offset += PAGE
    return items


def mismatches(environment):
    """Runs where Redis differs from the Prefect API (empty when they match exactly)."""
    state = EnvironmentState.for_environment(environment)
    truth = prefect_truth(environment)
    differences = []
    for kind in ("flow", "task"):
        expected = {c.id: c for c in truth if c.kind == kind}
        stored = {r.id: r for r in state.records(kind, expected)}
        for run_id, change in expected.items():
            record = stored.get(run_id)
            if record is None:
                differences.append((kind, run_id, "missing"))
                continue
            diff = {
                f: (getattr(record, f), getattr(change, f))
                for f in COMPARED
                if getattr(record, f) != (getattr(change, f) or _empty(f))
            }
            if diff:
                differences.append((kind, run_id, diff))
    extra = state.flow_run_ids() - {c.id for c in truth if c.kind == "flow"}
    differences += [("flow", run_id, "not in Prefect") for run_id in extra]
    return differences


def _empty(field):
    return None if field in ("start", "end") else ("" if field != "run_count" else 0)


def assert_mirrors_prefect(environment, timeout=45):
    wait_until(
        lambda: not mismatches(environment),
        timeout,
        lambda: f"Redis differs from Prefect: {mismatches(environment)[:10]}",
    )


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def prefect(environment, operation):
    async def run():
        async with rest_client(environment.workspace) as client:
            return await operation(client)

    return asyncio.run(run())


def deployment_run(environment, state=None):
    """A flow run of a deployment (no worker: the test moves its states itself)."""

    async def create(client):
        flow = Flow(lambda: None, name=f"ph-deployed-{uuid.uuid4().hex[:6]}")
        flow_id = await client.create_flow(flow)
        deployment_id = await client.create_deployment(
            flow_id=flow_id, name="nightly", entrypoint="flows.py:nightly"
        )
        run = await client.create_flow_run_from_deployment(deployment_id)
        if state is not None:
            await client.set_flow_run_state(run.id, state, force=True)
        return run.id

    return prefect(environment, create)
