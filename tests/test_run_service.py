"""The run service's own checks: they hold whoever calls it (view, websocket consumer, JSON API),
so these tests call `perform` directly, against the real Prefect server, Redis and database."""

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory
from django.urls import reverse
from prefect.states import Running

from pipelinehub.audit.models import AuditEvent
from pipelinehub.environments.models import Environment, Team
from pipelinehub.sync.reconcile import reconcile
from pipelinehub.sync.runs import NoSuchRun, NotAllowed, perform, run_in_environment
from tests.test_sync_actions import deployment_run, member, state_of

pytestmark = pytest.mark.prefect


@pytest.fixture
def running(prefect_environment):
    """A running flow run that the environment's state holds."""
    run_id = deployment_run(prefect_environment, Running())
    reconcile(prefect_environment)
    return run_id


@pytest.fixture
def other_environment(prefect_environment, prefix):
    """Another team's environment on the same Prefect workspace, with its own (empty) state."""
    return Environment.objects.create(
        team=Team.objects.create(slug=f"{prefect_environment.team.slug}-other", name="Other"),
        slug="dev",
        workspace=prefect_environment.workspace,
        redis_target=prefect_environment.redis_target,
        key_prefix=prefix,
    )


def test_a_run_action_records_the_request_id(prefect_environment, running):
    operator = member(prefect_environment, "operator")
    request = RequestFactory().post("/", HTTP_X_REQUEST_ID="req-42")
    request.request_id, request.user = "req-42", operator
    result = perform("cancel", prefect_environment, running, user=operator, request=request)
    assert result.ok, result.message
    event = AuditEvent.objects.get(action="flow_run.cancel", object_id=str(running))
    assert (event.actor, event.request_id, event.object_type) == (
        operator,
        "req-42",
        "prefect.flow_run",
    )


@pytest.mark.parametrize("who", ["viewer", "anonymous", "operator of another team"])
def test_the_service_itself_refuses_who_may_not_operate(
    prefect_environment, other_environment, running, who
):
    user = {
        "viewer": lambda: member(prefect_environment, "viewer"),
        "anonymous": AnonymousUser,
        "operator of another team": lambda: member(other_environment, "operator"),
    }[who]()
    with pytest.raises(NotAllowed, match="does not allow operating runs"):
        perform("cancel", prefect_environment, running, user=user)
    assert state_of(prefect_environment, running) == "RUNNING"
    assert not AuditEvent.objects.exists()


def test_a_run_of_another_environment_is_no_such_run(
    prefect_environment, other_environment, running, client
):
    assert run_in_environment(prefect_environment, running)
    assert not run_in_environment(other_environment, running)
    operator = member(other_environment, "operator")
    with pytest.raises(NoSuchRun, match="has no flow run"):
        perform("cancel", other_environment, running, user=operator)

    client.force_login(operator, backend="pipelinehub.accounts.backends.SingleSignOnBackend")
    url = reverse(
        "run_action",
        kwargs={
            "team": other_environment.team.slug,
            "env": "dev",
            "run_id": running,
            "action": "cancel",
        },
    )
    assert client.post(url).status_code == 404
    assert state_of(prefect_environment, running) == "RUNNING"
    assert not AuditEvent.objects.exists()


def test_a_malformed_run_id_and_an_unknown_action(prefect_environment):
    operator = member(prefect_environment, "operator")
    with pytest.raises(NoSuchRun, match="not a flow run id"):
        perform("retry", prefect_environment, "nope", user=operator)
    with pytest.raises(ValueError, match="there are retry, cancel"):
        perform("delete", prefect_environment, "nope", user=operator)
