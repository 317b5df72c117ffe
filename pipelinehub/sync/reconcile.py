"""Reconcile: make an environment's Redis match the Prefect API, the source of truth.

It reads every flow run in the environment's window (not finished, or finished within the TTL)
and their task runs, applies them through `apply` (which keeps whatever is newer), and removes
runs that Prefect no longer has. One reconcile per environment at a time (a Redis lock).
"""

import logging
import time
from datetime import UTC, datetime, timedelta

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterId,
    FlowRunFilter,
    FlowRunFilterEndTime,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
    Operator,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort, TaskRunSort
from prefect.exceptions import ObjectNotFound

from pipelinehub.environments.models import Environment
from pipelinehub.state.records import to_micros
from pipelinehub.state.store import EnvironmentState

from .mapping import change_from_flow_run, change_from_task_run
from .models import ReconcileReport
from .prefect import rest_client

log = logging.getLogger(__name__)

PAGE = 200  # the most read_flow_runs / read_task_runs accept
TERMINAL = [StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED]
LOCK_SECONDS = 600


class ReconcileBusy(Exception):
    pass


def reconcile(environment, trigger="command"):
    """Reconcile one environment and store the report (also when it fails)."""
    environment = Environment.objects.with_connections().get(pk=environment.pk)
    return async_to_sync(reconcile_async)(environment, trigger)


async def reconcile_async(environment, trigger="command"):
    """`reconcile` for code already in an event loop: `environment` must come
    `with_connections()`."""
    state = await sync_to_async(EnvironmentState.for_environment)(environment)
    report = ReconcileReport(environment=environment, trigger=trigger)
    started = time.monotonic()
    lock = state.client.lock(state.keys.lock("reconcile"), timeout=LOCK_SECONDS, blocking=False)
    try:
        if not await sync_to_async(lock.acquire)():
            raise ReconcileBusy("skipped: another reconcile of this environment is running")
        try:
            await _reconcile(environment, state, report)
        finally:
            await sync_to_async(lock.release)()
    except Exception as exc:  # the report must say why, whatever it was
        report.error = f"{type(exc).__name__}: {exc}"[:2000]
        log.error("reconcile environment=%s failed: %s", environment, report.error)
    report.duration_ms = int((time.monotonic() - started) * 1000)
    await sync_to_async(_save_and_forget_old)(report)
    if not report.error:
        log.info(
            "reconcile environment=%s checked=%d missing=%d stale=%d orphaned=%d ms=%d",
            environment,
            report.checked,
            report.missing,
            report.stale,
            report.orphaned,
            report.duration_ms,
        )
    return report


def _save_and_forget_old(report):
    """Keep RECONCILE_REPORT_DAYS of reports: a report every 5 minutes adds up."""
    report.save()
    cutoff = report.started_at - timedelta(days=settings.RECONCILE_REPORT_DAYS)
    ReconcileReport.objects.filter(environment=report.environment, started_at__lt=cutoff).delete()


async def _reconcile(environment, state, report):
    window_start = datetime.now(UTC) - environment.finished_run_ttl
    async with rest_client(environment.workspace) as client:
        flow_runs = await _flow_runs_in_window(client, window_start)
        names = await _flow_names(client, {run.flow_id for run in flow_runs})
        flow_changes = [change_from_flow_run(run, names.get(run.flow_id, "")) for run in flow_runs]
        task_runs = await task_runs_of(client, [run.id for run in flow_runs])
        task_changes = [change_from_task_run(run) for run in task_runs if run.flow_run_id]
        await sync_to_async(_repair)(state, flow_changes, task_changes, report)
        # Expired runs go first, so that they are not taken for orphans and asked about.
        await sync_to_async(_prune)(state)
        orphans = await _confirmed_orphans(client, state, flow_changes, task_changes)
    await sync_to_async(_remove)(state, orphans, report)
    await sync_to_async(state.set_meta)(last_reconcile=datetime.now(UTC).isoformat())


