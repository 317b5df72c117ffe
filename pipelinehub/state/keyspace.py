"""Key names of one environment's run state. Every key starts with the environment's prefix,
whose {hash tag} puts them all in one Redis Cluster slot."""

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
