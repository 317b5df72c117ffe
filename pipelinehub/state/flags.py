"""What the detectors hand to the alerts: one flag per run that needs a person's attention.

The contract between `detection` (which finds flags in Redis and writes them through `state`)
and `alerts` (which opens, clears, groups and delivers notifications about them)."""

import json
from dataclasses import dataclass

RUNAWAY = "runaway"
STUCK = "stuck"
LATE = "late"
FAILED = "failed"
KINDS = (RUNAWAY, STUCK, LATE, FAILED)


@dataclass(frozen=True)
class RunFlag:
    run_id: str
    kind: str  # one of KINDS
    reason: str  # for people: "running 41 min, usually 6 min"
    since_micros: int  # when the run crossed its threshold (or failed)
    run_name: str = ""
    flow_name: str = ""
    deployment: str = ""

    def stored(self):
        """The flag as the flags hash holds it and the change stream carries it (JSON, which
        the browser reads as it is)."""
        return json.dumps(
            {"kind": self.kind, "reason": self.reason, "since": self.since_micros},
            separators=(",", ":"),
        )


def from_stored(raw):
    """A stored flag as a dict (kind, reason, since), or None."""
    return json.loads(raw) if raw else None
