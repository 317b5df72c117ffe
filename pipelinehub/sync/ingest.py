"""Event ingest: Prefect's live event stream of each workspace, applied to Redis in batches.

One `WorkspaceIngest` per workspace, all in one asyncio loop (`run_ingest`). Each keeps a
watermark (the time of the newest applied event) in every environment's meta hash. On every
(re)connect it first catches up through the REST API from the watermark, then goes live: events
since the watermark, or a full reconcile when the outage was longer than events are worth
paging. A failure anywhere (Prefect, Redis) drops the connection and starts over from the
watermark after a backoff, forever, so nothing is lost, only late.
"""

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta

from asgiref.sync import sync_to_async
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventOrder

from pipelinehub.environments.models import Environment
from pipelinehub.state.store import EnvironmentState

from .mapping import MalformedEvent, change_from_event, change_from_task_run, is_state_event
from .prefect import RUN_EVENT_PREFIXES, event_subscriber, rest_client
from .reconcile import reconcile_async, task_runs_of

log = logging.getLogger(__name__)

BATCH_SIZE = 500
BATCH_WAIT = 0.05  # seconds to gather more events after the first of a batch
EVENT_PAGE = 50  # the most read_events accepts on the open-source server
REPLAY_OVERLAP = timedelta(minutes=1)  # events are re-read this far behind the watermark
EVENT_CATCHUP_LIMIT = timedelta(hours=1)  # longer outages are repaired by reconcile instead
SETTLE_DELAY = 3.0  # task runs of a finished flow run are re-read this long after it ends
PERSISTER_LAG = 12.0  # Prefect's event persister flushes every 5 s by default
MAX_BACKOFF = 30.0
CONFIG_POLL = 30.0


