"""An environment's run state in Redis: the one write path (`apply`) and every read.

`state` is the only owner of Redis I/O for run state. It comes in two forms that speak one
vocabulary: `EnvironmentState` (blocking redis-py, for views, Celery and commands) and
`AsyncEnvironmentState` (redis.asyncio, for ingest and the live board, where one slow Redis
must not stall the others). `_Vocabulary` holds what both send and how replies are read; each
form adds only the I/O. Every write goes through a Lua script (scripts.py), so writes are
atomic, idempotent and independent of arrival order.
"""

from . import inflight
from .connections import (
    async_environment_client,
    async_target_client,
    environment_client,
    target_client,
)
from .flags import from_stored
from .records import RunRecord
from .scripts import SCRIPT_NAMES, source
from .vocabulary import (  # noqa: F401 - the store's public names, defined with the vocabulary
    BATCH,
    DAY_MICROS,
    EMPTY_CURSOR,
    LOCK_SCRIPTS,
    Board,
    Changes,
    Counts,
    StreamEntry,
    _Vocabulary,
    as_text,
    stream_entry,
    stream_id_tuple,
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
        day_ago = self._day_ago()
        calls = [("apply", self._apply_call(change, day_ago)) for change in changes]
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
            if self._pruned_all(dropped, kept):
                return removed

    def record_heartbeats(self, beats):
        """Record [(flow run id, microseconds)] as the runs' last sign of life (heartbeat.lua:
        only runs held unfinished, only newer ones); returns how many were recorded."""
        return sum(self._run_all(self._heartbeat_calls(beats)))

    def set_flags(self, judged):
        """Make [(RunFlag, state type judged)] the environment's whole set of flags, each set
        or cleared flag an entry on the change stream; returns how many changed."""
        return self._run("flags", self._flags_call(judged))

    def newly_failed(self):
        """The flow runs that entered a failure state and were not handed on yet (records,
        newest last), and the version they go up to: `forget_failed(upto)` once they have
        been, so that a pass that fails on the way loses none."""
        entries = self.client.zrange(self.keys.failed, 0, -1, withscores=True)
        upto = int(entries[-1][1]) if entries else None
        return self.records("flow", self._ids([run_id for run_id, _ in entries])), upto

    def forget_failed(self, upto):
        """Drop the newly failed runs up to version `upto`: a run that fails again later, with
        a newer version, stays for the next pass."""
        if upto is not None:
            self.client.zremrangebyscore(self.keys.failed, "-inf", upto)

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
        """One flow run (with its flag) and its task runs (oldest start first), or None."""
        with self.client.pipeline(transaction=True) as pipe:
            self._fill_flow_run(pipe, flow_run_id)
            raw, flag = pipe.execute()
        if raw is None:
            return None
        tasks = self.records("task", self.task_ids_of([flow_run_id]))
        return RunRecord(flow_run_id, raw, from_stored(flag)), self._in_start_order(tasks)

    def flow_run_ids(self, min_version="-inf", max_version="+inf"):
        """Ids of the flow runs held, optionally only those whose version is in a range."""
        return set(self._ids(self.client.zrangebyscore(self.keys.runs, min_version, max_version)))

    def inflight(self, kind, changed_before="+inf"):
        """Ids of the runs of `kind` held unfinished, optionally only those unchanged since."""
        return self._ids(
            self.client.zrangebyscore(self.keys.inflight(kind), "-inf", changed_before)
        )

    def unfinished(self):
        """An `inflight.InFlight`: every flow run held unfinished, with the heartbeats and
        baselines a detection pass judges them by."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.zrange(self.keys.inflight("flow"), 0, -1)
            pipe.hgetall(self.keys.heartbeats)
            ids, beats = pipe.execute()
        ids = self._ids(ids)
        with self.client.pipeline(transaction=False) as pipe:
            for chunk in inflight.chunks(ids):
                pipe.hmget(self.keys.flow_runs, chunk)
            runs = inflight.decode_runs(ids, pipe.execute())
        return inflight.InFlight(
            runs,
            inflight.decode_heartbeats(beats),
            self.baselines(inflight.scopes_of(runs)),
        )

    def baselines(self, scopes):
        """{(scope, name): Baseline} of the given ("flow", name) and ("deployment", id) that
        have completed runs."""
        with self.client.pipeline(transaction=False) as pipe:
            for scope in scopes:
                pipe.zrange(self.keys.durations(*scope), 0, -1)
            return inflight.decode_baselines(scopes, pipe.execute())

    def flags(self):
        """{flow run id: stored flag} of the environment."""
        return inflight.decode_flags(self.client.hgetall(self.keys.flags))

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
        day_ago = self._day_ago()
        calls = [("apply", self._apply_call(change, day_ago)) for change in changes]
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
            if self._pruned_all(dropped, kept):
                return removed

    async def record_heartbeats(self, beats):
        return sum(await self._run_all(self._heartbeat_calls(beats)))

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
        async with self.client.pipeline(transaction=True) as pipe:
            self._fill_flow_run(pipe, flow_run_id)
            raw, flag = await pipe.execute()
        if raw is None:
            return None
        tasks = await self.records("task", await self.task_ids_of([flow_run_id]))
        return RunRecord(flow_run_id, raw, from_stored(flag)), self._in_start_order(tasks)

    async def flow_run_ids(self, min_version="-inf", max_version="+inf"):
        ids = await self.client.zrangebyscore(self.keys.runs, min_version, max_version)
        return set(self._ids(ids))

    async def inflight(self, kind, changed_before="+inf"):
        ids = await self.client.zrangebyscore(self.keys.inflight(kind), "-inf", changed_before)
        return self._ids(ids)

    async def flags(self):
        return inflight.decode_flags(await self.client.hgetall(self.keys.flags))

    async def flagged(self):
        """The flagged flow runs, each with its flag, the longest flagged first."""
        flags = await self.flags()
        runs = await self.records("flow", list(flags))
        for run in runs:
            run.flag = flags[run.id]
        return sorted(runs, key=lambda run: (run.flag["since"], run.id))

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
