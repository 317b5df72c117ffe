"""The snapshot and its cursor, the change stream after it, and the in-flight index: the
contracts the live board and the in-flight check build on, against the real Redis."""

import asyncio
import os
import time
import uuid

import pytest
import redis.asyncio

from pipelinehub.state.records import RunChange
from pipelinehub.state.store import AsyncEnvironmentState, EnvironmentState

from .conftest import redis_for_tests

T0 = 1_764_000_000_000_000


def flow(state_type="RUNNING", version=T0, run_id=None, **fields):
    return RunChange(
        "flow", run_id or str(uuid.uuid4()), version, state_type, state_type.title(), **fields
    )


def task(flow_run_id, state_type="RUNNING", version=T0, run_id=None):
    return RunChange(
        "task",
        run_id or str(uuid.uuid4()),
        version,
        state_type,
        state_type.title(),
        flow_run_id=flow_run_id,
    )


def test_the_board_cursor_is_the_newest_entry_it_reflects(state):
    assert state.board().cursor == "0-0"
    first, second = flow(), flow()
    state.apply(first)
    board = state.board()
    state.apply(second)
    changes = state.changes_since(board.cursor)
    assert [run.id for run in board.runs] == [first.id]
    assert [entry.run_id for entry in changes.entries] == [second.id]
    assert not changes.resync
    assert state.changes_since(changes.cursor).entries == []


def test_a_cursor_before_trimmed_entries_must_resync(redis_client, prefix):
    state = EnvironmentState(redis_client, prefix, 3600, stream_maxlen=10)
    cursor = state.board().cursor
    state.apply(flow())
    assert not state.changes_since(cursor).resync
    kept = state.board().cursor
    for _ in range(300):  # MAXLEN ~ trims whole nodes: far more than ten
        state.apply(flow())
    assert state.changes_since(cursor).resync
    assert state.changes_since(state.board().cursor).entries == []
    assert state.changes_since(kept).resync


def test_a_lost_stream_means_resync_for_anyone_who_saw_it(state, redis_client):
    state.apply(flow())
    cursor = state.board().cursor
    redis_client.delete(state.keys.changes)
    assert state.changes_since(cursor).resync
    assert not state.changes_since("0-0").resync


def test_removals_and_expiries_are_on_the_stream(state):
    hour = 3600 * 1_000_000
    gone, expired = flow("COMPLETED"), flow("FAILED", T0 + 1)
    state.apply_batch([gone, expired])
    cursor = state.board().cursor
    state.remove("flow", [gone.id])
    assert state.prune_finished(T0 + 2 * hour) == 1
    entries = state.changes_since(cursor).entries
    assert [(entry.run_id, entry.run) for entry in entries] == [(gone.id, None), (expired.id, None)]
    assert state.board().runs == []


def test_the_in_flight_index_holds_unfinished_runs_only(state):
    running, done = flow("RUNNING", T0), flow("RUNNING", T0 + 5)
    child = task(running.id, "PENDING", T0 + 1)
    state.apply_batch([running, done, child])
    assert sorted(state.inflight("flow")) == sorted([running.id, done.id])
    assert state.inflight("flow", changed_before=T0 + 1) == [running.id]
    assert state.inflight("task") == [child.id]

    state.apply(flow("COMPLETED", T0 + 10, run_id=done.id))
    state.apply(task(running.id, "COMPLETED", T0 + 10, run_id=child.id))
    assert state.inflight("flow") == [running.id]
    assert state.inflight("task") == []
    state.remove("flow", [running.id])
    assert state.inflight("flow") == []


def test_counts_are_exact_for_the_whole_environment_whatever_the_order(state):
    day = 86_400 * 1_000_000
    now = time.time_ns() // 1000 - 60_000_000
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    state.apply_batch(
        [
            flow("RUNNING", now, run_id=a),
            flow("COMPLETED", now + 2, run_id=a),
            flow("PENDING", now + 1, run_id=a),  # late: changes nothing
            flow("RUNNING", now, run_id=b),
            flow("FAILED", now - 2 * day, run_id=c),  # finished, but before the last day
        ]
    )
    assert state.counts(now + 10).in_flight == {"RUNNING": 1}
    assert state.counts(now + 10).finished_24h == {"COMPLETED": 1}
    state.apply(flow("SCHEDULED", now + 5, run_id=a))  # retried: in flight again
    state.remove("flow", [b])
    counts = state.counts(now + 10)
    assert (counts.in_flight, counts.finished_24h) == ({"SCHEDULED": 1}, {})


def test_the_asyncio_form_reads_what_the_blocking_form_wrote(prefix):
    blocking = EnvironmentState(redis_for_tests(), prefix, 3600)
    first = flow()
    blocking.apply(first)

    async def scenario():
        state = AsyncEnvironmentState(redis.asyncio.Redis.from_url(_url()), prefix, 3600)
        try:
            second = flow(version=T0 + 1)
            assert await state.apply_batch([second, second]) == [True, False]
            board = await state.board()
            assert [run.id for run in board.runs] == [second.id, first.id]
            assert (await state.changes_since(board.cursor)).entries == []
            assert await state.inflight("flow") == [first.id, second.id]
            return board.cursor
        finally:
            await state.aclose()

    cursor = asyncio.run(scenario())
    assert cursor == blocking.board().cursor


def _url():
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def state(redis_client, prefix):
    return EnvironmentState(redis_client, prefix, finished_ttl_seconds=3600, stream_maxlen=1000)
