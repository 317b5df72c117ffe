"""The lossless follow-up of Prefect's lossy live stream.

Prefect's server queues at most 256 undelivered events per subscriber and silently drops the
rest, so a burst loses live events. Persisted events and run states are complete, so a pass
every few seconds reads what can have been lost, from them:

- the persisted flow-run events since a little before the previous pass (flow-run events are a
  few per run, so re-reading a short window is cheap): flow runs the live stream never
  delivered;
- every task run of the flow runs changed in the last ten minutes, and the task runs of flow
  runs in flight for longer that are unfinished or ended within those minutes: task runs whose
  events were dropped, or that send none (a subflow's wrapper task), read by state rather than
  by event, so a burst of thousands of task events costs a few pages;
- by id, the runs Redis holds unfinished that have not changed for a while: a state whose event
  was lost, wherever it was; a run Prefect no longer has (deleted) is removed.

Everything it reads goes through `apply`, which keeps whatever is newer, so reading a run twice
is harmless.
"""

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from pipelinehub.state.records import to_micros

from . import reads
from .mapping import (
    change_from_flow_run,
    change_from_task_run,
    changes_from_events,
    heartbeats_from_events,
)
from .selecting import admits_run, admitted_events

log = logging.getLogger(__name__)

FLOW_RUN_EVENTS = ["prefect.flow-run."]
TRAIL_OVERLAP = timedelta(seconds=30)  # Prefect persists events seconds after streaming them
# How long after a flow run changes its task runs are re-read: longer than Prefect's task-run
# recorder lags behind under load (it stores states minutes late on a busy server), for a few
# pages per pass in a busy workspace.
RECENT = timedelta(minutes=10)
STALE = timedelta(seconds=30)  # unfinished runs unchanged this long are re-read by id


@dataclass
class PassResult:
    changes: list
    malformed: int = 0
    # Runs held unfinished that Prefect, asked by id, does not have (deleted, or no longer in
    # the environment's selection): {"flow": ids, "task": ids}.
    gone: dict = field(default_factory=dict)
    # Heartbeats among the persisted flow-run events: [(flow run id, microseconds)], the ones
    # the live stream dropped included.
    heartbeats: list = field(default_factory=list)


async def follow_up(client, state, since, now, selection):
    """The changes that one pass finds; `since` is where the previous pass began. Flow runs
    outside the environment's `selection` are left out; the rest are runs Redis holds."""
    result = PassResult([])
    await _trailing_flow_runs(client, since - TRAIL_OVERLAP, now, selection, result)
    recent = await state.flow_run_ids(min_version=to_micros(now - RECENT))
    recent |= {change.id for change in result.changes}
    running_long = set(await state.inflight("flow")) - recent
    # Every task run of a recently changed flow run: Prefect records task states late under
    # load, and not always with an end time, so no filter on state or time is safe for them.
    task_runs = await reads.task_runs_of(client, recent)
    task_runs += await reads.changed_task_runs(client, running_long, now - RECENT)
    _add(result, task_runs, change_from_task_run)

    stale_before = to_micros(now - STALE)
    stale_flows = set(await state.inflight("flow", changed_before=stale_before))
    flow_runs = [
        run
        for run in await reads.flow_runs_by_id(client, stale_flows)
        if admits_run(selection, run)
    ]
    _add(result, flow_runs, change_from_flow_run)
    result.gone["flow"] = stale_flows - {str(run.id) for run in flow_runs}
    seen_tasks = {str(run.id) for run in task_runs}
    stale_tasks = set(await state.inflight("task", changed_before=stale_before)) - seen_tasks
    found_tasks = await reads.task_runs_by_id(client, stale_tasks)
    _add(result, found_tasks, change_from_task_run)
    result.gone["task"] = stale_tasks - {str(run.id) for run in found_tasks}
    return result


async def _trailing_flow_runs(client, since, until, selection, result):
    async for page in reads.events(client, since, until, FLOW_RUN_EVENTS):
        changes, _, malformed = changes_from_events(admitted_events(selection, page))
        result.changes += changes
        result.heartbeats += heartbeats_from_events(page)
        result.malformed += len(malformed)


def _add(result, runs, to_change):
    """Map API runs to changes; a run that cannot be stored is skipped, and said so."""
    for run in runs:
        try:
            result.changes.append(to_change(run))
        except ValueError as exc:
            result.malformed += 1
            log.error("follow-up skipped run %s: %s", getattr(run, "id", "?"), exc)
