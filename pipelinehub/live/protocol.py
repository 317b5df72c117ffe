"""The live protocol's frames, in one place: what the server sends and how a run is shown.

Server frames (JSON objects with a `type`):
- `snapshot`: `rows` (the newest flow runs that match the client's filter, at most
  SNAPSHOT_ROWS), `counts` (per state, of the rows read), `cursor` (the change-stream id the rows
  are consistent with);
- `replay`: `changes` since the client's `after`, and the `cursor` to resume from;
- `delta`: a batch of `changes` and the `cursor` after them;
- `resync`: the client's position is gone (trimmed): a `snapshot` follows;
- `error`: a frame the server could not take, with a `message`; `pong` answers `ping`.
A change is `{"id", "kind", "run"}`, `run` null when the run was removed. A run (a row) is its
record's fields plus `flag`: null, or the detector flag `{"kind", "reason", "since"}` (kinds in
state/flags.py). A flag set or cleared is a change of its flow run like any other, carrying the
run's unchanged record, so that a filter and a cursor treat it as they treat states.
Close codes: 4403 not allowed, 4404 no such environment, 1008 flooding, 1009 frame too large.
"""

import re
from dataclasses import dataclass

SNAPSHOT_ROWS = 200
SNAPSHOT_SCAN = 2000  # newest runs read to find SNAPSHOT_ROWS that match a filter
STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
NOT_ALLOWED, UNKNOWN, FLOODING, TOO_LARGE = 4403, 4404, 1008, 1009


@dataclass(frozen=True)
class RunFilter:
    """What a board shows: states, a flow, a name search; a run page: one flow run."""

    states: frozenset = frozenset()
    flow: str = ""
    search: str = ""
    run: str = ""  # a run page: this flow run and its task runs

    @classmethod
    def from_query(cls, query):
        return cls(
            states=frozenset(s.upper() for s in query.get("state", "").split(",") if s),
            flow=query.get("flow", "")[:200],
            search=query.get("q", "")[:200].lower(),
            run=query.get("run", "")[:64],
        )

    def shows(self, kind, record):
        """Whether a run belongs on this client's page (a removal always does)."""
        if self.run:
            return (record.id if kind == "flow" else record.flow_run_id) == self.run
        if kind != "flow":
            return False
        return (
            (not self.states or record.state_type in self.states)
            and (not self.flow or record.flow == self.flow)
            and (not self.search or self.search in record.name.lower())
        )


def row(record):
    return record.as_dict()


def change(entry):
    return {"id": entry.run_id, "kind": entry.kind, "run": row(entry.run) if entry.run else None}


def snapshot(rows, counts, cursor):
    return {"type": "snapshot", "rows": rows, "counts": counts, "cursor": cursor}


def replay(changes, cursor):
    return {"type": "replay", "changes": changes, "cursor": cursor}


def delta(changes, cursor):
    return {"type": "delta", "changes": changes, "cursor": cursor}


def error(message):
    return {"type": "error", "message": message}
