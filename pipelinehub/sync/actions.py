"""Operator actions on flow runs, carried out by Prefect (the source of truth).

Each returns an `ActionResult` with Prefect's answer in words, a refusal included. Callers check
the access policy first; the action itself records who did what in the audit log.
"""

from dataclasses import dataclass
from uuid import UUID

import httpx
from asgiref.sync import async_to_sync
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.responses import SetStateStatus
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelling, Scheduled

from pipelinehub.audit.service import record
from pipelinehub.environments.models import Environment

from .prefect import rest_client

TERMINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED}


@dataclass(frozen=True)
class ActionResult:
    ok: bool
    message: str


def retry_flow_run(environment, flow_run_id, actor=None):
    """Send a finished flow run back to Scheduled, as `prefect deployment run` would start it:
    its deployment's worker picks it up again."""
    return _audited("retry", environment, flow_run_id, actor, _retry)


def cancel_flow_run(environment, flow_run_id, actor=None):
    """Ask Prefect to cancel a flow run that has not finished (to Cancelling)."""
    return _audited("cancel", environment, flow_run_id, actor, _cancel)


def _audited(action, environment, flow_run_id, actor, operation):
    try:
        run_id = UUID(str(flow_run_id))
    except ValueError:
        return ActionResult(False, f"{flow_run_id!r} is not a flow run id.")
    environment = Environment.objects.with_connections().get(pk=environment.pk)
    result = async_to_sync(_with_run)(environment, run_id, operation)
    record(
        f"flow_run_{action}",
        actor=actor,
        object_type="prefect.flow_run",
        object_id=run_id,
        message=f"{environment}: {result.message}",
        after={"ok": result.ok},
    )
    return result


async def _with_run(environment, run_id, operation):
    try:
        async with rest_client(environment.workspace) as client:
            try:
                flow_run = await client.read_flow_run(run_id)
            except ObjectNotFound:
                return ActionResult(False, f"Prefect has no flow run {run_id}.")
            return await operation(client, flow_run)
    except httpx.HTTPError as exc:
        return ActionResult(
            False,
            f"Prefect ({environment.workspace}) could not be asked: {type(exc).__name__}: {exc}",
        )


async def _retry(client, flow_run):
    if flow_run.state_type not in TERMINAL:
        return ActionResult(
            False,
            f"Flow run {flow_run.name} is {flow_run.state_name}: only "
            "a finished run can be retried.",
        )
    if flow_run.deployment_id is None:
        return ActionResult(
            False,
            f"Flow run {flow_run.name} has no deployment: nothing would "
            "run it again. Start it again from where it was started.",
        )
    result = await client.set_flow_run_state(flow_run.id, Scheduled(), force=True)
    return _answer(result, f"Flow run {flow_run.name} is scheduled to run again.")


async def _cancel(client, flow_run):
    if flow_run.state_type in TERMINAL:
        return ActionResult(
            False, f"Flow run {flow_run.name} already finished ({flow_run.state_name})."
        )
    result = await client.set_flow_run_state(flow_run.id, Cancelling())
    if result.status == SetStateStatus.REJECT and result.state and result.state.is_cancelled():
        # Prefect cancels a run that never started at once, answering "reject" to Cancelling.
        return ActionResult(True, f"Flow run {flow_run.name} was cancelled before it started.")
    return _answer(result, f"Flow run {flow_run.name} is being cancelled.")


def _answer(result, accepted_message):
    if result.status == SetStateStatus.ACCEPT:
        return ActionResult(True, accepted_message)
    reason = getattr(result.details, "reason", None) or "no reason given"
    return ActionResult(False, f"Prefect refused ({result.status.value.lower()}): {reason}")
