"""Prefect objects (events, flow runs, task runs) to `RunChange`s. Pure functions.

Both sources must give the same change for the same state, or ingest and reconcile would
fight: flow-run start and end are the timestamps of the Running and of the terminal state
(Prefect sets start_time and end_time from them), task-run times come from the task run itself.

An event is untrusted input (its labels are strings, its payload any JSON) and one that cannot
be read must cost only itself, never its batch or its workspace: `change_from_event` raises
nothing but `MalformedEvent`, whatever the event holds, and `changes_from_events` maps a batch
without raising. Runs read from the API are typed by Prefect, but their values may still be out
of `RunChange`'s bounds (a state dated in the future, a run count past `MAX_RUN_COUNT`):
`change_from_flow_run` and `change_from_task_run` raise `MalformedRun` for them, and callers
(reconcile, ingest's read of a finished flow run's task runs) must skip that run, not the listing.
"""

from contextlib import contextmanager
from datetime import datetime

from pipelinehub.state.records import (
    TERMINAL_STATES,
    RunChange,
    brief,
    canonical_id,
    latest_micros,
    to_micros,
)

FLOW_RUN_PREFIX = "prefect.flow-run."
TASK_RUN_PREFIX = "prefect.task-run."
DEPLOYMENT_PREFIX = "prefect.deployment."
HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"
REASON_LENGTH = 300  # a reason is logged per skipped event: never a dump of the event


class MalformedEvent(ValueError):
    """An event that claims to be a run state change but cannot be read as one."""


class MalformedRun(ValueError):
    """A flow run or task run from the API whose values do not fit a `RunChange`."""


def is_state_event(event):
    """Run state events only: heartbeats and other run events carry no state."""
    return event.resource.get("prefect.state-type") is not None


def heartbeats_from_events(events):
    """[(flow run id, microseconds)] of the heartbeat events among `events`: a run's last sign
    of life, which the stuck-run detector reads. One that cannot be read is left out (a
    heartbeat is worth less than a log line); never raises."""
    beats, latest = [], latest_micros()
    for event in events:
        if getattr(event, "event", None) != HEARTBEAT_EVENT:
            continue
        try:
            run_id = canonical_id(_strip(event.resource.id, FLOW_RUN_PREFIX))
            beat = to_micros(event.occurred)
        except Exception:  # noqa: S112 - any content whatever costs only this heartbeat
            continue
        if beat <= latest:  # one from the future would keep a dead run alive
            beats.append((run_id, beat))
    return beats


def changes_from_events(events):
    """Map a batch of events: `(changes, ignored, malformed_reasons)`, where `ignored` counts
    the events that carry no state and each malformed event is skipped with its reason (one
    string naming the event). Never raises, so one bad event never stops a workspace."""
    changes, ignored, malformed = [], 0, []
    for event in events:
        if not is_state_event(event):
            ignored += 1
            continue
        try:
            changes.append(change_from_event(event))
        except MalformedEvent as exc:
            malformed.append(str(exc))
    return changes, ignored, malformed


def change_from_event(event):
    """The change a run state event reports; for any event that is not one, whatever its
    content, `MalformedEvent` with the event's id and a short reason."""
    try:
        return _change_from_event(event)
    except Exception as exc:  # any content whatever must cost only this event
        reason = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        raise MalformedEvent(
            f"event {event.id} ({brief(event.event)}): {reason[:REASON_LENGTH]}"
        ) from None


def change_from_flow_run(flow_run, flow_name=""):
    """A flow run from the API; `MalformedRun` when its values are out of bounds. A scheduled
    run's expected start is its state's scheduled time (a Late or AwaitingRetry state keeps
    one), else the run's expected start time; events carry neither, so it comes from here."""
    with _refusing("flow", flow_run):
        return RunChange(
            "flow",
            str(flow_run.id),
            to_micros(flow_run.state.timestamp),
            flow_run.state.type.value,
            flow_run.state.name,
            name=flow_run.name or "",
            flow=flow_name,
            deployment=str(flow_run.deployment_id) if flow_run.deployment_id else "",
            start=to_micros(flow_run.start_time),
            end=to_micros(flow_run.end_time),
            run_count=flow_run.run_count or 0,
            expected_start=_expected_start(flow_run),
        )


