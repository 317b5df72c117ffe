"""Event ingest: each enabled environment's run state mirrored from Prefect into Redis.

One `EnvironmentIngest` per environment, all in one asyncio loop (`run_ingest`), each with its
own subscriber, its own Redis client and its own failures: a Redis target that stops answering,
a workspace that refuses its key or an environment whose catch-up fails stalls that environment
only. The live stream is the fast path; it is lossy (see `followup`), so a follow-up pass every
few seconds reads what it may have dropped; it runs apart from the stream, and it and the
catch-up move the watermark (the time up to which everything is applied). On every (re)connect
an environment first catches up from its watermark: the events since then, or a full reconcile
when the outage was longer than events are worth paging. A failure anywhere drops the connection
and starts over from the watermark after a backoff, forever, so nothing is lost, only late.
"""

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import DatabaseError

from pipelinehub.background import outside_requests
from pipelinehub.environments.models import Environment
from pipelinehub.environments.selection import RunSelection
from pipelinehub.state.connections import environment_connection_shape
from pipelinehub.state.store import AsyncEnvironmentState

from . import reads
from .followup import follow_up
from .mapping import changes_from_events, heartbeats_from_events
from .prefect import RUN_EVENT_PREFIXES, KeptClient, event_subscriber, rest_client
from .reconcile import reconcile_async
from .selecting import admitted_events, follow_their_flow_runs

log = logging.getLogger(__name__)

BATCH_SIZE = 500
BATCH_WAIT = 0.05  # seconds to gather more events after the first of a batch
REPLAY_OVERLAP = timedelta(minutes=1)  # events are re-read this far behind the watermark
EVENT_CATCHUP_LIMIT = timedelta(hours=1)  # longer outages are repaired by reconcile instead
# Seconds between follow-up passes: soon again after a pass that found something (a burst is
# being recorded by Prefect), else at the calm pace.
FOLLOW_UP_EVERY = 5.0
FOLLOW_UP_BUSY = 1.0
MAX_BACKOFF = 30.0


