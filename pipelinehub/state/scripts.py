"""The Lua scripts that read and write run state, with the run vocabulary given to them.

Every script starts with a prelude generated here from `records.py` (the record layout and the
terminal states), so Python and Lua share one definition: a script names fields and states only
through the prelude's constants. `test_state_scripts.py` fails if a script spells a state or a
field position of its own.
"""

import hashlib
from functools import cache
from pathlib import Path

from .records import BASELINE_STATE, FAILURE_STATES, TERMINAL_STATES

# The order of the values in an encoded record (`RunChange.encode`): Lua indexes from 1.
LAYOUT = (
    "state_type",
    "version",
    "state_name",
    "name",
    "flow",
    "deployment",
    "flow_run_id",
    "start",
    "end",
    "run_count",
    "expected_start",
)
SCRIPT_NAMES = ("apply", "prune", "board", "remove", "heartbeat", "flags")
BASELINE_RUNS = 50  # the newest completed durations a baseline is taken from
FAILURES_KEPT = 1000  # newly failed flow runs held for the detector, newest first
# The order in which scripts take the per-state "finished" keys (Keyspace.finished).
FINISHED_ORDER = tuple(sorted(TERMINAL_STATES))
_LUA_DIR = Path(__file__).with_name("lua")


def prelude():
    """Lua constants: `F.<field>` positions in a record, the `TERMINAL` states, each mapped to
    its place among the "finished" keys a script is given (FINISHED_ORDER), and `counted`, the
    bookkeeping of the per-state counts that every write of a flow run does; for baselines and
    failures, `BASELINED` (the state whose runs give a duration), `FAILING` (the states that
    count as failed), `BASELINE_RUNS` and `FAILURES_KEPT`."""
    fields = ", ".join(f"['{name}'] = {index}" for index, name in enumerate(LAYOUT, start=1))
    terminal = ", ".join(f"{state} = {i}" for i, state in enumerate(FINISHED_ORDER))
    failing = ", ".join(f"{state} = true" for state in sorted(FAILURE_STATES))
    return (
        f"local F = {{{fields}}}\nlocal TERMINAL = {{{terminal}}}\n"
        f"local BASELINED = '{BASELINE_STATE}'\nlocal FAILING = {{{failing}}}\n"
        f"local BASELINE_RUNS = {BASELINE_RUNS}\n"
        f"local FAILURES_KEPT = {FAILURES_KEPT}\n" + _COUNTED
    )


# A flow run goes from state `old` (nil: new) to `new` (nil: removed): the in-flight counts hash
# and the finished sets follow. `finished` is the index of the first finished key in KEYS; a run
# that finished before `since` (a day ago) is no longer in the finished sets' window.
_COUNTED = """
local function counted(counts, finished, run_id, old, new, version, since)
  local function finish(state)
    if version < since then return end
    redis.call('ZADD', KEYS[finished + TERMINAL[state]], version, run_id)
  end
  if old == new then
    if TERMINAL[new] then finish(new) end
    return
  end
  if old then
    if TERMINAL[old] then redis.call('ZREM', KEYS[finished + TERMINAL[old]], run_id)
    else redis.call('HINCRBY', counts, old, -1) end
  end
  if new then
    if TERMINAL[new] then finish(new) else redis.call('HINCRBY', counts, new, 1) end
  end
end
"""


@cache
def source(name):
    """The full text of script `name`: the prelude, then lua/<name>.lua."""
    return prelude() + (_LUA_DIR / f"{name}.lua").read_text()


@cache
def sha(name):
    """The SHA1 by which Redis knows script `name` (what EVALSHA takes)."""
    return hashlib.sha1(source(name).encode()).hexdigest()  # noqa: S324 - Redis's own choice
