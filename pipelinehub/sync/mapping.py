"""Prefect objects (events, flow runs, task runs) to `RunChange`s. Pure functions.

Both sources must give the same change for the same state, or ingest and reconcile would
fight: flow-run start and end are the timestamps of the Running and of the terminal state
(Prefect sets start_time and end_time from them), task-run times come from the task run itself.
"""

from datetime import datetime

from pipelinehub.state.records import TERMINAL_STATES, RunChange, to_micros

FLOW_RUN_PREFIX = "prefect.flow-run."
TASK_RUN_PREFIX = "prefect.task-run."


class MalformedEvent(ValueError):
    """An event that claims to be a run state change but cannot be read as one."""


def is_state_event(event):
    """Run state events only: heartbeats and other run events carry no state."""
    return event.resource.get("prefect.state-type") is not None


def change_from_event(event):
    name = event.event
    if name.startswith(FLOW_RUN_PREFIX):
        kind, resource_prefix = "flow", FLOW_RUN_PREFIX
    elif name.startswith(TASK_RUN_PREFIX):
        kind, resource_prefix = "task", TASK_RUN_PREFIX
    else:
        raise MalformedEvent(f"event {name!r} is not a flow-run or task-run event")
    labels = event.resource
    run_id = _strip(labels.id, resource_prefix)
    related = {resource.role: resource for resource in event.related}
    version = _micros(labels.get("prefect.state-timestamp"), event)
    state_type = labels.get("prefect.state-type") or ""
    fields = {
        "name": labels.get("prefect.resource.name") or "",
        "run_count": _int(labels.get("prefect.run-count"), event),
    }
    if kind == "flow":
        fields["flow"] = (
            related["flow"].get("prefect.resource.name", "") if "flow" in related else ""
        )
        if "deployment" in related:
            fields["deployment"] = _strip(related["deployment"].id, "prefect.deployment.")
        fields["start"] = version if state_type == "RUNNING" else None
        fields["end"] = version if state_type in TERMINAL_STATES else None
    else:
        if "flow-run" not in related:
            raise MalformedEvent(f"task-run event {event.id} names no flow run")
        fields["flow_run_id"] = _strip(related["flow-run"].id, FLOW_RUN_PREFIX)
        task_run = (event.payload or {}).get("task_run") or {}
        fields["start"] = (
            _micros(task_run["start_time"], event) if task_run.get("start_time") else None
        )
        fields["end"] = _micros(task_run["end_time"], event) if task_run.get("end_time") else None
    try:
        return RunChange(
            kind,
            run_id,
            version,
            state_type,
            labels.get("prefect.state-name") or state_type.title(),
            **fields,
        )
    except ValueError as exc:
        raise MalformedEvent(f"event {event.id} ({name}): {exc}") from None


def change_from_flow_run(flow_run, flow_name=""):
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
    )


def change_from_task_run(task_run):
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


def _strip(resource_id, prefix):
    if not resource_id or not resource_id.startswith(prefix) or len(resource_id) == len(prefix):
        raise MalformedEvent(f"resource id {resource_id!r} does not start with {prefix!r}")
    return resource_id[len(prefix) :]


def _micros(value, event):
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise MalformedEvent(f"event {event.id}: bad timestamp {value!r}") from None
    return to_micros(moment)


def _int(value, event):
    try:
        return int(value or 0)
    except ValueError:
        raise MalformedEvent(f"event {event.id}: bad run count {value!r}") from None
