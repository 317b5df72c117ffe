"""An environment's run state in Redis: the one write path (`apply`) and every read.

`state` is the only owner of Redis I/O for run state. It comes in two forms that speak one
vocabulary: `EnvironmentState` (blocking redis-py, for views, Celery and commands) and
`AsyncEnvironmentState` (redis.asyncio, for ingest and the live board, where one slow Redis
must not stall the others). `_Vocabulary` holds what both send and how replies are read; each
form adds only the I/O. Every write goes through a Lua script (scripts.py), so writes are
atomic, idempotent and independent of arrival order.
"""

import time
from collections import Counter
from dataclasses import dataclass, field

from django.conf import settings
from redis.exceptions import NoScriptError
from redis.lock import Lock

from .connections import (
    async_environment_client,
    async_target_client,
    environment_client,
    target_client,
)
from .keyspace import Keyspace
from .records import RunRecord, state_type_of
from .scripts import FINISHED_ORDER, SCRIPT_NAMES, sha, source

PRUNE_CHUNK = 500
BATCH = 500
EMPTY_CURSOR = "0-0"
DAY_MICROS = 86_400 * 1_000_000


@dataclass
class Board:
    runs: list
    counts: dict = field(default_factory=dict)
    cursor: str = EMPTY_CURSOR  # the change-stream id the rows are consistent with


@dataclass
class Counts:
    """Exact counts for a whole environment, kept by every write: flow runs in flight per
    state, and flow runs finished per terminal state in the last 24 hours."""

    in_flight: dict
    finished_24h: dict


@dataclass
class StreamEntry:
    stream_id: str
    kind: str
    run: RunRecord | None  # None: the run was removed
    run_id: str = ""


@dataclass
class Changes:
    """Stream entries after a cursor, or `resync` when entries after it were trimmed away (or
    the stream is gone) and the reader must take a fresh snapshot."""

    entries: list
    resync: bool = False

    @property
    def cursor(self):
        return self.entries[-1].stream_id if self.entries else None


def stream_id_tuple(stream_id):
    milliseconds, _, sequence = str(stream_id).partition("-")
    return int(milliseconds), int(sequence or 0)


# redis-py's Lock runs scripts of its own, which environment users may not load either.
LOCK_SCRIPTS = (Lock.LUA_RELEASE_SCRIPT, Lock.LUA_EXTEND_SCRIPT, Lock.LUA_REACQUIRE_SCRIPT)


