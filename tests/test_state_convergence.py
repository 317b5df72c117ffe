"""Any interleaving, duplication and reordering of a set of changes converges to the same Redis
content as applying them in state order (the contract of `apply`)."""

import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelinehub.state.records import STATE_TYPES, RunChange
from pipelinehub.state.store import EnvironmentState

from .conftest import delete_prefix, redis_for_tests

FLOW_IDS = [str(uuid.UUID(int=i)) for i in range(3)]
TASK_IDS = [str(uuid.UUID(int=10 + i)) for i in range(4)]
T0 = 1_764_000_000_000_000

changes = st.builds(
    lambda kind, flow_index, task_index, offset, state_type, start, end, run_count, name, expect: (
        RunChange(
            kind,
            FLOW_IDS[flow_index] if kind == "flow" else TASK_IDS[task_index],
            T0 + offset,
            state_type,
            state_type.title(),
            name=name,
            flow="etl" if kind == "flow" else "",
            flow_run_id="" if kind == "flow" else FLOW_IDS[task_index % len(FLOW_IDS)],
            start=None if start is None else T0 + start,
            end=None if end is None else T0 + end,
            run_count=run_count,
            expected_start=None if expect is None else T0 + expect,
        )
    ),
    kind=st.sampled_from(["flow", "task"]),
    flow_index=st.integers(0, len(FLOW_IDS) - 1),
    task_index=st.integers(0, len(TASK_IDS) - 1),
    offset=st.integers(1, 6),  # few distinct versions: ties must converge too
    state_type=st.sampled_from(sorted(STATE_TYPES)),
    start=st.none() | st.integers(0, 5),
    end=st.none() | st.integers(0, 5),
    run_count=st.integers(0, 3),
    name=st.sampled_from(["", "calm-fox", "bold-owl"]),
    expect=st.none() | st.integers(0, 3),
)


def content(client, state):
    """Everything apply wrote except the change log and the newly failed set (a log of
    transitions, not state), with TTLs reduced to present/absent; the flow's baseline too."""
    ks = state.keys
    result = {
        "runs": client.zrange(ks.runs, 0, -1, withscores=True),
        "durations": client.zrange(ks.durations("flow", "etl"), 0, -1, withscores=True),
    }
    for run_id in FLOW_IDS:
        result[run_id] = (
            client.hget(ks.flow_runs, run_id),
            sorted(client.smembers(ks.tasks_of(run_id))),
            client.ttl(ks.tasks_of(run_id)) > 0,
        )
    for run_id in TASK_IDS:
        result[run_id] = (client.get(ks.task(run_id)), client.ttl(ks.task(run_id)) > 0)
    return result


def fresh_state(client):
    return EnvironmentState(client, f"ph:{{prop-{uuid.uuid4().hex[:10]}}}:", 3600, 100)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.lists(changes, min_size=1, max_size=12),
    order=st.randoms(use_true_random=False),
    duplicates=st.lists(st.integers(0, 11), max_size=6),
)
def test_any_order_and_duplication_converges(batch, order, duplicates):
    # Task ids are bound to one flow run each, as in Prefect.
    client = redis_for_tests()
    in_order, shuffled = fresh_state(client), fresh_state(client)
    try:
        for change in sorted(batch, key=lambda c: c.version):
            in_order.apply(change)
        arrivals = batch + [batch[i % len(batch)] for i in duplicates]
        order.shuffle(arrivals)
        shuffled.apply_batch(arrivals[: len(arrivals) // 2])
        for change in arrivals[len(arrivals) // 2 :]:
            shuffled.apply(change)
        assert content(client, shuffled) == content(client, in_order)
    finally:
        delete_prefix(client, in_order.keys.prefix)
        delete_prefix(client, shuffled.keys.prefix)
        client.close()
