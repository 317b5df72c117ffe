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