class _Vocabulary:
    """Keys, arguments and reply decoding of every operation, shared by both forms.

    Scripts run by EVALSHA only: an environment's ACL user may not EVAL or SCRIPT LOAD (either
    would let it run any Lua, e.g. a loop that blocks the server). The hub loads its scripts
    through the target's own connection (`script_loader`) when Redis answers NOSCRIPT (a restart
    or a SCRIPT FLUSH), and runs the calls again.
    """

    def __init__(self, prefix, finished_ttl_seconds, stream_maxlen):
        self.keys = Keyspace(prefix)
        self.ttl = int(finished_ttl_seconds)
        self.stream_maxlen = stream_maxlen or settings.STATE_STREAM_MAXLEN

    def _apply_call(self, change):
        ks = self.keys
        if change.kind == "flow":
            keys = [ks.flow_runs, ks.changes, ks.runs, ks.tasks_of(change.id)]
        else:
            keys = [ks.task(change.id), ks.changes, ks.tasks_of(change.flow_run_id), ks.flow_runs]
        keys.append(ks.inflight(change.kind))
        if change.kind == "flow":
            keys += [ks.counts, *self._finished_keys()]
        args = [
            change.kind,
            change.id,
            change.encode(),
            self.ttl,
            self.stream_maxlen,
            change.flow_run_id,
            time.time_ns() // 1000 - DAY_MICROS,
        ]
        return keys, args

    @staticmethod
    def _queue(pipe, calls):
        for name, (keys, args) in calls:
            pipe.evalsha(sha(name), len(keys), *keys, *args)

    @staticmethod
    def _not_loaded(replies):
        return [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]

    @staticmethod
    def _checked(replies):
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    def _finished_keys(self):
        return [self.keys.finished(state) for state in FINISHED_ORDER]

    def _prune_call(self, cutoff, offset, day_ago):
        ks = self.keys
        keys = [ks.flow_runs, ks.runs, ks.changes, ks.inflight("flow"), *self._finished_keys()]
        return keys, [cutoff, offset, PRUNE_CHUNK, self.stream_maxlen, day_ago]

    def _remove_call(self, kind, run_id, flow_run_id=""):
        ks = self.keys
        if kind == "flow":
            keys = [ks.flow_runs, ks.changes, ks.runs, ks.tasks_of(run_id), ks.inflight("flow")]
            keys += [ks.counts, *self._finished_keys()]
        else:
            # KEYS[4] is unused for a task run: any key of the environment's slot will do.
            keys = [ks.task(run_id), ks.changes, ks.tasks_of(flow_run_id), ks.flow_runs]
            keys.append(ks.inflight("task"))
        return keys, [kind, run_id, self.stream_maxlen]

    def _remove_calls(self, kind, run_ids, tasks):
        if kind == "flow":
            return [self._remove_call("flow", run_id) for run_id in run_ids]
        return [self._remove_call("task", task.id, task.flow_run_id) for task in tasks]

    def _fill_counts(self, pipe, now_micros):
        pipe.hgetall(self.keys.counts)
        for key in self._finished_keys():
            pipe.zcount(key, now_micros - DAY_MICROS, "+inf")

    @staticmethod
    def _counts(replies):
        in_flight = {as_text(k): int(v) for k, v in replies[0].items() if int(v)}
        finished = dict(zip(FINISHED_ORDER, replies[1:], strict=True))
        return Counts(in_flight, {state: n for state, n in finished.items() if n})

    def _board_call(self, limit):
        return [self.keys.runs, self.keys.flow_runs, self.keys.changes], [limit]

    def _fill_records(self, pipe, kind, run_ids):
        if kind == "flow":
            pipe.hmget(self.keys.flow_runs, run_ids)
        else:
            pipe.mget([self.keys.task(run_id) for run_id in run_ids])

    def _fill_changes(self, pipe, after, count):
        pipe.xinfo_stream(self.keys.changes)
        pipe.xrange(self.keys.changes, f"({after}", "+", count)

    @staticmethod
    def _records(run_ids, raws):
        return [RunRecord(run_id, raw) for run_id, raw in zip(run_ids, raws, strict=True) if raw]

    @staticmethod
    def _board(reply):
        cursor, ids, raws = reply
        runs = [
            RunRecord(run_id.decode(), raw) for run_id, raw in zip(ids, raws, strict=True) if raw
        ]
        counts = Counter(state_type_of(run.raw).decode() for run in runs)
        return Board(runs, dict(counts), as_text(cursor))

    @staticmethod
    def _changes(after, info, entries):
        if isinstance(info, Exception):  # no stream: nothing was ever written, or it was lost
            return Changes([], resync=after != EMPTY_CURSOR)
        # Trimming removes the oldest entries and leaves no trace but the count (Redis 7.0 does
        # not set max-deleted-entry-id for it): a reader before the first entry left may have
        # missed some.
        trimmed = info["entries-added"] > info["length"]
        first = as_text(info["recorded-first-entry-id"])
        if trimmed and stream_id_tuple(after) < stream_id_tuple(first):
            return Changes([], resync=True)
        return Changes([stream_entry(entry_id, fields) for entry_id, fields in entries])

    @staticmethod
    def _cursor(newest):
        return as_text(newest[0][0]) if newest else EMPTY_CURSOR

    @staticmethod
    def _in_start_order(tasks):
        return sorted(tasks, key=lambda task: (task.start or task.version, task.id))

    @staticmethod
    def _meta(raw):
        return {as_text(k): as_text(v) for k, v in raw.items()}

    @staticmethod
    def _ids(raw):
        return [as_text(member) for member in raw]


