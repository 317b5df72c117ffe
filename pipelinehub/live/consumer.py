"""The live board's websocket: a snapshot (or the replay since the client's cursor), then every
change as it happens, pushed in batches from the relay (see `protocol` for the frames).

Access is the policy's: checked when the socket opens and again every RECHECK_SECONDS, so a
member whose role is removed is disconnected within a minute. The consumer keeps the cursor of
what it has sent; a relay message that does not follow it (a dropped message, a relay restart)
is a gap, filled from Redis before anything newer is sent.
"""

import asyncio
import json
import time
import weakref
from collections import deque
from urllib.parse import parse_qsl

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from pipelinehub.accounts.policy import Action, can
from pipelinehub.environments.models import Environment
from pipelinehub.state.connections import environment_connection_shape
from pipelinehub.state.store import EMPTY_CURSOR, AsyncEnvironmentState, stream_id_tuple

from . import fanout, protocol

RECHECK_SECONDS = 30
REPLAY_LIMIT = 5000  # further behind than this, a client gets a fresh snapshot
MAX_FRAME_BYTES = 4096
MAX_FRAMES, FRAME_WINDOW_SECONDS = 20, 10.0
DELTA_CACHE = 64  # encoded delta frames kept: the latest batches, per filter

_states = weakref.WeakKeyDictionary()  # event loop -> {connection key: AsyncEnvironmentState}
_deltas = {}  # (first stream id, cursor, filter) -> the delta frame's text ("" if nothing shown)


def shared_state(environment):
    """One asyncio client per environment and event loop, shared by all its watchers."""
    states = _states.setdefault(asyncio.get_running_loop(), {})
    key = (environment.pk, environment.key_prefix, environment_connection_shape(environment))
    if key not in states:
        states[key] = AsyncEnvironmentState.for_environment(environment)
    return states[key]


def authorize(user, team_slug, environment_slug):
    """(close code or None, environment) for a user opening an environment's socket."""
    environment = (
        Environment.objects.with_connections()
        .filter(team__slug=team_slug, slug=environment_slug)
        .first()
    )
    if environment is None:
        return protocol.UNKNOWN, None
    if not can(user, Action.VIEW, environment):
        return protocol.NOT_ALLOWED, None
    return None, environment


def delta_text(changes, cursor, run_filter):
    """The delta frame of a run of changes for one filter, as text. Every socket of a process
    with the same filter (most show the whole board) sends the same frame: filtered and encoded
    once, not once per socket. A run of stream entries is fixed by its first and last ids."""
    key = (changes[0]["stream_id"], cursor, run_filter)
    if key not in _deltas:
        if len(_deltas) >= DELTA_CACHE:
            del _deltas[next(iter(_deltas))]
        shown = [shown for change in changes if (shown := as_shown(run_filter, change))]
        _deltas[key] = json.dumps(protocol.delta(shown, cursor)) if shown else ""
    return _deltas[key]


def as_shown(run_filter, change):
    """A change (`protocol.change`'s form) as a page with this filter sees it, or None. A flow
    run that does not match a board's filter (any more) leaves that board: nobody can tell
    "changed so that it no longer matches" from "never matched", so it is a removal either way."""
    kind, run = change["kind"], change["run"]
    if run is not None and run_filter.shows(kind, _Run(run)):
        return {"id": change["id"], "kind": kind, "run": run}
    if run is None or (kind == "flow" and not run_filter.run):
        return {"id": change["id"], "kind": kind, "run": None}
    return None