def _expected_start(flow_run):
    state = flow_run.state
    if state.type.value != "SCHEDULED":
        return None
    scheduled = state.state_details.scheduled_time if state.state_details else None
    return to_micros(scheduled or flow_run.expected_start_time)


def change_from_task_run(task_run):
    """A task run from the API; `MalformedRun` when its values are out of bounds."""
    with _refusing("task", task_run):
        return RunChange(
            "task",
            str(task_run.id),
            to_micros(task_run.state.timestamp),
            task_run.state.type.value,
            task_run.state.name,
            name=task_run.name or "",
            flow_run_id=str(task_run.flow_run_id),
            start=to_micros(task_run.start_time),
            end=to_micros(task_run.end_time),
            run_count=task_run.run_count or 0,
        )


@contextmanager
def _refusing(kind, run):
    if run.state is None:  # the API allows a run created without a state
        raise MalformedRun(f"{kind} run {run.id} has no state")
    try:
        yield
    except ValueError as exc:
        raise MalformedRun(f"{kind} run {run.id}: {exc}") from None


def _change_from_event(event):
    kind, prefix = _kind_of(event.event)
    labels = event.resource
    related = {resource.role: resource for resource in event.related}
    version = _micros(labels.get("prefect.state-timestamp"))
    state_type = labels.get("prefect.state-type") or ""
    fields = {
        "name": labels.get("prefect.resource.name") or "",
        "run_count": _run_count(labels.get("prefect.run-count")),
    }
    if kind == "flow":
        fields.update(_flow_fields(related, state_type, version))
    else:
        fields.update(_task_fields(related, event.payload))
    return RunChange(
        kind,
        _strip(labels.id, prefix),
        version,
        state_type,
        labels.get("prefect.state-name") or state_type.title(),
        **fields,
    )


def _kind_of(event_name):
    if event_name.startswith(FLOW_RUN_PREFIX):
        return "flow", FLOW_RUN_PREFIX
    if event_name.startswith(TASK_RUN_PREFIX):
        return "task", TASK_RUN_PREFIX
    raise MalformedEvent("not a flow-run or task-run event")


def _flow_fields(related, state_type, version):
    """A flow run's start and end are the times of its Running and terminal states."""
    fields = {
        "flow": related["flow"].get("prefect.resource.name", "") if "flow" in related else "",
        "start": version if state_type == "RUNNING" else None,
        "end": version if state_type in TERMINAL_STATES else None,
    }
    if "deployment" in related:
        fields["deployment"] = _strip(related["deployment"].id, DEPLOYMENT_PREFIX)
    return fields


def _task_fields(related, payload):
    """A task run's times are in the payload's `task_run`, which is any JSON at all."""
    if "flow-run" not in related:
        raise MalformedEvent("a task-run event names no flow run")
    task_run = payload.get("task_run")
    if task_run is None:
        task_run = {}
    if not isinstance(task_run, dict):
        raise MalformedEvent(f"payload task_run is a {type(task_run).__name__}, not an object")
    return {
        "flow_run_id": _strip(related["flow-run"].id, FLOW_RUN_PREFIX),
        "start": _optional_micros(task_run.get("start_time")),
        "end": _optional_micros(task_run.get("end_time")),
    }


def _strip(resource_id, prefix):
    if not resource_id.startswith(prefix) or len(resource_id) == len(prefix):
        raise MalformedEvent(f"resource id {brief(resource_id)} does not start with {prefix!r}")
    return resource_id[len(prefix) :]


def _optional_micros(value):
    return None if value is None or value == "" else _micros(value)


def _micros(value):
    """Event times are ISO 8601 strings (datetimes in an event built in Python)."""
    if isinstance(value, datetime):
        return to_micros(value)
    try:
        return to_micros(datetime.fromisoformat(value))
    except (TypeError, ValueError, OverflowError):
        raise MalformedEvent(f"bad timestamp {brief(value)}") from None


def _run_count(value):
    """The run count label, a decimal string; an absent one means the run never ran."""
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        raise MalformedEvent(f"bad run count {brief(value)}") from None