class WorkspaceIngest:
    def __init__(self, workspace, environments):
        self.workspace = workspace
        self.environments = environments
        self.states = [EnvironmentState.for_environment(env) for env in environments]
        self._watermark = None  # read from Redis at each catch-up, then kept here
        self._settling = set()

    async def run_forever(self):
        backoff = 1.0
        while True:
            try:
                since = await self.catch_up()
                async with event_subscriber(self.workspace) as subscriber:
                    log.info(
                        "ingest workspace=%s live environments=%s",
                        self.workspace,
                        ",".join(str(env) for env in self.environments),
                    )
                    backoff = 1.0
                    trailing = asyncio.create_task(self._read_again_later(since))
                    try:
                        await self.consume(subscriber)
                    finally:
                        trailing.cancel()
                log.warning("ingest workspace=%s stream closed; reconnecting", self.workspace)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error(
                    "ingest workspace=%s error=%s: %s; retrying in %.0fs",
                    self.workspace,
                    type(exc).__name__,
                    exc,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    async def catch_up(self):
        """Apply what happened while we were not listening, up to now; returns where the
        events read began."""
        watermarks = await sync_to_async(self._stored_watermarks)()
        until = datetime.now(UTC)
        since = self._watermark = min(watermarks) if all(watermarks) else None
        if since is None or until - since > EVENT_CATCHUP_LIMIT:
            for environment in self.environments:
                report = await reconcile_async(environment, trigger="ingest")
                if report.error:
                    raise RuntimeError(f"catch-up reconcile of {environment}: {report.error}")
            since = until  # events during the reconcile are read below
        since -= REPLAY_OVERLAP
        await self._apply_event_window(since, until, source="catch-up")
        await sync_to_async(self._advance_watermarks)(until)
        return since

    async def _read_again_later(self, since):
        """Prefect stores events a few seconds after sending them live: the newest ones were
        neither in the catch-up nor, having gone out before we listened, in the live stream.
        Read the window once more when they are stored."""
        await asyncio.sleep(PERSISTER_LAG)
        try:
            await self._apply_event_window(since, datetime.now(UTC), source="re-read")
        except Exception as exc:  # the live stream goes on; reconcile repairs the rest
            log.warning("ingest workspace=%s re-read failed: %s", self.workspace, exc)

    async def _apply_event_window(self, since, until, source):
        event_filter = EventFilter(
            occurred=EventOccurredFilter(since=since, until=until),
            event=EventNameFilter(prefix=RUN_EVENT_PREFIXES),
            order=EventOrder.ASC,
        )
        async with rest_client(self.workspace) as client:
            page = await client.read_events(filter=event_filter, limit=EVENT_PAGE)
            await self.apply_events(page.events, source=source)
            while page.next_page:
                page = await client.read_events_page(str(page.next_page))
                await self.apply_events(page.events, source=source)

    async def consume(self, subscriber):
        queue = asyncio.Queue()

        async def read():
            async for event in subscriber:
                await queue.put(event)

        reader = asyncio.create_task(read())
        try:
            while True:
                batch = await _next_batch(queue, reader)
                if batch is None:
                    return
                await self.apply_events(batch, source="live")
        finally:
            reader.cancel()

    async def apply_events(self, events, source):
        if not events:
            return
        started = time.monotonic()
        changes, ignored, malformed = [], 0, 0
        for event in events:
            if not is_state_event(event):
                ignored += 1
                continue
            try:
                changes.append(change_from_event(event))
            except MalformedEvent as exc:
                malformed += 1
                log.error("ingest workspace=%s malformed event skipped: %s", self.workspace, exc)
        newest = max(event.occurred for event in events)
        applied = await sync_to_async(self._apply)(changes, newest)
        log.info(
            "ingest workspace=%s source=%s events=%d changes=%d applied=%d ignored=%d "
            "malformed=%d lag_ms=%d apply_ms=%d",
            self.workspace,
            source,
            len(events),
            len(changes),
            applied,
            ignored,
            malformed,
            (datetime.now(UTC) - newest).total_seconds() * 1000,
            (time.monotonic() - started) * 1000,
        )
        for change in changes:
            if change.kind == "flow" and change.terminal:
                self._settle_later(change.id)

    def _apply(self, changes, newest):
        applied = sum(sum(state.apply_batch(changes)) for state in self.states)
        self._advance_watermarks(newest)
        return applied

    def _advance_watermarks(self, moment):
        """Everything that occurred up to `moment` has been applied."""
        if self._watermark is None or self._watermark < moment:
            self._watermark = moment
            for state in self.states:
                state.set_meta(ingest_watermark=moment.isoformat())

    def _stored_watermarks(self):
        return [_parse(state.meta().get("ingest_watermark")) for state in self.states]

    def _settle_later(self, flow_run_id):
        """Task runs that send no events of their own (a subflow's wrapper) and task events
        that were lost are read from the API once the flow run has finished."""
        task = asyncio.create_task(self._settle(flow_run_id))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle(self, flow_run_id):
        await asyncio.sleep(SETTLE_DELAY)
        try:
            async with rest_client(self.workspace) as client:
                task_runs = await task_runs_of(client, [flow_run_id])
            changes = [change_from_task_run(run) for run in task_runs]
            for state in self.states:
                await sync_to_async(state.apply_batch)(changes)
        except Exception as exc:  # reconcile repairs it later; say so, do not stop ingest
            log.warning(
                "ingest workspace=%s settle of flow run %s failed: %s",
                self.workspace,
                flow_run_id,
                exc,
            )


async def _next_batch(queue, reader):
    """The next events, waiting for the first; None when the stream ended. Re-raises the
    reader's error (a lost connection) so that the caller reconnects."""
    getter = asyncio.ensure_future(queue.get())
    done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
    if getter not in done:
        getter.cancel()
        reader.result()  # raises the reader's error, if any
        return None
    batch = [getter.result()]
    deadline = time.monotonic() + BATCH_WAIT
    while len(batch) < BATCH_SIZE:
        try:
            batch.append(await asyncio.wait_for(queue.get(), deadline - time.monotonic()))
        except TimeoutError:
            break
    return batch


def _parse(value):
    return datetime.fromisoformat(value) if value else None


def enabled_workspaces():
    """{workspace: [environments]} for every enabled environment."""
    groups = {}
    environments = Environment.objects.filter(enabled=True).with_connections()
    for environment in environments:
        groups.setdefault(environment.workspace, []).append(environment)
    return groups


def _fingerprint(workspace, environments):
    key_version = workspace.api_key.version if workspace.api_key_id else 0
    return (
        workspace.api_url,
        key_version,
        tuple(
            (env.pk, env.key_prefix, env.redis_target_id, env.acl_username, env.finished_run_ttl)
            for env in environments
        ),
    )


async def run_ingest(poll=CONFIG_POLL):
    """Ingest every enabled environment's workspace; pick up configuration changes."""
    running = {}  # workspace id -> (fingerprint, task)
    while True:
        groups = await sync_to_async(enabled_workspaces)()
        wanted = {ws.pk: (_fingerprint(ws, envs), ws, envs) for ws, envs in groups.items()}
        for ws_id, (fingerprint, task) in list(running.items()):
            if ws_id not in wanted or wanted[ws_id][0] != fingerprint:
                task.cancel()
                del running[ws_id]
        for ws_id, (fingerprint, workspace, environments) in wanted.items():
            if ws_id not in running:
                ingest = await sync_to_async(WorkspaceIngest)(workspace, environments)
                running[ws_id] = (fingerprint, asyncio.create_task(ingest.run_forever()))
        if not running:
            log.info("ingest: no enabled environment; checking again in %.0fs", poll)
        await asyncio.sleep(poll)
