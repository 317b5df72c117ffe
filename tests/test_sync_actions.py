"""Retry and cancel through the real Prefect server, refusals included (see also
test_run_service.py for the service's own checks)."""

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from prefect.flows import Flow
from prefect.states import Completed, Running

from pipelinehub.accounts.models import Membership
from pipelinehub.audit.models import AuditEvent
from pipelinehub.sync.reconcile import reconcile
from pipelinehub.sync.runs import perform

from .prefect.fixtures import deployment_run, prefect

pytestmark = pytest.mark.prefect


def state_of(environment, run_id):
    return prefect(environment, lambda client: client.read_flow_run(run_id)).state.type.value


def member(environment, role):
    user = get_user_model().objects.create_user(username=f"{role}-{uuid.uuid4().hex[:6]}")
    Membership.objects.create(user=user, team=environment.team, role=role)
    return user


@pytest.fixture
def operator(prefect_environment):
    return member(prefect_environment, "operator")


def act(action, environment, run_id, user):
    """`action` on a run once the environment's state holds it (reconcile puts it there)."""
    reconcile(environment)
    return perform(action, environment, run_id, user=user)


def test_cancel_a_running_run_and_refuse_a_finished_one(prefect_environment, operator):
    run_id = deployment_run(prefect_environment, Running())
    result = act("cancel", prefect_environment, run_id, operator)
    assert result.ok, result.message
    assert state_of(prefect_environment, run_id) == "CANCELLING"

    finished = deployment_run(prefect_environment, Completed())
    refused = act("cancel", prefect_environment, finished, operator)
    assert not refused.ok and "already finished" in refused.message
    assert state_of(prefect_environment, finished) == "COMPLETED"


def test_cancelling_a_scheduled_run_cancels_it_at_once(prefect_environment, operator):
    run_id = deployment_run(prefect_environment)
    result = act("cancel", prefect_environment, run_id, operator)
    assert result.ok and "before it started" in result.message
    assert state_of(prefect_environment, run_id) == "CANCELLED"


def test_retry_a_finished_run_and_refuse_an_unfinished_one(prefect_environment, operator):
    run_id = deployment_run(prefect_environment, Completed())
    result = act("retry", prefect_environment, run_id, operator)
    assert result.ok, result.message
    assert state_of(prefect_environment, run_id) == "SCHEDULED"

    refused = perform("retry", prefect_environment, run_id, user=operator)
    assert not refused.ok and "only a finished run" in refused.message
    events = AuditEvent.objects.filter(action="flow_run.retry", object_id=str(run_id))
    assert [(e.actor, e.after["ok"]) for e in events.order_by("id")] == [
        (operator, True),
        (operator, False),
    ]


def test_retry_refuses_a_run_without_deployment(prefect_environment, operator):
    async def adhoc(client):
        flow_run = await client.create_flow_run(
            Flow(lambda: None, name="ph-adhoc"), state=Completed()
        )
        return flow_run.id

    run_id = prefect(prefect_environment, adhoc)
    result = act("retry", prefect_environment, run_id, operator)
    assert not result.ok and "no deployment" in result.message


def test_a_run_prefect_no_longer_has(prefect_environment, operator):
    run_id = deployment_run(prefect_environment, Running())
    reconcile(prefect_environment)
    prefect(prefect_environment, lambda client: client.delete_flow_run(run_id))
    result = perform("cancel", prefect_environment, run_id, user=operator)
    assert not result.ok and f"Prefect has no flow run {run_id}" in result.message


def test_operators_cancel_from_the_dashboard_and_viewers_cannot(prefect_environment, client):
    run_id = deployment_run(prefect_environment, Running())
    reconcile(prefect_environment)  # the run is now in the environment's state
    url = reverse(
        "run_action",
        kwargs={
            "team": prefect_environment.team.slug,
            "env": "dev",
            "run_id": run_id,
            "action": "cancel",
        },
    )
    for role, status in (("viewer", 403), ("operator", 302)):
        user = get_user_model().objects.create_user(username=role)
        Membership.objects.create(user=user, team=prefect_environment.team, role=role)
        client.force_login(user, backend="pipelinehub.accounts.backends.SingleSignOnBackend")
        response = client.post(url, follow=status == 302, HTTP_X_REQUEST_ID=f"req-{role}")
        assert (response.redirect_chain[0][1] if status == 302 else response.status_code) == status
        expected_state = "RUNNING" if role == "viewer" else "CANCELLING"
        assert state_of(prefect_environment, run_id) == expected_state
    assert "is being cancelled" in response.content.decode()
    event = AuditEvent.objects.get(action="flow_run.cancel", object_id=str(run_id))
    assert (event.actor.username, event.request_id) == ("operator", "req-operator")


def test_an_unreachable_prefect_is_a_clear_refusal(prefect_environment, operator):
    run_id = deployment_run(prefect_environment, Running())
    reconcile(prefect_environment)
    prefect_environment.workspace.api_url = "http://127.0.0.1:9/api"
    prefect_environment.workspace.save()
    result = perform("cancel", prefect_environment, run_id, user=operator)
    assert not result.ok and "could not be asked: ConnectError" in result.message
    assert AuditEvent.objects.get(action="flow_run.cancel").after == {"ok": False}
