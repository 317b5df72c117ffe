"""The one write path and the reads, against the real Redis."""

import uuid

import pytest

from pipelinehub.state.records import RunChange

FLOW = "11111111-1111-1111-1111-111111111111"
TASK = "22222222-2222-2222-2222-222222222222"
T0 = 1_764_000_000_000_000


def flow(state_type="RUNNING", version=T0, run_id=FLOW, **fields):
    return RunChange(
        "flow",
        run_id,
        version,
        state_type,
        state_type.title(),
        name="calm-fox",
        flow="etl",
        **fields,
    )


def task(state_type="RUNNING", version=T0, **fields):
    return RunChange(
        "task",
        TASK,
        version,
        state_type,
        state_type.title(),
        name="load-0",
        flow_run_id=FLOW,
        **fields,
    )


def test_newer_state_wins_older_and_duplicates_change_nothing(state):
    assert state.apply(flow("RUNNING", T0, start=T0))
    assert state.apply(flow("COMPLETED", T0 + 10, end=T0 + 10))
    assert not state.apply(flow("COMPLETED", T0 + 10, end=T0 + 10))  # duplicate
    assert not state.apply(flow("RUNNING", T0, start=T0))  # late, older
    run, tasks = state.flow_run(FLOW)
    assert (run.state_type, run.version, run.start, run.end) == ("COMPLETED", T0 + 10, T0, T0 + 10)
    assert tasks == []


def test_earliest_start_and_highest_run_count_are_kept(state):
    state.apply(flow("RUNNING", T0 + 5, start=T0 + 5, run_count=2))
    state.apply(flow("RUNNING", T0 + 1, start=T0 + 1, run_count=1))
    run, _ = state.flow_run(FLOW)
    assert (run.version, run.start, run.run_count) == (T0 + 5, T0 + 1, 2)


def test_finished_runs_expire_after_the_ttl_and_running_ones_never(state):
    hour = 3600 * 1_000_000  # the fixture's TTL
    old_finished, old_running, recent = (
        f"00000000-0000-0000-0000-00000000000{i}" for i in range(3)
    )
    state.apply(flow("FAILED", T0, run_id=old_finished))
    state.apply(flow("RUNNING", T0, run_id=old_running))
    state.apply(flow("COMPLETED", T0 + hour, run_id=recent))

    assert state.prune_finished(T0 + hour + 1) == 1
    assert {run.id for run in state.board().runs} == {old_running, recent}
    assert state.prune_finished(T0 + hour + 1) == 0


def test_a_retried_run_is_no_longer_finished_and_stays(state):
    state.apply(flow("FAILED", T0))
    state.apply(flow("SCHEDULED", T0 + 1))
    assert state.prune_finished(T0 + 10 * 3600 * 1_000_000) == 0
    assert state.flow_run(FLOW)[0].state_type == "SCHEDULED"


def test_pruning_walks_past_long_running_runs(state, monkeypatch):
    monkeypatch.setattr("pipelinehub.state.vocabulary.PRUNE_CHUNK", 2)  # several chunks of them
    for i in range(5):
        state.apply(flow("RUNNING", T0 + i, run_id=str(uuid.UUID(int=i))))
    for i in range(3):
        state.apply(flow("COMPLETED", T0 + 10 + i, run_id=str(uuid.UUID(int=10 + i))))
    assert state.prune_finished(T0 + 10 * 3600 * 1_000_000) == 3
    assert len(state.board().runs) == 5


def test_task_runs_join_their_flow_run_and_follow_its_lifetime(state, redis_client):
    state.apply(task("COMPLETED", T0 + 2, start=T0 + 1, end=T0 + 2))
    state.apply(flow("RUNNING", T0))
    assert redis_client.ttl(state.keys.tasks_of(FLOW)) == -1
    state.apply(flow("COMPLETED", T0 + 3))
    assert redis_client.ttl(state.keys.tasks_of(FLOW)) > 0
    run, tasks = state.flow_run(FLOW)
    assert [t.id for t in tasks] == [TASK]
    assert tasks[0].flow_run_id == FLOW and tasks[0].state_type == "COMPLETED"


def test_board_is_newest_first_with_counts(state):
    ids = [f"00000000-0000-0000-0000-00000000000{i}" for i in range(5)]
    for i, run_id in enumerate(ids):
        state.apply(flow("COMPLETED" if i % 2 else "RUNNING", T0 + i, run_id=run_id))
    board = state.board(limit=3)
    assert [run.id for run in board.runs] == [ids[4], ids[3], ids[2]]
    assert board.counts == {"RUNNING": 2, "COMPLETED": 1}


def test_every_write_and_only_writes_reach_the_change_stream(state):
    state.apply(flow("RUNNING", T0))
    first = state.changes_since().cursor
    state.apply(flow("RUNNING", T0))  # no-op
    state.apply(task("RUNNING", T0 + 1))
    entries = state.changes_since(first).entries
    assert [(e.kind, e.run.id, e.run.state_type) for e in entries] == [("task", TASK, "RUNNING")]


def test_batch_gives_the_same_result_as_one_by_one(state, redis_client):
    changes = [flow("RUNNING", T0), task("RUNNING", T0 + 1), flow("RUNNING", T0)]
    assert state.apply_batch(changes) == [True, True, False]
    assert state.flow_run(FLOW)[0].state_type == "RUNNING"


def test_script_is_reloaded_after_script_flush(state, redis_client):
    redis_client.script_flush()
    assert state.apply(flow("RUNNING", T0))
    redis_client.script_flush()
    assert state.apply_batch([flow("COMPLETED", T0 + 1)]) == [True]


def test_remove_forgets_a_run_and_says_so_in_the_stream(state, redis_client):
    state.apply(flow("RUNNING", T0))
    state.apply(task("RUNNING", T0))
    state.remove("task", [TASK])
    state.remove("flow", [FLOW])
    assert state.flow_run(FLOW) is None
    assert state.flow_run_ids() == set()
    assert not redis_client.exists(state.keys.tasks_of(FLOW))
    assert [e.run for e in state.changes_since().entries[-2:]] == [None, None]


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "job"},
        {"id": ""},
        {"state_type": "DONE"},
        {"version": 0},
        {"version": "12"},
    ],
)
def test_malformed_changes_are_refused_before_reaching_redis(bad):
    fields = {
        "kind": "flow",
        "id": FLOW,
        "version": T0,
        "state_type": "RUNNING",
        "state_name": "Running",
        **bad,
    }
    with pytest.raises(ValueError):
        RunChange(**fields)


def test_task_change_without_its_flow_run_is_refused():
    with pytest.raises(ValueError, match="flow run"):
        RunChange("task", TASK, T0, "RUNNING", "Running")
