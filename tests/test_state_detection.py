"""What the detectors keep in Redis through `state`: baselines, heartbeats, flags, the newly
failed runs and expected starts, against the real Redis."""

import time
import uuid

from pipelinehub.state.flags import LATE, RUNAWAY, STUCK, RunFlag
from pipelinehub.state.records import RunChange

FLOW = "11111111-1111-1111-1111-111111111111"
DEPLOYMENT = "33333333-3333-3333-3333-333333333333"
T0 = 1_764_000_000_000_000
SECOND = 1_000_000


def run_id(n):
    return str(uuid.UUID(int=n))


def flow(state_type, version, run=FLOW, **fields):
    fields = {"name": "calm-fox", "flow": "etl", **fields}
    return RunChange("flow", run, version, state_type, state_type.title(), **fields)


def completed(n, seconds, start=T0, **fields):
    """Run n, completed after `seconds`."""
    end = start + seconds * SECOND
    return flow("COMPLETED", end, run_id(n), start=start, end=end, **fields)


def baseline(state, scope="flow", name="etl"):
    found = state.baselines([(scope, name)]).get((scope, name))
    return (found.p95, found.runs) if found else None


def test_completed_runs_give_their_flow_and_deployment_a_p95_baseline(state):
    for n in range(20):
        state.apply(completed(n, 10 + n, deployment=DEPLOYMENT))
    assert baseline(state) == (28 * SECOND, 20)  # nearest rank: the 19th of 20
    assert baseline(state, "deployment", DEPLOYMENT) == (28 * SECOND, 20)
    assert state.client.ttl(state.keys.durations("flow", "etl")) > 0


def test_a_duration_counts_once_however_often_its_run_is_replayed(state):
    change = completed(1, 60)
    for _ in range(3):
        state.apply(change)
    state.apply(flow("RUNNING", T0, run_id(1), start=T0))  # older: changes nothing
    assert baseline(state) == (60 * SECOND, 1)
    assert state.client.zcard(state.keys.durations("flow", "etl")) == 1


def test_a_start_that_arrives_after_the_completion_moves_the_duration(state):
    end = T0 + 100 * SECOND
    state.apply(flow("COMPLETED", end, run_id(1), end=end))  # start unknown: no duration
    assert baseline(state) is None
    state.apply(flow("RUNNING", T0 + 40 * SECOND, run_id(1), start=T0 + 40 * SECOND))
    assert baseline(state) == (60 * SECOND, 1)
    state.apply(flow("RUNNING", T0, run_id(1), start=T0))  # an earlier start, later still
    assert baseline(state) == (100 * SECOND, 1)
    assert state.client.zcard(state.keys.durations("flow", "etl")) == 1


def test_a_retried_run_leaves_the_baseline_until_it_completes_again(state):
    state.apply(completed(1, 60))
    state.apply(completed(2, 30))
    state.apply(flow("SCHEDULED", T0 + 200 * SECOND, run_id(1)))
    assert baseline(state) == (30 * SECOND, 1)


def test_a_baseline_keeps_the_fifty_that_ended_last_whatever_the_arrival_order(state):
    runs = [completed(n, 1000 if n < 10 else 10, start=T0 + n * 2000 * SECOND) for n in range(60)]
    for change in reversed(runs):  # the newest first
        state.apply(change)
    assert baseline(state) == (10 * SECOND, 50)


def test_heartbeats_are_kept_for_unfinished_runs_only_and_go_when_they_finish(state):
    state.apply(flow("RUNNING", T0, start=T0))
    unknown = run_id(99)
    assert state.record_heartbeats([(FLOW, T0 + 5), (unknown, T0 + 5), (FLOW, T0 + 3)]) == 1
    assert state.unfinished().heartbeats == {FLOW: T0 + 5}
    cursor = state.cursor()
    state.record_heartbeats([(FLOW, T0 + 9)])
    assert state.cursor() == cursor  # not a state change: nothing on the stream
    state.apply(flow("COMPLETED", T0 + 10, end=T0 + 10))
    assert state.client.hlen(state.keys.heartbeats) == 0
    assert state.record_heartbeats([(FLOW, T0 + 20)]) == 0  # late: its run has finished