def _repair(state, flow_changes, task_changes, report):
    for kind, changes in (("flow", flow_changes), ("task", task_changes)):
        present = {record.id for record in state.records(kind, [c.id for c in changes])}
        for change, wrote in zip(changes, state.apply_batch(changes), strict=True):
            if wrote and change.id in present:
                report.stale += 1
            elif wrote:
                report.missing += 1
        report.checked += len(changes)


async def _confirmed_orphans(client, state, flow_changes, task_changes):
    """Cached runs absent from the listing, each confirmed gone by asking Prefect for it.

    Offset paging may skip a run while others are inserted; a skipped run is not an orphan.
    """
    listed_flows = {change.id for change in flow_changes}
    listed_tasks = {change.id for change in task_changes}
    cached_flows = await sync_to_async(state.flow_run_ids)()
    cached_tasks = await sync_to_async(_cached_task_ids)(state, listed_flows)
    orphans = {"flow": [], "task": []}
    for kind, run_ids, read in (
        ("flow", cached_flows - listed_flows, client.read_flow_run),
        ("task", cached_tasks - listed_tasks, client.read_task_run),
    ):
        for run_id in run_ids:
            try:
                await read(run_id)
            except ObjectNotFound:
                orphans[kind].append(run_id)
    return orphans


def _cached_task_ids(state, flow_run_ids):
    if not flow_run_ids:
        return set()
    with state.client.pipeline(transaction=False) as pipe:
        for flow_run_id in flow_run_ids:
            pipe.smembers(state.keys.tasks_of(flow_run_id))
        return {member.decode() for members in pipe.execute() for member in members}


def _prune(state):
    expired = state.prune_finished(to_micros(datetime.now(UTC)))
    if expired:
        log.info("reconcile prefix=%s expired=%d finished runs", state.keys.prefix, expired)


def _remove(state, orphans, report):
    for kind, run_ids in orphans.items():
        state.remove(kind, run_ids)
        report.orphaned += len(run_ids)


async def _flow_runs_in_window(client, window_start):
    """Runs not finished, finished since `window_start`, or finished without ever running
    (cancelled while scheduled: no end time) and expected since `window_start`."""
    running_or_recent = FlowRunFilter(
        operator=Operator.or_,
        state=FlowRunFilterState(type=FlowRunFilterStateType(not_any_=TERMINAL)),
        end_time=FlowRunFilterEndTime(after_=window_start),
    )
    never_ran = FlowRunFilter(
        end_time=FlowRunFilterEndTime(is_null_=True),
        expected_start_time=FlowRunFilterExpectedStartTime(after_=window_start),
    )
    runs = {}
    for window in (running_or_recent, never_ran):
        for run in await _all_pages(
            lambda offset, w=window: client.read_flow_runs(
                flow_run_filter=w, sort=FlowRunSort.ID_DESC, limit=PAGE, offset=offset
            )
        ):
            runs[run.id] = run
    return list(runs.values())


async def task_runs_of(client, flow_run_ids):
    runs = []
    for i in range(0, len(flow_run_ids), PAGE):
        task_filter = TaskRunFilter(
            flow_run_id=TaskRunFilterFlowRunId(any_=flow_run_ids[i : i + PAGE])
        )
        runs += await _all_pages(
            lambda offset, f=task_filter: client.read_task_runs(
                task_run_filter=f, sort=TaskRunSort.ID_DESC, limit=PAGE, offset=offset
            )
        )
    return runs


async def _flow_names(client, flow_ids):
    ids = sorted(flow_ids, key=str)
    names = {}
    for i in range(0, len(ids), PAGE):
        flows = await client.read_flows(
            flow_filter=FlowFilter(id=FlowFilterId(any_=ids[i : i + PAGE])), limit=PAGE
        )
        names.update({flow.id: flow.name for flow in flows})
    return names


async def _all_pages(read_page):
    items, offset = [], 0
    while True:
        page = await read_page(offset)
        items += page
        if len(page) < PAGE:
            return items
        offset += PAGE
