"""What a run looks like in Redis: a MessagePack array of ten values per run.

MessagePack because Redis's Lua can merge it (cmsgpack, exact for integers below 2**53, which
microsecond timestamps are) and it is the smallest of the formats Lua reads: a flow run with
its index entry stays under 400 bytes (docs/benchmarks.md). Only what a board shows is stored:
no parameters, no results, no logs. Timestamps are integer microseconds since the epoch; an
absent one is 0.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

import msgpack

TERMINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "CRASHED"})
STATE_TYPES = frozenset(
    {"SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING"} | TERMINAL_STATES
)


def to_micros(moment):
    """A datetime as integer microseconds since the epoch (None stays None)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True)
class RunChange:
    """One observed state of a flow run (`kind="flow"`) or task run (`kind="task"`).

    `version` is the state's timestamp in microseconds: the order of states, whatever the order
    in which they arrive.
    """

    kind: str
    id: str
    version: int
    state_type: str
    state_name: str
    name: str = ""
    flow: str = ""
    deployment: str = ""
    flow_run_id: str = ""
    start: int | None = None
    end: int | None = None
    run_count: int = 0

    def __post_init__(self):
        if self.kind not in ("flow", "task"):
            raise ValueError(f"kind must be 'flow' or 'task', not {self.kind!r}")
        if not self.id:
            raise ValueError("a run change needs the run's id")
        if self.state_type not in STATE_TYPES:
            raise ValueError(f"unknown state type {self.state_type!r}")
        if not isinstance(self.version, int) or self.version <= 0:
            raise ValueError(f"version must be positive integer microseconds, not {self.version!r}")
        if self.kind == "task" and not self.flow_run_id:
            raise ValueError("a task run change needs its flow run's id")

    @property
    def terminal(self):
        return self.state_type in TERMINAL_STATES

    def encode(self):
        """The record layout that apply.lua merges (None as 0 for times)."""
        return msgpack.packb([0 if value is None else value for value in self._values()])

    def _values(self):
        # The state type leads, so that a board can count states without decoding records.
        return (
            self.state_type,
            self.version,
            self.state_name,
            self.name,
            self.flow,
            self.deployment,
            self.flow_run_id,
            self.start,
            self.end,
            self.run_count,
        )


def state_type_of(raw):
    """The state type of an encoded record, without decoding it: the layout puts it first,
    after the array marker, as a short string whose length is in its marker's low bits."""
    return raw[2 : 2 + (raw[1] & 0x1F)]


def _field(index):
    return property(lambda self: self.fields[index])


def _time_field(index):
    return property(lambda self: self.fields[index] or None)


class RunRecord:
    """A run as read back from Redis, decoded on first use: a board of ten thousand runs
    shows a screenful of them."""

    __slots__ = ("id", "raw", "_fields")
    FIELDS = (
        "version",
        "state_type",
        "state_name",
        "name",
        "flow",
        "deployment",
        "flow_run_id",
        "start",
        "end",
        "run_count",
    )

    def __init__(self, run_id, raw):
        self.id = run_id
        self.raw = raw
        self._fields = None

    @property
    def fields(self):
        if self._fields is None:
            self._fields = msgpack.unpackb(self.raw)
        return self._fields

    @property
    def state_type(self):
        return state_type_of(self.raw).decode()

    version = _field(1)
    state_name = _field(2)
    name = _field(3)
    flow = _field(4)
    deployment = _field(5)
    flow_run_id = _field(6)
    start = _time_field(7)
    end = _time_field(8)
    run_count = _field(9)

    def as_dict(self):
        return {"id": self.id, **{name: getattr(self, name) for name in self.FIELDS}}

    def __repr__(self):
        return f"<RunRecord {self.id} {self.state_type}>"