def test_flags_are_set_and_cleared_as_a_whole_set_each_on_the_stream(state):
    running, scheduled = run_id(1), run_id(2)
    state.apply(flow("RUNNING", T0, running, start=T0))
    state.apply(flow("SCHEDULED", T0, scheduled, expected_start=T0))
    runaway = RunFlag(running, RUNAWAY, "running 41 min, usually 6 min", T0 + 1)
    late = RunFlag(scheduled, LATE, "not started 7 min after its scheduled time", T0 + 2)
    cursor = state.cursor()
    assert state.set_flags([(runaway, "RUNNING"), (late, "SCHEDULED")]) == 2
    assert state.set_flags([(runaway, "RUNNING"), (late, "SCHEDULED")]) == 0  # unchanged
    assert state.flags()[running] == {"kind": RUNAWAY, "reason": runaway.reason, "since": T0 + 1}
    board = {run.id: run.flag for run in state.board().runs}
    assert board[scheduled]["kind"] == LATE
    assert state.flow_run(running)[0].flag["reason"] == runaway.reason

    assert state.set_flags([(runaway, "RUNNING")]) == 1  # late is no longer
    entries = state.changes_since(cursor).entries
    assert len(entries) == 3
    shown = {(entry.run.id, entry.run.flag["kind"]) for entry in entries[:2]}
    assert shown == {(running, RUNAWAY), (scheduled, LATE)}
    assert (entries[-1].run.id, entries[-1].run.flag) == (scheduled, None)
    assert all(entry.run.version == T0 for entry in entries)  # the records are unchanged


def test_a_flag_goes_when_its_run_changes_state_and_is_not_set_on_a_moved_run(state):
    state.apply(flow("RUNNING", T0, start=T0))
    stuck = RunFlag(FLOW, STUCK, "no heartbeat for 4 min", T0 + 1)
    state.set_flags([(stuck, "RUNNING")])
    state.apply(flow("COMPLETED", T0 + 10, end=T0 + 10))
    assert state.flags() == {}
    (last,) = state.changes_since(state.changes_since().entries[-2].stream_id).entries
    assert last.run.state_type == "COMPLETED" and last.run.flag is None
    assert state.set_flags([(stuck, "RUNNING")]) == 0  # judged on a state it has left
    assert state.flags() == {}


def test_flags_and_heartbeats_go_with_removed_and_pruned_runs(state):
    kept, removed, pruned = run_id(1), run_id(2), run_id(3)
    for run in (kept, removed, pruned):
        state.apply(flow("RUNNING", T0, run, start=T0))
    state.record_heartbeats([(run, T0 + 1) for run in (kept, removed, pruned)])
    state.set_flags([(RunFlag(run, STUCK, "x", T0), "RUNNING") for run in (kept, removed, pruned)])
    state.remove("flow", [removed])
    # A run finished long ago that still has a flag (written before it finished, by hand here).
    state.apply(flow("COMPLETED", T0 + 1, pruned, end=T0 + 1))
    state.client.hset(state.keys.flags, pruned, "{}")
    state.prune_finished(T0 + 10 * 3600 * SECOND)
    assert set(state.flags()) == {kept}
    assert set(state.unfinished().heartbeats) == {kept}


def test_newly_failed_flow_runs_are_handed_on_once(state):
    now = time.time_ns() // 1000
    state.apply(flow("RUNNING", now - 5 * SECOND, run_id(1)))
    state.apply(flow("FAILED", now - 2 * SECOND, run_id(1)))
    state.apply(flow("FAILED", now - 2 * SECOND, run_id(1)))  # a replay
    state.apply(flow("CRASHED", now - SECOND, run_id(2)))
    state.apply(flow("FAILED", T0, run_id(3)))  # failed long ago: not news
    failed, upto = state.newly_failed()
    assert sorted(run.id for run in failed) == [run_id(1), run_id(2)]
    assert [run.id for run in state.newly_failed()[0]] == [run.id for run in failed]  # not yet
    state.apply(flow("FAILED", now, run_id(4)))  # fails after the pass read
    state.forget_failed(upto)
    assert [run.id for run in state.newly_failed()[0]] == [run_id(4)]


def test_a_scheduled_run_keeps_its_expected_start_from_whichever_source_knows_it(state):
    event = flow("SCHEDULED", T0)  # events carry no scheduled time
    api = flow("SCHEDULED", T0, expected_start=T0 + 60 * SECOND)
    state.apply(api)
    state.apply(event)
    assert state.flow_run(FLOW)[0].expected_start == T0 + 60 * SECOND
    state.apply(flow("PENDING", T0 + 1))
    assert state.flow_run(FLOW)[0].expected_start is None


def test_the_detection_read_has_runs_heartbeats_flags_and_baselines(state):
    state.apply(completed(1, 30, deployment=DEPLOYMENT))
    state.apply(flow("RUNNING", T0, run_id(2), start=T0, deployment=DEPLOYMENT))
    state.apply(flow("RUNNING", T0, run_id(3), start=T0, flow="other"))
    state.record_heartbeats([(run_id(2), T0 + 5)])
    unfinished = state.unfinished()
    assert sorted(run.id for run in unfinished.runs) == [run_id(2), run_id(3)]
    assert unfinished.heartbeats == {run_id(2): T0 + 5}
    by_id = {run.id: run for run in unfinished.runs}
    assert unfinished.baseline_of(by_id[run_id(2)]).p95 == 30 * SECOND
    assert unfinished.baseline_of(by_id[run_id(3)]) is None
