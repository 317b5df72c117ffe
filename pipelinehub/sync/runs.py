"""The run service: operator actions on flow runs, carried out by Prefect (the source of truth).

As Zulip's `do_*` actions, `perform` is the one way to act on a run, whoever asks (the dashboard
today, the websocket consumer and the JSON API later): it checks the access policy and that the
run belongs to the environment, has Prefect act, writes the audit event and returns Prefect's
answer in words, a refusal included. Callers only parse their input and present the result, so
none of them can skip a check or the audit.
"""

from dataclasses import dataclass
from uuid import UUID

import httpx
from asgiref.sync import async_to_sync
from django.core.exceptions import PermissionDenied
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.responses import SetStateStatus
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelling, Scheduled

from pipelinehub.accounts.policy import Action, can
from pipelinehub.audit.service import action_name, record
from pipelinehub.environments.models import Environment
from pipelinehub.state.store import EnvironmentState

from .prefect import WorkspaceUnavailable, rest_client

TERMINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED}


@dataclass(frozen=True)
class ActionResult:
    ok: bool
    message: str


class NotAllowed(PermissionDenied):
    """The user may not operate runs in the environment (a PermissionDenied: 403 in a view)."""


class NoSuchRun(LookupError):
    """The run id is malformed, or the environment's state does not hold that run."""


def run_in_environment(environment, run_id):
    """Whether the environment's Redis state holds flow run `run_id`.

    Environments of different teams may share a Prefect workspace, so a run id is only acted on
    in the environment whose state holds it: an operator cannot reach another team's runs.
    """
    return bool(EnvironmentState.for_environment(environment).records("flow", [str(run_id)]))


def perform(action, environment, run_id, *, user, request=None):
    """Do `action` (a key of ACTIONS) on flow run `run_id` of `environment` for `user`.

    Raises NotAllowed or NoSuchRun before anything is asked of Prefect; otherwise returns
    Prefect's answer, audited under "flow_run.<action>" with `request`'s id when one is given.
    It queries the database: async callers wrap it in `database_sync_to_async`.
    """
    operation = _operation(action)
    if not can(user, Action.OPERATE, environment):
        raise NotAllowed(f"Your role does not allow operating runs in {environment}.")
    environment = Environment.objects.with_connections().get(pk=environment.pk)
    run_id = _run_of(environment, run_id)
    result = async_to_sync(_with_run)(environment, run_id, operation)
    record(
        action_name("flow_run", action),
        request=request,
        actor=user,
        object_type="prefect.flow_run",
        object_id=run_id,
        message=f"{environment}: {result.message}",
        after={"ok": result.ok},
    )
    return result


def _operation(action):
    try:
        return ACTIONS[action]
    except KeyError:
        raise ValueError(f"No run action {action!r}; there are {', '.join(ACTIONS)}.") from None


def _run_of(environment, run_id):
    try:
        run_id = UUID(str(run_id))
    except ValueError:
        raise NoSuchRun(f"{run_id!r} is not a flow run id.") from None
    if not run_in_environment(environment, run_id):
        raise NoSuchRun(f"{environment} has no flow run {run_id}.")
    return run_id


async def _with_run(environment, run_id, operation):
    try:
        async with rest_client(environment.workspace) as client:
            try:
                flow_run = await client.read_flow_run(run_id)
            except ObjectNotFound:
                return ActionResult(False, f"Prefect has no flow run {run_id}.")
            return await operation(client, flow_run)
    except (httpx.HTTPError, WorkspaceUnavailable) as exc:
        return ActionResult(
            False,
            f"Prefect ({environment.workspace}) could not be asked: {type(exc).__name__}: {exc}",
        )


async def _retry(client, flow_run):
    """Send a finished flow run back to Scheduled, as `prefect deployment run` would start it:
    its deployment's worker picks it up again."""
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
    """Ask Prefect to cancel a flow run that has not finished (to Cancelling)."""
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


# The registry: an action's name (in URLs, API calls and "flow_run.<name>" audit events) and the
# Prefect operation that carries it out on a flow run read from Prefect.
ACTIONS = {"retry": _retry, "cancel": _cancel}