def as_text(value):
    return value.decode() if isinstance(value, bytes) else value


def stream_entry(entry_id, fields):
    run_id, record = fields[b"id"].decode(), fields[b"record"]
    return StreamEntry(
        as_text(entry_id),
        fields[b"kind"].decode(),
        RunRecord(run_id, record) if record else None,
        run_id,
    )


class EnvironmentState(_Vocabulary):
    """The blocking form (views, Celery tasks, commands)."""

    def __init__(self, client, prefix, finished_ttl_seconds, stream_maxlen=None, loader=None):
        super().__init__(prefix, finished_ttl_seconds, stream_maxlen)
        self.client = client
        self.script_loader = loader or client

    @classmethod
    def for_environment(cls, environment):
        return cls(
            environment_client(environment),
            environment.key_prefix,
            environment.finished_run_ttl.total_seconds(),
            loader=target_client(environment.redis_target),
        )

    def load_scripts(self):
        for script in (*map(source, SCRIPT_NAMES), *LOCK_SCRIPTS):
            self.script_loader.script_load(script)

    def _run(self, name, call):
        (reply,) = self._run_all([(name, call)])
        return reply

    def _run_all(self, calls):
        """Script calls pipelined, a round trip per BATCH; their replies, in order."""
        replies = []
        for start in range(0, len(calls), BATCH):
            chunk = calls[start : start + BATCH]
            chunk_replies = self._pipelined(chunk)
            if missing := self._not_loaded(chunk_replies):
                self.load_scripts()
                again = self._pipelined([chunk[i] for i in missing])
                for i, reply in zip(missing, again, strict=True):
                    chunk_replies[i] = reply
            replies += self._checked(chunk_replies)
        return replies

    def _pipelined(self, calls):
        with self.client.pipeline(transaction=False) as pipe:
            self._queue(pipe, calls)
            return pipe.execute(raise_on_error=False)

    # Writes

    def apply(self, change):
        """Store `change` if it is newer than what Redis holds; True when something changed."""
        return bool(self._run("apply", self._apply_call(change)))

    def apply_batch(self, changes):
        """Apply many changes pipelined, a round trip per BATCH; one bool per change, in order."""
        calls = [("apply", self._apply_call(change)) for change in changes]
        return [bool(reply) for reply in self._run_all(calls)]

    def remove(self, kind, run_ids):
        """Forget runs that Prefect no longer has (reconcile's orphans), on the stream too."""
        run_ids = list(run_ids)
        if not run_ids:
            return
        tasks = self.records("task", run_ids) if kind == "task" else []
        self._run_all([("remove", call) for call in self._remove_calls(kind, run_ids, tasks)])

    def prune_finished(self, now_micros):
        """Drop flow runs finished more than the TTL before `now_micros`; returns how many.

        Flow runs live in one hash, whose fields cannot expire on their own before Redis 7.4:
        reconcile calls this. Task runs expire by themselves.
        """
        cutoff = now_micros - self.ttl * 1_000_000
        removed = offset = 0
        while True:
            call = self._prune_call(cutoff, offset, now_micros - DAY_MICROS)
            dropped, kept = self._run("prune", call)
            removed += dropped
            offset += kept
            if dropped + kept < PRUNE_CHUNK:
                return removed

    def set_meta(self, **values):
        self.client.hset(self.keys.meta, mapping={k: str(v) for k, v in values.items()})

    def lock(self, name, timeout):
        """A non-blocking lock under the environment's prefix (e.g. one reconcile at a time)."""
        self.load_scripts()
        return self.client.lock(self.keys.lock(name), timeout=timeout, blocking=False)

    # Reads

    def meta(self):
        return self._meta(self.client.hgetall(self.keys.meta))

    def board(self, limit=100):
        """The `limit` most recently changed flow runs, newest first, with counts per state
        and the change-stream cursor they are consistent with."""
        return self._board(self._run("board", self._board_call(limit)))

    def counts(self, now_micros):
        """Exact `Counts` of the whole environment at `now_micros`."""
        with self.client.pipeline(transaction=True) as pipe:
            self._fill_counts(pipe, now_micros)
            return self._counts(pipe.execute())

    def cursor(self):
        """The id of the newest change-stream entry ("0-0" when none)."""
        return self._cursor(self.client.xrevrange(self.keys.changes, count=1))

    def flow_run(self, flow_run_id):
        """One flow run and its task runs (oldest start first), or None."""
        raw = self.client.hget(self.keys.flow_runs, flow_run_id)
        if raw is None:
            return None
        tasks = self.records("task", self.task_ids_of([flow_run_id]))
        return RunRecord(flow_run_id, raw), self._in_start_order(tasks)

    def flow_run_ids(self, min_version="-inf", max_version="+inf"):
        """Ids of the flow runs held, optionally only those whose version is in a range."""
        return set(self._ids(self.client.zrangebyscore(self.keys.runs, min_version, max_version)))

    def inflight(self, kind, changed_before="+inf"):
        """Ids of the runs of `kind` held unfinished, optionally only those unchanged since."""
        return self._ids(
            self.client.zrangebyscore(self.keys.inflight(kind), "-inf", changed_before)
        )

    def task_ids_of(self, flow_run_ids):
        """Ids of the task runs held for the given flow runs."""
        with self.client.pipeline(transaction=False) as pipe:
            for flow_run_id in flow_run_ids:
                pipe.smembers(self.keys.tasks_of(flow_run_id))
            return {as_text(member) for members in pipe.execute() for member in members}

    def records(self, kind, run_ids):
        """Stored records of the given runs (missing ones left out)."""
        run_ids = list(run_ids)
        if not run_ids:
            return []
        with self.client.pipeline(transaction=False) as pipe:
            self._fill_records(pipe, kind, run_ids)
            (raws,) = pipe.execute()
        return self._records(run_ids, raws)

    def recent_changes(self, since, count=1000):
        """Entries from stream id `since` on, oldest first, whatever was trimmed before them:
        for summaries such as the board's chart, not for resuming (that is `changes_since`)."""
        entries = self.client.xrange(self.keys.changes, since, "+", count)
        return [stream_entry(entry_id, fields) for entry_id, fields in entries]

    def changes_since(self, after=EMPTY_CURSOR, count=1000):
        """Entries after the cursor `after` (exclusive), oldest first, or `resync`."""
        with self.client.pipeline(transaction=True) as pipe:
            self._fill_changes(pipe, after, count)
            info, entries = pipe.execute(raise_on_error=False)
        return self._changes(after, info, entries)


