"""What a run looks like in Redis: a MessagePack array of eleven values per run.

MessagePack because Redis's Lua can merge it (cmsgpack, exact for integers below 2**53, which
microsecond timestamps are) and it is the smallest of the formats Lua reads: a flow run with
its index entry stays under 400 bytes (docs/benchmarks.md). Only what a board shows is stored:
no parameters, no results, no logs. Timestamps are integer microseconds since the epoch; an
absent one is 0.

A `RunChange` checks its bounds when it is made, because whatever it holds ends up in Redis and
is merged there: a run count msgpack cannot pack fails the whole batch, and a state dated in the
far future wins over every real state of its run forever (apply keeps the newest).
"""

import re
import reprlib
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgpack

TERMINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "CRASHED"})
BASELINE_STATE = "COMPLETED"  # runs that finish in it give their flow's baseline a duration
FAILURE_STATES = frozenset({"FAILED", "CRASHED"})  # what "failed runs" notify about
STATE_TYPES = frozenset(
    {"SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING"} | TERMINAL_STATES
)

MAX_RUN_COUNT = 10_000
MAX_TEXT_LENGTH = 200  # names and state names: longer ones are cut, they are only shown
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)  # no Prefect state is older
FUTURE_TOLERANCE = timedelta(minutes=5)  # clock skew between Prefect and us
# A scheduled run's expected start may lie far ahead; past this it is a broken value (and it
# stays far below the 2**53 up to which Lua counts exactly).
SCHEDULE_HORIZON = timedelta(days=3660)
_UUID = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE | re.ASCII
)


def to_micros(moment):
    """A datetime as integer microseconds since the epoch (None stays None)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


EARLIEST_MICROS = to_micros(EARLIEST)
FUTURE_TOLERANCE_MICROS = FUTURE_TOLERANCE // timedelta(microseconds=1)
SCHEDULE_HORIZON_MICROS = SCHEDULE_HORIZON // timedelta(microseconds=1)


def latest_micros():
    """The latest timestamp a change may carry now: a state from the future is a broken clock
    or a forged event, and stored it would hide every real state of its run."""
    return time.time_ns() // 1000 + FUTURE_TOLERANCE_MICROS


class _Brief(reprlib.Repr):
    def __init__(self):
        super().__init__()
        self.maxstring = self.maxother = 60

    def repr_int(self, x, level):
        # repr() itself refuses integers of more than 4300 digits.
        return f"<{x.bit_length()}-bit integer>" if x.bit_length() > 64 else repr(x)


_BRIEF = _Brief()


def brief(value):
    """A bounded repr for messages: values from events are untrusted and may be huge."""
    return _BRIEF.repr(value)


@dataclass(frozen=True)
class RunChange:
    """One observed state of a flow run (`kind="flow"`) or task run (`kind="task"`).

    `version` is the state's timestamp in microseconds: the order of states, whatever the order
    in which they arrive. `expected_start` is when a SCHEDULED state expects the run to start
    (0 for any other state): what the late-run detector reads.
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
    expected_start: int | None = None

    def __post_init__(self):
        """Refuse what does not fit the record (ValueError) and normalise what may be spelled
        several ways, so that one run is one key and one record whatever the source."""
        if self.kind not in ("flow", "task"):
            raise ValueError(f"kind must be 'flow' or 'task', not {brief(self.kind)}")
        if not isinstance(self.state_type, str) or self.state_type not in STATE_TYPES:
            raise ValueError(f"unknown state type {brief(self.state_type)}")
        self._normalise("id", _uuid("id", self.id))
        self._normalise("deployment", _optional_uuid("deployment", self.deployment))
        self._normalise("flow_run_id", _optional_uuid("flow_run_id", self.flow_run_id))
        if self.kind == "task" and not self.flow_run_id:
            raise ValueError("a task run change needs its flow run's id")
        for field in ("state_name", "name", "flow"):
            self._normalise(field, _text(field, getattr(self, field)))
        latest = latest_micros()
        _check_micros("version", self.version, latest)
        for field in ("start", "end"):
            if getattr(self, field) is not None:
                _check_micros(field, getattr(self, field), latest)
        if self.expected_start is not None:
            _check_micros("expected_start", self.expected_start, latest + SCHEDULE_HORIZON_MICROS)
        if not _is_int(self.run_count) or not 0 <= self.run_count <= MAX_RUN_COUNT:
            raise ValueError(
                f"run_count must be an integer in 0..{MAX_RUN_COUNT}, not {brief(self.run_count)}"
            )

    def _normalise(self, field, value):
        """Set a field of this frozen dataclass while it is being made."""
        object.__setattr__(self, field, value)

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
            self.expected_start,
        )


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _uuid(field, value):
    """Prefect ids are UUIDs; the canonical lowercase form keeps one key per run."""
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise ValueError(f"{field} must be a UUID string, not {brief(value)}")
    return str(uuid.UUID(value))


def canonical_id(value):
    """A run id in the one form keys use (ValueError when it is not a UUID)."""
    return _uuid("id", value)


def _optional_uuid(field, value):
    return "" if value == "" else _uuid(field, value)


def _text(field, value):
    """Display strings are cut to MAX_TEXT_LENGTH and characters UTF-8 cannot carry (lone
    surrogates) replaced: msgpack would refuse them, and a board loses nothing by it."""
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a string, not {brief(value)}")
    return value[:MAX_TEXT_LENGTH].encode("utf-8", "replace").decode("utf-8")


def _check_micros(field, value, latest):
    """A time in microseconds between EARLIEST and now plus FUTURE_TOLERANCE: far below the
    2**53 up to which Redis's Lua counts exactly."""
    if not _is_int(value):
        raise ValueError(f"{field} must be integer microseconds, not {brief(value)}")
    if value < EARLIEST_MICROS:
        raise ValueError(f"{field} {brief(value)} is before {EARLIEST:%Y-%m-%d}")
    if value > latest:
        raise ValueError(f"{field} {brief(value)} is in the future (beyond {FUTURE_TOLERANCE})")


def state_type_of(raw):
    """The state type of an encoded record, without decoding it: the layout puts it first,
    after the array marker, as a short string whose length is in its marker's low bits."""
    return raw[2 : 2 + (raw[1] & 0x1F)]


def _field(index):
    return property(lambda self: self.fields[index])


def _time_field(index):
    return property(lambda self: self.fields[index] or None)


def _optional_field(index):
    """A field records written before it existed lack: absent reads as None."""
    return property(lambda self: (self.fields[index] if len(self.fields) > index else 0) or None)


class RunRecord:
    """A run as read back from Redis, decoded on first use: a board of ten thousand runs
    shows a screenful of them. `flag` is the run's detector flag (a dict: kind, reason,
    since), read beside the record, or None."""

    __slots__ = ("id", "raw", "_fields", "flag")
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
    )  # what a row shows; expected_start is read by the late-run detector only

    def __init__(self, run_id, raw, flag=None):
        self.id = run_id
        self.raw = raw
        self._fields = None
        self.flag = flag

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
    expected_start = _optional_field(10)

    def as_dict(self):
        fields = {name: getattr(self, name) for name in self.FIELDS}
        return {"id": self.id, **fields, "flag": self.flag}

    def __repr__(self):
        return f"<RunRecord {self.id} {self.state_type}>"
