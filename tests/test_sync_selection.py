"""Two teams on one Prefect server, each environment taking only its work pool's runs: ingest
(live and follow-up) and reconcile alike, and the model refusing a shared workspace without
pools of their own. Real Prefect server (auth on), real Redis, real PostgreSQL."""

import asyncio
import uuid

import pytest
from django.core.exceptions import ValidationError
from prefect import task
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.states import Completed, Pending, Running

from pipelinehub.credentials.models import SecretRef
from pipelinehub.environments.models import Environment, PrefectWorkspace, RedisTarget, Team
from pipelinehub.state.store import EnvironmentState
from pipelinehub.sync.prefect import rest_client
from pipelinehub.sync.reconcile import reconcile

from .conftest import delete_prefix, redis_for_tests
from .prefect.fixtures import wait_until
from .prefect.server import AUTH_STRING

pytestmark = pytest.mark.prefect


@task(name="selection-step")
def step():
    """Stands for a task of the flow runs made below (only its name is sent)."""


@pytest.fixture
def two_teams(transactional_db, prefect_server):
    """Teams alpha and beta on the same Prefect server, in work pools of their own."""
    suffix = uuid.uuid4().hex[:6]
    target = RedisTarget.objects.create(name=f"r{suffix}", host="127.0.0.1", port=6379)
    environments = {}
    for team in ("alpha", "beta"):
        key = SecretRef.objects.create(name=f"prefect/{team}-{suffix}")
        key.store(AUTH_STRING)
        environment = Environment(
            team=Team.objects.create(slug=f"{team}-{suffix}", name=team),
            slug="prod",
            workspace=PrefectWorkspace.objects.create(
                name=f"{team}-{suffix}", api_url=prefect_server.api_url, api_key=key
            ),
            redis_target=target,
            work_pools=f"pool-{team}-{suffix}",
        )
        environment.full_clean()
        environment.save()
        environments[team] = environment
    yield environments
    for environment in environments.values():
        delete_prefix(redis_for_tests(), environment.key_prefix)


def test_teams_on_one_workspace_each_see_only_their_work_pools_runs(two_teams, ingest):
    ingest.start()
    ingest.wait_for_log("live environments=", count=2)
    runs = asyncio.run(_run_in_pools(two_teams))
    for team, environment in two_teams.items():
        flows, tasks = runs[team]
        state = EnvironmentState.for_environment(environment)
        wait_until(
            lambda s=state, f=flows, t=tasks: _held(s) == (f, t),
            30,
            lambda s=state, f=flows, t=tasks, n=team: f"{n}: {_held(s)} != {(f, t)}",
        )
    for environment in two_teams.values():
        delete_prefix(redis_for_tests(), environment.key_prefix)
        assert not reconcile(environment, mode="full").error
    for team, environment in two_teams.items():
        assert _held(EnvironmentState.for_environment(environment)) == runs[team]


def test_a_workspace_shared_between_teams_needs_pools_of_their_own(two_teams):
    alpha, beta = two_teams["alpha"], two_teams["beta"]
    beta.work_pools = alpha.work_pools
    with pytest.raises(ValidationError, match="already taken by environment"):
        beta.full_clean()
    beta.work_pools = ""
    with pytest.raises(ValidationError, match="must name its work pools"):
        beta.full_clean()
    alpha.work_pools += ", pool-extra"  # more pools of one's own are fine
    alpha.full_clean()


def _held(state):
    flows = state.flow_run_ids()
    tasks = state.task_ids_of(flows)
    return flows, tasks


async def _run_in_pools(environments):
    """Per team: a deployment in the team's pool, two flow runs of it taken through Pending,
    Running and Completed with a task run each, as a worker would; {team: (flows, tasks)}."""
    runs = {}
    async with rest_client(environments["alpha"].workspace) as client:
        flow_id = await client.create_flow_from_name(f"selection-{uuid.uuid4().hex[:6]}")
        for team, environment in environments.items():
            pool = environment.work_pools
            await client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
            deployment = await client.create_deployment(flow_id, team, work_pool_name=pool)
            flows, tasks = set(), set()
            for _ in range(2):
                flow_run = await client.create_flow_run_from_deployment(deployment)
                for state in (Pending(), Running()):
                    await client.set_flow_run_state(flow_run.id, state, force=True)
                task_run = await client.create_task_run(
                    step, flow_run.id, dynamic_key=uuid.uuid4().hex, state=Running()
                )
                await client.set_task_run_state(task_run.id, Completed(), force=True)
                await client.set_flow_run_state(flow_run.id, Completed(), force=True)
                flows.add(str(flow_run.id))
                tasks.add(str(task_run.id))
            runs[team] = (flows, tasks)
    return runs