class EnvironmentConsumer(AsyncJsonWebsocketConsumer):
    environment = None
    rechecking = None
    early = None
    cursor = EMPTY_CURSOR

    async def connect(self):
        await self.accept()
        route = self.scope["url_route"]["kwargs"]
        refused, self.environment = await database_sync_to_async(authorize)(
            self.scope["user"], route["team"], route["env"]
        )
        if refused:
            await self.close(code=refused)
            return
        query = dict(parse_qsl(self.scope.get("query_string", b"").decode(errors="replace")))
        self.filter = protocol.RunFilter.from_query(query)
        self.state = shared_state(self.environment)
        self.frames = deque(maxlen=MAX_FRAMES)
        self.early = []  # relay batches that came while the first frame was being made
        await fanout.watch(self.channel_layer, self.environment.pk, self)
        after = query.get("after", "")
        if protocol.STREAM_ID.match(after):
            await self.send_replay(after)
        else:
            if after:
                await self.send_json(protocol.error(f"'after' must be a stream id, not {after!r}"))
            await self.send_snapshot()
        await self.take_early_batches()
        self.rechecking = asyncio.create_task(self.recheck_forever())

    async def take_early_batches(self):
        """The fan-out hands batches over as soon as the process is a group member, while the
        snapshot (or replay) is still being read: they follow it, in order. Batches that come
        meanwhile join the queue; once it is empty (no await between the check and the end of
        the queue) they go straight through."""
        while self.early:
            await self.take_batch(self.early.pop(0))
        self.early = None

    async def disconnect(self, code):
        if self.environment is not None:
            await fanout.unwatch(self.environment.pk, self)
        if self.rechecking is not None:
            self.rechecking.cancel()

    # From the browser

    async def receive(self, text_data=None, bytes_data=None):
        if self.flooding():
            await self.close(code=protocol.FLOODING)
        elif len(text_data or bytes_data or "") > MAX_FRAME_BYTES:
            await self.close(code=protocol.TOO_LARGE)
        else:
            await self.receive_frame(text_data)

    async def receive_frame(self, text):
        try:
            frame = json.loads(text or "")
        except ValueError:
            frame = None
        if isinstance(frame, dict) and frame.get("type") == "ping":
            await self.send_json({"type": "pong", "cursor": self.cursor})
        else:
            await self.send_json(protocol.error("unknown frame: the server accepts only ping"))

    def flooding(self):
        now = time.monotonic()
        self.frames.append(now)
        return len(self.frames) == MAX_FRAMES and now - self.frames[0] < FRAME_WINDOW_SECONDS

    # From the relay, through this process's fan-out

    async def changes_batch(self, message):
        if self.early is not None:
            self.early.append(message)
        else:
            await self.take_batch(message)

    async def take_batch(self, message):
        if stream_id_tuple(message["after"]) > stream_id_tuple(self.cursor):
            await self.send_replay(self.cursor)  # a gap: fill it from Redis first
        if message["after"] == self.cursor:  # the usual case: it follows what was sent
            fresh = message["changes"]
        else:
            cursor = stream_id_tuple(self.cursor)
            fresh = [c for c in message["changes"] if stream_id_tuple(c["stream_id"]) > cursor]
        if fresh:
            self.cursor = fresh[-1]["stream_id"]
            if text := delta_text(fresh, self.cursor, self.filter):
                await self.send(text_data=text)

    # Sending state

    async def send_snapshot(self):
        if self.filter.run:
            self.cursor = await self.state.cursor()
            found = await self.state.flow_run(self.filter.run)
            rows = [] if found is None else [found[0], *found[1]]
            counts = {}
        else:
            board = await self.state.board(limit=protocol.SNAPSHOT_SCAN)
            self.cursor = board.cursor
            rows = [run for run in board.runs if self.filter.shows("flow", run)]
            counts = board.counts
        rows = [protocol.row(run) for run in rows[: protocol.SNAPSHOT_ROWS]]
        await self.send_json(protocol.snapshot(rows, counts, self.cursor))

    async def send_replay(self, after):
        changes = await self.state.changes_since(after, count=REPLAY_LIMIT)
        if changes.resync or len(changes.entries) == REPLAY_LIMIT:
            await self.send_json({"type": "resync"})
            await self.send_snapshot()
            return
        self.cursor = changes.cursor or after
        shown = [
            shown
            for entry in changes.entries
            if (shown := as_shown(self.filter, protocol.change(entry)))
        ]
        await self.send_json(protocol.replay(shown, self.cursor))

    async def recheck_forever(self):
        while True:
            await asyncio.sleep(RECHECK_SECONDS)
            allowed = await database_sync_to_async(can)(
                self.scope["user"], Action.VIEW, self.environment
            )
            if not allowed:
                await self.close(code=protocol.NOT_ALLOWED)
                return


class _Run(dict):
    """A run as the relay sends it (a dict), read like a RunRecord by the filter."""

    __getattr__ = dict.__getitem__
