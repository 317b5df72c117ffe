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

APPLY_SCRIPT = Path(__file__).with_name("apply.lua").read_text()
PRUNE_SCRIPT = Path(__file__).with_name("prune.lua").read_text()
PRUNE_CHUNK = 500
BATCH = 500


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
        self._prune = client.register_script(PRUNE_SCRIPT)

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
        """Apply many changes pipelined, a round trip per BATCH; one bool per change, in order."""
        results = []
        for start in range(0, len(changes), BATCH):
            with self.client.pipeline(transaction=False) as pipe:
                for change in changes[start : start + BATCH]:
                    self._run_apply(change, pipe)
                results += [bool(result) for result in pipe.execute()]
        return results

    def _run_apply(self, change, client):
        ks = self.keys
        if change.kind == "flow":
            keys = [ks.flow_runs, ks.changes, ks.runs, ks.tasks_of(change.id)]
        else:
            keys = [ks.task(change.id), ks.changes, ks.tasks_of(change.flow_run_id), ks.flow_runs]
        args = [
            change.kind,
            change.id,
            change.encode(),
            self.ttl,
            self.stream_maxlen,
            change.flow_run_id,
        ]
        return self._apply(keys=keys, args=args, client=client)

    def remove(self, kind, run_ids):
        """Forget runs that Prefect no longer has (reconcile's orphans)."""
        if not run_ids:
            return
        ks = self.keys
        tasks = self.records("task", run_ids) if kind == "task" else []
        with self.client.pipeline(transaction=True) as pipe:
            if kind == "flow":
                pipe.hdel(ks.flow_runs, *run_ids)
                pipe.zrem(ks.runs, *run_ids)
                pipe.delete(*(ks.tasks_of(run_id) for run_id in run_ids))
            else:
                pipe.delete(*(ks.task(run_id) for run_id in run_ids))
                for task in tasks:
                    pipe.srem(ks.tasks_of(task.flow_run_id), task.id)
            for run_id in run_ids:
                pipe.xadd(
                    ks.changes,
                    {"kind": kind, "id": run_id, "record": ""},
                    maxlen=self.stream_maxlen,
                    approximate=True,
                )
            pipe.execute()

    def prune_finished(self, now_micros):
        """Drop flow runs finished more than the TTL before `now_micros`; returns how many.

        Flow runs live in one hash, whose fields cannot expire on their own before Redis 7.4:
        reconcile calls this. Task runs expire by themselves.
        """
        cutoff = now_micros - self.ttl * 1_000_000
        removed = offset = 0
        while True:
            dropped, kept = self._prune(
                keys=[self.keys.flow_runs, self.keys.runs], args=[cutoff, offset, PRUNE_CHUNK]
            )
            removed += dropped
            offset += kept
            if dropped + kept < PRUNE_CHUNK:
                return removed

    def set_meta(self, **values):
        self.client.hset(self.keys.meta, mapping={k: str(v) for k, v in values.items()})

    # Reads

    def meta(self):
        return {k.decode(): v.decode() for k, v in self.client.hgetall(self.keys.meta).items()}

    def board(self, limit=100):
        """The `limit` most recently changed flow runs, newest first, with counts per state."""
        # The hot path of every board: no per-run decoding here (see RunRecord).
        ids = self.client.zrevrange(self.keys.runs, 0, limit - 1)
        if not ids:
            return Board([], {})
        raws = self.client.hmget(self.keys.flow_runs, ids)
        runs = [
            RunRecord(run_id.decode(), raw)
            for run_id, raw in zip(ids, raws, strict=True)
            if raw is not None
        ]
        counts = Counter(state_type_of(run.raw) for run in runs)
        return Board(runs, {state.decode(): count for state, count in counts.items()})

    def flow_run(self, flow_run_id):
        """One flow run and its task runs (oldest start first), or None."""
        raw = self.client.hget(self.keys.flow_runs, flow_run_id)
        if raw is None:
            return None
        members = self.client.smembers(self.keys.tasks_of(flow_run_id))
        tasks = self.records("task", [member.decode() for member in members])
        tasks.sort(key=lambda task: (task.start or task.version, task.id))
        return RunRecord(flow_run_id, raw), tasks

    def flow_run_ids(self):
        return {raw.decode() for raw in self.client.zrange(self.keys.runs, 0, -1)}

    def records(self, kind, run_ids):
        """Stored records of the given runs (missing ones left out)."""
        run_ids = list(run_ids)
        if not run_ids:
            return []
        if kind == "flow":
            raws = self.client.hmget(self.keys.flow_runs, run_ids)
        else:
            raws = self.client.mget([self.keys.task(run_id) for run_id in run_ids])
        return [
            RunRecord(run_id, raw)
            for run_id, raw in zip(run_ids, raws, strict=True)
            if raw is not None
        ]

    def changes_since(self, stream_id="-", count=1000):
        """Entries after `stream_id` (exclusive), oldest first."""
        start = stream_id if stream_id == "-" else f"({stream_id}"
        return [
            self._entry(entry_id, fields)
            for entry_id, fields in self.client.xrange(self.keys.changes, start, "+", count)
        ]

    @staticmethod
    def _entry(entry_id, fields):
        run_id, record = fields[b"id"].decode(), fields[b"record"]
        return StreamEntry(
            entry_id.decode(),
            fields[b"kind"].decode(),
            RunRecord(run_id, record) if record else None,
        )
