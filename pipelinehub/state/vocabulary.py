"""What both forms of the store (`store.py`) send to Redis and how they read the replies: the
keys and arguments of every script call, reply decoding, and the result types. One vocabulary;
each form adds only its I/O."""

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings
from redis.exceptions import NoScriptError
from redis.lock import Lock

from .flags import from_stored
from .inflight import chunks
from .keyspace import Keyspace
from .records import RunRecord, state_type_of
from .scripts import FINISHED_ORDER, sha

PRUNE_CHUNK = 500
BATCH = 500
EMPTY_CURSOR = "0-0"
DAY_MICROS = 86_400 * 1_000_000
BASELINE_TTL_SECONDS = 30 * 86_400  # a flow that has not completed for a month loses its baseline
HEARTBEAT_BATCH = 500  # heartbeats recorded per script call


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
        self.keys = ks = Keyspace(prefix)
        self.ttl = int(finished_ttl_seconds)
        self.stream_maxlen = stream_maxlen or settings.STATE_STREAM_MAXLEN
        # Built once: apply is the hot path, and most of its keys are the same for every run.
        self._finished = [ks.finished(state) for state in FINISHED_ORDER]
        self._flow_tail = [
            ks.inflight("flow"),
            ks.counts,
            ks.heartbeats,
            ks.flags,
            ks.failed,
            *self._finished,
        ]
        self._baseline_args = [ks.durations_base, BASELINE_TTL_SECONDS]

    def _apply_call(self, change, day_ago=None):
        """Keys and arguments of apply.lua for `change`; `day_ago` (a version) may be given
        once for a whole batch."""
        ks = self.keys
        if change.kind == "flow":
            keys = [ks.flow_runs, ks.changes, ks.runs, ks.tasks_of(change.id), *self._flow_tail]
        else:
            keys = [ks.task(change.id), ks.changes, ks.tasks_of(change.flow_run_id), ks.flow_runs]
            keys.append(ks.inflight("task"))
        args = [
            change.kind,
            change.id,
            change.encode(),
            self.ttl,
            self.stream_maxlen,
            change.flow_run_id,
            day_ago or self._day_ago(),
            *self._baseline_args,
        ]
        return keys, args

    @staticmethod
    def _day_ago():
        return time.time_ns() // 1000 - DAY_MICROS

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
        return self._finished

    def _prune_call(self, cutoff, offset, day_ago):
        ks = self.keys
        keys = [ks.flow_runs, ks.runs, ks.changes, ks.inflight("flow"), ks.heartbeats, ks.flags]
        keys += self._finished_keys()
        return keys, [cutoff, offset, PRUNE_CHUNK, self.stream_maxlen, day_ago]

    @staticmethod
    def _pruned_all(dropped, kept):
        """Whether a prune chunk was the last: it scanned fewer runs than a chunk holds."""
        return dropped + kept < PRUNE_CHUNK

    def _remove_call(self, kind, run_id, flow_run_id=""):
        ks = self.keys
        if kind == "flow":
            keys = [ks.flow_runs, ks.changes, ks.runs, ks.tasks_of(run_id), ks.inflight("flow")]
            keys += [ks.counts, ks.heartbeats, ks.flags, *self._finished_keys()]
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
        return [self.keys.runs, self.keys.flow_runs, self.keys.changes, self.keys.flags], [limit]

    def _heartbeat_calls(self, beats):
        """heartbeat.lua calls for [(flow run id, microseconds)], HEARTBEAT_BATCH a call."""
        keys = [self.keys.flow_runs, self.keys.heartbeats]
        return [
            ("heartbeat", (keys, [value for beat in chunk for value in beat]))
            for chunk in chunks(list(beats), HEARTBEAT_BATCH)
        ]

    def _flags_call(self, judged):
        """flags.lua for [(RunFlag, the state type it judged)]: the environment's whole set."""
        ks = self.keys
        args = [self.stream_maxlen]
        for flag, state_type in judged:
            args += [flag.run_id, state_type, flag.stored()]
        return [ks.flow_runs, ks.flags, ks.changes], args

    def _fill_flow_run(self, pipe, flow_run_id):
        pipe.hget(self.keys.flow_runs, flow_run_id)
        pipe.hget(self.keys.flags, flow_run_id)

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
        cursor, ids, raws, flags = reply
        runs = [
            RunRecord(run_id.decode(), raw, from_stored(flag))
            for run_id, raw, flag in zip(ids, raws, flags, strict=True)
            if raw
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


def meta_time(iso):
    """A time of the meta hash (`ingest_watermark`, `last_reconcile`: ISO, UTC when it names no
    zone) as a datetime; None when absent or garbled."""
    try:
        moment = datetime.fromisoformat(iso) if iso else None
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment and moment.tzinfo is None else moment


def as_text(value):
    return value.decode() if isinstance(value, bytes) else value


def stream_entry(entry_id, fields):
    run_id, record = fields[b"id"].decode(), fields[b"record"]
    flag = from_stored(fields.get(b"flag"))
    return StreamEntry(
        as_text(entry_id),
        fields[b"kind"].decode(),
        RunRecord(run_id, record, flag) if record else None,
        run_id,
    )
