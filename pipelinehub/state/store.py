"""An environment's run state in Redis: the one write path (`apply`) and the reads.

Every writer (event ingest, reconcile, any later hook) goes through `EnvironmentState.apply`,
which runs apply.lua: writes are idempotent and independent of arrival order.
"""

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from .connections import environment_client
from .keyspace import Keyspace
from .records import RunRecord, state_type_of

APPLY_SCRIPT = (Path(__file__).with_name("apply.lua")).read_text()


@dataclass
class Board:
    runs: list
    counts: dict = field(default_factory=dict)


@dataclass
class StreamEntry:
    stream_id: str
    kind: str
    run: RunRecord | None  # None: the run was removed


class EnvironmentState:
    def __init__(self, client, prefix, finished_ttl_seconds, stream_maxlen=None):
        self.client = client
        self.keys = Keyspace(prefix)
        self.ttl = int(finished_ttl_seconds)
        self.stream_maxlen = stream_maxlen or settings.STATE_STREAM_MAXLEN
        self._apply = client.register_script(APPLY_SCRIPT)

    @classmethod
    def for_environment(cls, environment):
        return cls(
            environment_client(environment),
            environment.key_prefix,
            environment.finished_run_ttl.total_seconds(),
        )

    # Writes

    def apply(self, change):
        """Store `change` if it is newer than what Redis holds; True when something changed."""
        return bool(self._run_apply(change, self.client))

    def apply_batch(self, changes):
        """Apply many changes in one round trip; one bool per change, in order."""
        if not changes:
            return []
        with self.client.pipeline(transaction=False) as pipe:
            for change in changes:
                self._run_apply(change, pipe)
            return [bool(result) for result in pipe.execute()]

    def _run_apply(self, change, client):
        ks = self.keys
        if change.kind == "flow":
            keys = [ks.run(change.id), ks.changes, ks.runs, ks.tasks_of(change.id)]
        else:
            keys = [
                ks.task(change.id),
                ks.changes,
                ks.tasks_of(change.flow_run_id),
                ks.run(change.flow_run_id),
            ]
        args = [change.kind, change.id, change.encode(), self.ttl, self.stream_maxlen]
        return self._apply(keys=keys, args=args, client=client)

    def remove(self, kind, run_ids):
        """Forget runs that Prefect no longer has (reconcile's orphans)."""
        if not run_ids:
            return
        ks = self.keys
        record_key = ks.run if kind == "flow" else ks.task
        raws = self.client.mget([record_key(run_id) for run_id in run_ids])
        with self.client.pipeline(transaction=True) as pipe:
            for run_id, raw in zip(run_ids, raws, strict=True):
                pipe.delete(record_key(run_id))
                if kind == "flow":
                    pipe.zrem(ks.runs, run_id)
                    pipe.delete(ks.tasks_of(run_id))
                elif raw is not None:
                    pipe.srem(ks.tasks_of(RunRecord.decode(run_id, raw).flow_run_id), run_id)
                pipe.xadd(
                    ks.changes,
                    {"kind": kind, "id": run_id, "record": ""},
                    maxlen=self.stream_maxlen,
                    approximate=True,
                )
            pipe.execute()

    def prune_index(self):
        """Drop board index entries whose run has expired (finished runs carry a TTL)."""
        ids = [raw.decode() for raw in self.client.zrange(self.keys.runs, 0, -1)]
        if not ids:
            return 0
        with self.client.pipeline(transaction=False) as pipe:
            for run_id in ids:
                pipe.exists(self.keys.run(run_id))
            gone = [
                run_id for run_id, exists in zip(ids, pipe.execute(), strict=True) if not exists
            ]
        if gone:
            self.client.zrem(self.keys.runs, *gone)
        return len(gone)

    def set_meta(self, **values):
        self.client.hset(self.keys.meta, mapping={k: str(v) for k, v in values.items()})

    # Reads

    def meta(self):
        return {k.decode(): v.decode() for k, v in self.client.hgetall(self.keys.meta).items()}

    def board(self, limit=100):
        """The `limit` most recently changed flow runs, newest first, with counts per state."""
        # The hot path of every board: bytes all the way, no per-run formatting or decoding.
        ids = self.client.zrevrange(self.keys.runs, 0, limit - 1)
        if not ids:
            return Board([], {})
        run_prefix = self.keys.run("").encode()
        raws = self.client.mget([run_prefix + run_id for run_id in ids])
        runs = [
            RunRecord(run_id.decode(), raw)
            for run_id, raw in zip(ids, raws, strict=True)
            if raw is not None
        ]
        counts = Counter(state_type_of(run.raw) for run in runs)
        return Board(runs, {state.decode(): count for state, count in counts.items()})

    def flow_run(self, flow_run_id):
        """One flow run and its task runs (oldest start first), or None."""
        raw = self.client.get(self.keys.run(flow_run_id))
        if raw is None:
            return None
        members = self.client.smembers(self.keys.tasks_of(flow_run_id))
        task_ids = [member.decode() for member in members]
        tasks = self._records(self.keys.task, task_ids)
        tasks.sort(key=lambda task: (task.start or task.version, task.id))
        return RunRecord.decode(flow_run_id, raw), tasks

    def flow_run_ids(self):
        return {raw.decode() for raw in self.client.zrange(self.keys.runs, 0, -1)}

    def records(self, kind, run_ids):
        """Stored records of the given runs (missing ones left out)."""
        return self._records(self.keys.run if kind == "flow" else self.keys.task, list(run_ids))

    def changes_since(self, stream_id="-", count=1000):
        """Entries after `stream_id` (exclusive), oldest first."""
        start = stream_id if stream_id == "-" else f"({stream_id}"
        return [
            self._entry(entry_id, fields)
            for entry_id, fields in self.client.xrange(self.keys.changes, start, "+", count)
        ]

    def _records(self, key_of, run_ids):
        if not run_ids:
            return []
        raws = self.client.mget([key_of(run_id) for run_id in run_ids])
        return [
            RunRecord.decode(run_id, raw)
            for run_id, raw in zip(run_ids, raws, strict=True)
            if raw is not None
        ]

    @staticmethod
    def _entry(entry_id, fields):
        run_id, record = fields[b"id"].decode(), fields[b"record"]
        return StreamEntry(
            entry_id.decode(),
            fields[b"kind"].decode(),
            RunRecord.decode(run_id, record) if record else None,
        )
