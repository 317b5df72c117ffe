"""Python and Lua share one run vocabulary: the record layout and the terminal states."""

import re

import msgpack
import pytest

from pipelinehub.state.records import STATE_TYPES, TERMINAL_STATES, RunChange
from pipelinehub.state.scripts import _LUA_DIR, LAYOUT, SCRIPT_NAMES, prelude

FLOW = "11111111-1111-1111-1111-111111111111"
TASK = "22222222-2222-2222-2222-222222222222"


def test_the_layout_is_the_order_in_which_records_are_encoded():
    change = RunChange(
        "task",
        TASK,
        1_764_000_000_000_001,
        "RUNNING",
        "Running",
        name="n",
        flow="f",
        deployment="",
        flow_run_id=FLOW,
        start=1_764_000_000_000_002,
        end=1_764_000_000_000_003,
        run_count=4,
    )
    assert dict(zip(LAYOUT, msgpack.unpackb(change.encode()), strict=True)) == {
        name: (getattr(change, name) if getattr(change, name) is not None else 0) for name in LAYOUT
    }


def test_the_prelude_names_every_terminal_state_and_only_those():
    terminal = re.search(r"local TERMINAL = \{(.*)\}", prelude()).group(1).split(", ")
    assert {entry.split(" = ")[0] for entry in terminal} == TERMINAL_STATES


def _code(name):
    text = (_LUA_DIR / f"{name}.lua").read_text()
    return "\n".join(line.split("--")[0] for line in text.splitlines())


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_scripts_spell_no_state_of_their_own(name):
    assert not [state for state in STATE_TYPES if state in _code(name)]


@pytest.mark.parametrize("name", ["apply", "prune"])
def test_scripts_that_read_records_use_the_prelude_positions(name):
    assert not re.search(r"\b(?!KEYS\b|ARGV\b)\w+\[\s*\d+\s*\]", _code(name))