class EnvironmentIngest:
    def __init__(self, environment):
        self.environment = environment
        self.workspace = environment.workspace
        self.selection = RunSelection.of(environment)
        self.malformed_total = 0

    async def run_forever(self):
        """Mirror until cancelled. The follow-up passes run from the first catch-up on, apart
        from the live stream: a stream that drops and reconnects (a burst can do that) must not
        pause the one path that finds what the stream lost."""
        state = AsyncEnvironmentState.for_environment(self.environment)
        follower = None
        backoff = 1.0
        try:
            while True:
                try:
                    watermark = await self.catch_up(state)
                    if follower is None or follower.done():
                        follower = asyncio.create_task(self.follow_forever(state, watermark))
                    await self._live(state)
                    log.warning(
                        "ingest environment=%s stream closed; reconnecting", self.environment
                    )
                    backoff = 1.0
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.error(
                        "ingest environment=%s error=%s: %s; retrying in %.0fs",
                        self.environment,
                        type(exc).__name__,
                        exc,
                        backoff,
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
        finally:
            if follower is not None:
                follower.cancel()
            await state.aclose()

    async def _live(self, state):
        async with event_subscriber(self.workspace) as subscriber:
            log.info("ingest workspace=%s live environments=%s", self.workspace, self.environment)
            await self.consume(subscriber, state)

    async def catch_up(self, state):
        """Apply what happened while we were not listening, up to now; returns the new
        watermark."""
        stored = (await state.meta()).get("ingest_watermark")
        until = datetime.now(UTC)
        since = datetime.fromisoformat(stored) if stored else None
        if since is None or until - since > EVENT_CATCHUP_LIMIT:
            report = await reconcile_async(self.environment, trigger="ingest", mode="full")
            if report.error:
                raise RuntimeError(f"catch-up reconcile: {report.error}")
            since = until  # events during the reconcile are read below
        window = (since - REPLAY_OVERLAP, until, RUN_EVENT_PREFIXES)
        async with rest_client(self.workspace) as client:
            async for page in reads.events(client, *window):
                await self.apply_events(page, state, source="catch-up")
        await state.set_meta(ingest_watermark=until.isoformat())
        return until

    async def follow_forever(self, state, watermark):
        """Follow-up passes (see `followup`) until cancelled; each successful one moves the
        watermark to where it began. The passes share one Prefect client until one fails."""
        client = KeptClient(self.workspace)
        try:
            await self._follow(state, watermark, client)
        finally:
            await client.discard()

    async def _follow(self, state, watermark, client):
        pause = FOLLOW_UP_EVERY
        while True:
            await asyncio.sleep(pause)
            pause = FOLLOW_UP_EVERY
            started = datetime.now(UTC)
            try:
                if "ingest_watermark" not in await state.meta():
                    # Redis lost the environment's state (flushed, or restarted empty): a pass
                    # would write a fresh watermark over the loss, so the catch-up rebuilds it.
                    watermark = await self.catch_up(state)
                    continue
                found = await follow_up(
                    await client.get(), state, watermark, started, self.selection
                )
                applied = sum(await state.apply_batch(found.changes))
                await state.record_heartbeats(found.heartbeats)
                for kind, run_ids in found.gone.items():
                    await state.remove(kind, run_ids)
                await state.set_meta(ingest_watermark=started.isoformat())
                watermark = started
            except Exception as exc:  # the live stream goes on; the next pass tries again
                log.warning("ingest environment=%s follow-up failed: %s", self.environment, exc)
                await client.discard()
                continue
            removed = sum(map(len, found.gone.values()))
            if applied or removed:
                pause = FOLLOW_UP_BUSY
            if applied or found.malformed or removed:
                log.info(
                    "ingest environment=%s source=follow-up read=%d applied=%d removed=%d "
                    "malformed=%d pass_ms=%d",
                    self.environment,
                    len(found.changes),
                    applied,
                    removed,
                    found.malformed,
                    (datetime.now(UTC) - started).total_seconds() * 1000,
                )

    async def consume(self, subscriber, state):
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
                await self.apply_events(batch, state, source="live")
        finally:
            reader.cancel()

    async def apply_events(self, events, state, source):
        """Map and apply a batch of events; an event that cannot be read is skipped with one
        log line and counted, and the rest of the batch is applied."""
        if not events:
            return
        started = time.monotonic()
        changes, ignored, malformed = changes_from_events(admitted_events(self.selection, events))
        changes = await follow_their_flow_runs(self.selection, state, changes)
        # Heartbeats name no work pool, so the selection cannot judge them: state records only
        # those of flow runs this environment holds unfinished.
        heartbeats = heartbeats_from_events(events)
        for reason in malformed:
            log.error("ingest environment=%s malformed event skipped: %s", self.environment, reason)
        self.malformed_total += len(malformed)
        applied = sum(await state.apply_batch(changes))
        if heartbeats:
            await state.record_heartbeats(heartbeats)
        now = datetime.now(UTC)
        newest = min(max(event.occurred for event in events), now)
        log.info(
            "ingest environment=%s source=%s events=%d changes=%d applied=%d ignored=%d "
            "malformed=%d malformed_total=%d lag_ms=%d apply_ms=%d",
            self.environment,
            source,
            len(events),
            len(changes),
            applied,
            ignored,
            len(malformed),
            self.malformed_total,
            (now - newest).total_seconds() * 1000,
            (time.monotonic() - started) * 1000,
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


def enabled_environments():
    """{environment id: (fingerprint, environment)} for every enabled environment."""
    environments = Environment.objects.filter(enabled=True).with_connections()
    return {env.pk: (_fingerprint(env), env) for env in environments}


def _fingerprint(environment):
    """What an environment's connections depend on: when it changes, its ingest restarts."""
    workspace = environment.workspace
    return (
        workspace.api_url,
        # Not the key's version: that asks the secret manager. A key changed there is read at
        # the next reconnect, which a refused key causes.
        workspace.api_key.updated_at if workspace.api_key_id else None,
        environment.key_prefix,
        environment.finished_run_ttl,
        RunSelection.of(environment),
        environment_connection_shape(environment),
    )


async def run_ingest():
    """Ingest every enabled environment; pick up configuration changes. While the database is
    unreachable, the environments already running go on and the poll is retried."""
    poll = settings.CONFIG_POLL_SECONDS
    running = {}  # environment id -> (fingerprint, task)
    while True:
        try:
            wanted = await outside_requests(enabled_environments)()
        except DatabaseError as exc:
            log.error("ingest: configuration unavailable (%s); retrying in %.0fs", exc, poll)
            await asyncio.sleep(poll)
            continue
        for env_id, (fingerprint, task) in list(running.items()):
            if env_id not in wanted or wanted[env_id][0] != fingerprint:
                task.cancel()
                del running[env_id]
        for env_id, (fingerprint, environment) in wanted.items():
            if env_id not in running:
                task = asyncio.create_task(EnvironmentIngest(environment).run_forever())
                running[env_id] = (fingerprint, task)
        if not running:
            log.info("ingest: no enabled environment; checking again in %.0fs", poll)
        await asyncio.sleep(poll)
