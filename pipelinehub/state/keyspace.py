"""Key names of one environment's run state. Every key starts with the environment's prefix,
whose {hash tag} puts them all in one Redis Cluster slot.

Beside the runs themselves, what the detectors read (docs/detection.md):
- `heartbeats` (hash): flow run id -> microseconds of its newest heartbeat event, only while the
  run is unfinished (apply drops it when the run finishes; remove and prune too);
- `flags` (hash): flow run id -> its detector flag (JSON: kind, reason, since), written only by
  flags.lua, dropped by apply when the run's state type changes, and by remove and prune;
- `durations:<flow|deployment>:<name or id>` (sorted set): "<duration in microseconds> <run
  id>" by end, the BASELINE_RUNS completed runs that ended last: a flow's or deployment's
  baseline (its 95th percentile is taken when read). Written by apply when a run completes with
  a known start and end; expires BASELINE_TTL after the last completion;
- `failed` (sorted set): flow runs that entered a failure state, by version, newest
  FAILURES_KEPT: the detector's outbox for failure notifications, emptied by every pass.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Keyspace:
    prefix: str

    def task(self, task_run_id):
        return f"{self.prefix}task:{task_run_id}"

    def tasks_of(self, flow_run_id):
        return f"{self.prefix}run:{flow_run_id}:tasks"

    @property
    def flow_runs(self):
        """Hash: flow run id to record."""
        return f"{self.prefix}flowruns"

    @property
    def runs(self):
        """Sorted set: flow run ids by version, the board's index."""
        return f"{self.prefix}runs"

    def inflight(self, kind):
        """Sorted set: ids of the runs of `kind` ("flow" or "task") not finished, by version."""
        return f"{self.prefix}inflight:{kind}"

    @property
    def counts(self):
        """Hash: state type -> number of flow runs in flight in it, kept by every write."""
        return f"{self.prefix}counts"

    def finished(self, state_type):
        """Sorted set: flow runs that finished in `state_type`, by version (their end), kept
        for a day: the home page's "finished in the last 24 hours"."""
        return f"{self.prefix}finished:{state_type}"

    @property
    def heartbeats(self):
        return f"{self.prefix}heartbeats"

    @property
    def flags(self):
        return f"{self.prefix}flags"

    @property
    def failed(self):
        return f"{self.prefix}failed"

    @property
    def durations_base(self):
        """What apply.lua prefixes to "<scope>:<name>" to name a durations list."""
        return f"{self.prefix}durations:"

    def durations(self, scope, name):
        """Sorted set: "<duration> <run id>" by end, the newest completed runs of a flow
        ("flow", its name) or deployment ("deployment", its id)."""
        return f"{self.durations_base}{scope}:{name}"

    @property
    def changes(self):
        return f"{self.prefix}changes"

    @property
    def meta(self):
        return f"{self.prefix}meta"

    def lock(self, name):
        return f"{self.prefix}lock:{name}"

    @property
    def pattern(self):
        """The ACL key pattern that confines a user to this environment."""
        return f"{self.prefix}*"
