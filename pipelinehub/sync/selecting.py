"""An environment's run selection (environments.selection) applied to what Prefect sends.

Flow runs are judged by their work pool and tags: from an event's related resources, or from
the API's run. Task runs follow their flow run: a task change is kept when its flow run is
admitted in the same batch or already held in Redis; one whose flow run is not known yet is
dropped here and read again by the follow-up once the flow run is held.
"""

from pipelinehub.environments.selection import RunSelection

from .mapping import FLOW_RUN_PREFIX

__all__ = ["RunSelection", "admitted_events", "admits_run", "follow_their_flow_runs"]

TAG_PREFIX = "prefect.tag."


def admitted_events(selection, events):
    """The events the selection admits: flow-run events of its runs, and every task-run event
    (decided later by `follow_their_flow_runs`)."""
    if selection.everything:
        return list(events)
    return [event for event in events if _admits_event(selection, event)]


def _admits_event(selection, event):
    if not str(getattr(event, "event", "")).startswith(FLOW_RUN_PREFIX):
        return True
    pool, tags = None, set()
    for resource in getattr(event, "related", None) or ():
        role = resource.get("prefect.resource.role")
        if role == "work-pool":
            pool = resource.get("prefect.resource.name")
        elif role == "tag":
            tags.add(resource.id.removeprefix(TAG_PREFIX))
    return selection.admits(pool, tags)


def admits_run(selection, flow_run):
    return selection.admits(flow_run.work_pool_name, flow_run.tags)


async def follow_their_flow_runs(selection, state, changes):
    """`changes` without the task changes whose flow run is neither in them nor held."""
    if selection.everything:
        return changes
    flows = {change.id for change in changes if change.kind == "flow"}
    parents = {change.flow_run_id for change in changes if change.kind == "task"} - flows
    held = {record.id for record in await state.records("flow", parents)}
    return [
        change
        for change in changes
        if change.kind == "flow" or change.flow_run_id in flows or change.flow_run_id in held
    ]