class AsyncEnvironmentState(_Vocabulary):
    """The asyncio form (ingest, reconcile, the live board). Its client belongs to the event
    loop that uses it: make one per loop and `aclose()` it."""

    def __init__(self, client, prefix, finished_ttl_seconds, stream_maxlen=None, loader=None):
        super().__init__(prefix, finished_ttl_seconds, stream_maxlen)
        self.client = client
        self.script_loader = loader or client

    @classmethod
    def for_environment(cls, environment):
        """`environment` must come `with_connections()`: nothing here may query the database."""
        return cls(
            async_environment_client(environment),
            environment.key_prefix,
            environment.finished_run_ttl.total_seconds(),
            loader=async_target_client(environment.redis_target),
        )

    async def aclose(self):
        # The clients were handed their pools, so closing a client alone leaves its pool open.
        for client in {id(c): c for c in (self.client, self.script_loader)}.values():
            await client.aclose(close_connection_pool=True)

    async def load_scripts(self):
        for script in (*map(source, SCRIPT_NAMES), *LOCK_SCRIPTS):
            await self.script_loader.script_load(script)

    async def _run(self, name, call):
        (reply,) = await self._run_all([(name, call)])
        return reply

    async def _run_all(self, calls):
        replies = []
        for start in range(0, len(calls), BATCH):
            chunk = calls[start : start + BATCH]
            chunk_replies = await self._pipelined(chunk)
            if missing := self._not_loaded(chunk_replies):
                await self.load_scripts()
                again = await self._pipelined([chunk[i] for i in missing])
                for i, reply in zip(missing, again, strict=True):
                    chunk_replies[i] = reply
            replies += self._checked(chunk_replies)
        return replies

    async def _pipelined(self, calls):
        async with self.client.pipeline(transaction=False) as pipe:
            self._queue(pipe, calls)
            return await pipe.execute(raise_on_error=False)

    # Writes

    async def apply(self, change):
        return bool(await self._run("apply", self._apply_call(change)))

    async def apply_batch(self, changes):
        calls = [("apply", self._apply_call(change)) for change in changes]
        return [bool(reply) for reply in await self._run_all(calls)]

    async def remove(self, kind, run_ids):
        run_ids = list(run_ids)
        if not run_ids:
            return
        tasks = await self.records("task", run_ids) if kind == "task" else []
        await self._run_all([("remove", call) for call in self._remove_calls(kind, run_ids, tasks)])

    async def prune_finished(self, now_micros):
        cutoff = now_micros - self.ttl * 1_000_000
        removed = offset = 0
        while True:
            call = self._prune_call(cutoff, offset, now_micros - DAY_MICROS)
            dropped, kept = await self._run("prune", call)
            removed += dropped
            offset += kept
            if dropped + kept < PRUNE_CHUNK:
                return removed

    async def set_meta(self, **values):
        await self.client.hset(self.keys.meta, mapping={k: str(v) for k, v in values.items()})

    async def lock(self, name, timeout):
        await self.load_scripts()
        return self.client.lock(self.keys.lock(name), timeout=timeout, blocking=False)

    # Reads

    async def meta(self):
        return self._meta(await self.client.hgetall(self.keys.meta))

    async def board(self, limit=100):
        return self._board(await self._run("board", self._board_call(limit)))

    async def counts(self, now_micros):
        async with self.client.pipeline(transaction=True) as pipe:
            self._fill_counts(pipe, now_micros)
            return self._counts(await pipe.execute())

    async def cursor(self):
        """The id of the newest change-stream entry ("0-0" when none): read it before reading
        runs, and every later change is on the stream after it."""
        return self._cursor(await self.client.xrevrange(self.keys.changes, count=1))

    async def flow_run(self, flow_run_id):
        raw = await self.client.hget(self.keys.flow_runs, flow_run_id)
        if raw is None:
            return None
        tasks = await self.records("task", await self.task_ids_of([flow_run_id]))
        return RunRecord(flow_run_id, raw), self._in_start_order(tasks)

    async def flow_run_ids(self, min_version="-inf", max_version="+inf"):
        ids = await self.client.zrangebyscore(self.keys.runs, min_version, max_version)
        return set(self._ids(ids))

    async def inflight(self, kind, changed_before="+inf"):
        ids = await self.client.zrangebyscore(self.keys.inflight(kind), "-inf", changed_before)
        return self._ids(ids)

    async def task_ids_of(self, flow_run_ids):
        async with self.client.pipeline(transaction=False) as pipe:
            for flow_run_id in flow_run_ids:
                pipe.smembers(self.keys.tasks_of(flow_run_id))
            return {as_text(member) for members in await pipe.execute() for member in members}

    async def records(self, kind, run_ids):
        run_ids = list(run_ids)
        if not run_ids:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            self._fill_records(pipe, kind, run_ids)
            (raws,) = await pipe.execute()
        return self._records(run_ids, raws)

    async def recent_changes(self, since, count=1000):
        """Entries from stream id `since` on, oldest first, whatever was trimmed before them:
        for summaries such as the board's chart, not for resuming (that is `changes_since`)."""
        entries = await self.client.xrange(self.keys.changes, since, "+", count)
        return [stream_entry(entry_id, fields) for entry_id, fields in entries]

    async def changes_since(self, after=EMPTY_CURSOR, count=1000):
        async with self.client.pipeline(transaction=True) as pipe:
            self._fill_changes(pipe, after, count)
            info, entries = await pipe.execute(raise_on_error=False)
        return self._changes(after, info, entries)
