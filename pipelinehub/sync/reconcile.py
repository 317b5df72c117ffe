"""Reconcile: make an environment's Redis match the Prefect API, the source of truth.

The Prefect API has no "changed since" filter, so reading the whole window (runs not finished or
finished within the TTL, and their task runs) costs what history costs: for a team finishing
2,000 flow runs a day with 20 tasks each, 300,000 runs and some 1,500 requests. Doing that every
5 minutes is what this module avoids, with three modes:

- "changes" (beat, every 5 minutes): only what can have changed since the previous reconcile:
  flow runs not finished, flow runs that finished (or, never having run, were expected) after
  the previous reconcile began minus MARGIN, and the task runs of those. Runs that Redis holds
  unfinished but that listing lacks are read by id: repaired if Prefect has them (they
  finished), removed if it does not.
- "sweep" (beat, every 5 minutes): one slice of the TTL window, from a cursor kept in meta, so
  that SWEEP_SLICES sweeps (an hour at the default schedule) read every finished run once. It
  repairs what ingest and "changes" cannot see (a run changed after it finished, a record
  written wrong) and removes the slice's runs that Prefect no longer has.
- "full": the whole window at once. On demand, for ingest's catch-up after a long outage, and
  by itself instead of "changes" when the environment's state is gone (no last_reconcile).

In every mode changes go through `apply` (the newer state wins), a run is removed only after
Prefect, asked for it by id, does not have it (offset paging may skip runs while others are
inserted, so absence from a listing proves nothing), and finished runs past the TTL are pruned.
One reconcile per environment at a time (a Redis lock).
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterEndTime,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
    Operator,
)
from prefect.client.schemas.objects import StateType

from pipelinehub.environments.models import Environment
from pipelinehub.state.records import to_micros
from pipelinehub.state.store import AsyncEnvironmentState

from . import reads
from .mapping import MalformedRun, change_from_flow_run, change_from_task_run
from .models import ReconcileReport
from .prefect import rest_client
from .schedules import DEFAULT_MINUTES
from .selecting import RunSelection, admits_run

log = logging.getLogger(__name__)

MODES = ("changes", "sweep", "full")
PAGE = 200  # the most read_flow_runs / read_task_runs accept
TERMINAL = [StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED]
LOCK_SECONDS = 600
# Beat starts an environment's "changes" and "sweep" together: the second waits for the first.
LOCK_WAIT_SECONDS = 30
# "changes" re-reads runs that finished this long before the previous reconcile began: a state
# stamped by a client clock a little behind, or written a little late, is not missed.
MARGIN = timedelta(minutes=2)
SWEEP_SLICES = 12
SWEEP_INTERVAL = timedelta(minutes=DEFAULT_MINUTES)
RECORDS_CHUNK = 5000  # runs whose stored records are fetched at once when counting repairs


class ReconcileBusy(Exception):
    pass


def reconcile(environment, trigger="command", mode="changes"):
    """Reconcile one environment and store the report (also when it fails): for Celery,
    commands and the admin."""
    environment = Environment.objects.with_connections().get(pk=environment.pk)
    return async_to_sync(reconcile_async)(environment, trigger, mode)


async def reconcile_async(environment, trigger="command", mode="changes"):
    """`reconcile` for code already in an event loop: `environment` must come
    `with_connections()`. Returns the stored report; a failure is in its `error`."""
    if mode not in MODES:
        raise ValueError(f"reconcile mode must be one of {MODES}, not {mode!r}")
    report = ReconcileReport(environment=environment, trigger=trigger, mode=mode)
    started = time.monotonic()
    try:
        await _reconcile_locked(environment, report)
    except Exception as exc:  # the report must say why, whatever it was
        report.error = f"{type(exc).__name__}: {exc}"[:2000]
        log.error("reconcile environment=%s mode=%s failed: %s", environment, mode, report.error)
    report.duration_ms = int((time.monotonic() - started) * 1000)
    await sync_to_async(_save_and_forget_old)(report)
    if not report.error:
        log.info(
            "reconcile environment=%s mode=%s checked=%d missing=%d stale=%d orphaned=%d "
            "malformed=%d requests=%d ms=%d",
            environment,
            report.mode,
            report.checked,
            report.missing,
            report.stale,
            report.orphaned,
            report.malformed,
            report.requests,
            report.duration_ms,
        )
    return report


def _save_and_forget_old(report):
    """Keep RECONCILE_REPORT_DAYS of reports: two reports every 5 minutes add up."""
    report.save()
    cutoff = report.started_at - timedelta(days=settings.RECONCILE_REPORT_DAYS)
    ReconcileReport.objects.filter(environment=report.environment, started_at__lt=cutoff).delete()


async def _reconcile_locked(environment, report):
    state = AsyncEnvironmentState.for_environment(environment)
    try:
        lock = await state.lock("reconcile", LOCK_SECONDS)
        if not await lock.acquire(blocking=True, blocking_timeout=LOCK_WAIT_SECONDS):
            raise ReconcileBusy("skipped: another reconcile of this environment is running")
        try:
            async with rest_client(environment.workspace, on_request=count_into(report)) as client:
                await _reconcile(client, state, environment, report)
        finally:
            await lock.release()
    finally:
        await state.aclose()


def count_into(report):
    """An httpx request hook counting into `report.requests`. It sits below Prefect's retries:
    a request answered 429 and sent again after Retry-After counts twice, as the rate limit
    counts it."""

    async def count(request):
        report.requests += 1

    return count


async def _reconcile(client, state, environment, report):
    now, ttl = datetime.now(UTC), environment.finished_run_ttl
    meta = await state.meta()
    if report.mode == "changes" and not _since_last(meta, now, ttl):
        log.info(
            "reconcile environment=%s: no recent last_reconcile in Redis, so full", environment
        )
        report.mode = "full"
    scope = SCOPES[report.mode](now, ttl, meta)
    selection = RunSelection.of(environment)
    listed = await _list_flow_runs(client, scope.listings, selection)
    # Expired runs go first, so that they are not taken for orphans and asked about.
    expired = await state.prune_finished(to_micros(now))
    if expired:
        log.info("reconcile environment=%s expired=%d finished runs", environment, expired)
    flow_runs, flow_orphans = await _confirm_flow_runs(client, state, scope, listed, selection)
    flow_changes = await _flow_changes(client, flow_runs, report)
    task_runs, task_orphans = await _task_runs(client, state, scope, flow_runs)
    task_changes = _changes(task_runs, change_from_task_run, report)
    await _repair(state, "flow", flow_changes, report)
    await _repair(state, "task", task_changes, report)
    await _remove(state, "flow", flow_orphans, report)
    await _remove(state, "task", task_orphans, report)
    await state.set_meta(**scope.meta)


async def _none(state):
    return []


@dataclass
class Scope:
    """What one reconcile reads and records. `listings`: flow run filters, each read whole.
    `held_flows` and `held_tasks` (async functions of the state): runs Redis holds that Prefect
    is asked about by id when the listings lack them (task runs of the flow runs read are
    always asked about). `meta`: what is recorded in the meta hash once done."""

    listings: list
    held_flows: Callable
    meta: dict
    held_tasks: Callable = _none


def _since_last(meta, now, ttl):
    """Where "changes" begins: the previous reconcile's start minus MARGIN. None when there is
    no previous one (a new or flushed Redis) or it is older than the window (it would read the
    whole window anyway): then the reconcile is full, which also finds finished orphans."""
    last = meta.get("last_reconcile")
    since = datetime.fromisoformat(last) - MARGIN if last else None
    return since if since and since > now - ttl else None


def _changes_scope(now, ttl, meta):
    """Since the previous reconcile; what Redis holds unfinished is asked about."""
    return Scope(
        _window_filters(_since_last(meta, now, ttl)),
        lambda state: state.inflight("flow", changed_before=to_micros(now)),
        {"last_reconcile": now.isoformat()},
        held_tasks=lambda state: state.inflight("task", changed_before=to_micros(now)),
    )


def _full_scope(now, ttl, meta):
    """The whole window; every flow run Redis holds is asked about."""
    return Scope(
        _window_filters(now - ttl),
        lambda state: state.flow_run_ids(),
        {"last_reconcile": now.isoformat()},
    )


def _sweep_scope(now, ttl, meta):
    """The next slice; the flow runs Redis holds with a version in it are asked about."""
    start, end = sweep_slice(now, ttl, meta.get("sweep_cursor"))
    return Scope(
        _slice_filters(start, end),
        lambda state: state.flow_run_ids(to_micros(start), to_micros(end)),
        # A slice that reaches now ends the cycle: the next sweep starts at the oldest end.
        {"sweep_cursor": "" if end >= now else end.isoformat()},
    )


SCOPES = {"changes": _changes_scope, "sweep": _sweep_scope, "full": _full_scope}


def sweep_slice(now, ttl, cursor):
    """(start, end) of the slice of the window [now - ttl, now] the next sweep covers, from
    `cursor` (ISO time where the previous slice ended; empty to begin a cycle).

    A slice is a twelfth of the window plus the schedule's interval, as the window moves on by
    that much between two sweeps: twelve sweeps at the default schedule reach now, so a
    cycle reads every finished run once an hour. A cursor outside the window (sweeps stopped
    for a while) begins a new cycle.
    """
    window_start = now - ttl
    start = datetime.fromisoformat(cursor) if cursor else window_start
    if not window_start <= start < now:
        start = window_start
    return start, min(start + ttl / SWEEP_SLICES + SWEEP_INTERVAL, now)


def _window_filters(since):
    """Runs not finished, finished since `since`, or finished without ever running (cancelled
    while scheduled: no end time) and expected since `since`."""
    running_or_recent = FlowRunFilter(
        operator=Operator.or_,
        state=FlowRunFilterState(type=FlowRunFilterStateType(not_any_=TERMINAL)),
        end_time=FlowRunFilterEndTime(after_=since),
    )
    never_ran = FlowRunFilter(
        end_time=FlowRunFilterEndTime(is_null_=True),
        expected_start_time=FlowRunFilterExpectedStartTime(after_=since),
    )
    return [running_or_recent, never_ran]


def _slice_filters(start, end):
    """Runs finished within [start, end], or finished without running and expected then."""
    finished = FlowRunFilter(end_time=FlowRunFilterEndTime(after_=start, before_=end))
    never_ran = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=TERMINAL)),
        end_time=FlowRunFilterEndTime(is_null_=True),
        expected_start_time=FlowRunFilterExpectedStartTime(after_=start, before_=end),
    )
    return [finished, never_ran]


async def _list_flow_runs(client, listings, selection):
    """The listed flow runs of the environment's selection: work pools filtered by Prefect,
    tags here (a listing's own filter may be an "or" of conditions)."""
    runs = {}
    for listing in listings:
        for run in await reads.flow_runs_where(client, listing, selection.work_pools):
            if admits_run(selection, run):
                runs[str(run.id)] = run
    return runs


async def _confirm_flow_runs(client, state, scope, listed, selection):
    """The flow runs to apply (listed, plus held ones found by id) and the orphans: held runs
    the listings lack that Prefect does not have, or no longer has in this environment's
    selection."""
    unlisted = set(await scope.held_flows(state)) - listed.keys()
    found = [
        run for run in await reads.flow_runs_by_id(client, unlisted) if admits_run(selection, run)
    ]
    return [*listed.values(), *found], unlisted - {str(run.id) for run in found}


async def _task_runs(client, state, scope, flow_runs):
    """The task runs of `flow_runs` plus the held ones the listing lacks but Prefect has, and
    the orphans: held task runs that Prefect does not have.

    A flow run that never ran (run count 0: scheduled, or cancelled before it started) has no
    task runs, so it is not asked about: "changes" lists every scheduled run each time.
    """
    ran = [str(run.id) for run in flow_runs if run.run_count]
    listed = {str(run.id): run for run in await reads.task_runs_of(client, ran)}
    held = await state.task_ids_of(ran) | set(await scope.held_tasks(state))
    unlisted = held - listed.keys()
    found = await reads.task_runs_by_id(client, unlisted)
    runs = [run for run in [*listed.values(), *found] if run.flow_run_id]
    return runs, unlisted - {str(run.id) for run in found}


async def _flow_changes(client, flow_runs, report):
    names = await reads.flow_names(client, {run.flow_id for run in flow_runs})
    return _changes(
        flow_runs, lambda run: change_from_flow_run(run, names.get(run.flow_id, "")), report
    )


def _changes(runs, to_change, report):
    """The runs as changes; a run whose values are out of bounds costs only itself."""
    changes = []
    for run in runs:
        try:
            changes.append(to_change(run))
        except MalformedRun as exc:
            report.malformed += 1
            log.warning("reconcile malformed run skipped: %s", exc)
    return changes


async def _repair(state, kind, changes, report):
    for i in range(0, len(changes), RECORDS_CHUNK):
        chunk = changes[i : i + RECORDS_CHUNK]
        present = {record.id for record in await state.records(kind, [c.id for c in chunk])}
        for change, wrote in zip(chunk, await state.apply_batch(chunk), strict=True):
            if wrote and change.id in present:
                report.stale += 1
            elif wrote:
                report.missing += 1
    report.checked += len(changes)


async def _remove(state, kind, run_ids, report):
    if run_ids:
        await state.remove(kind, run_ids)
        report.orphaned += len(run_ids)
        log.info(
            "reconcile prefix=%s removed %s runs Prefect does not have: %d",
            state.keys.prefix,
            kind,
            len(run_ids),
        )
