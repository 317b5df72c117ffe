"""Prefect events to changes: the shapes a 3.8 server sends (see docs/architecture.md)."""

import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prefect.client.schemas.objects import FlowRun, State, StateType, TaskRun
from prefect.events.schemas.events import Event, ReceivedEvent, Resource

from pipelinehub.state.records import (
    EARLIEST_MICROS,
    FUTURE_TOLERANCE_MICROS,
    MAX_RUN_COUNT,
    MAX_TEXT_LENGTH,
    RunChange,
    RunRecord,
    latest_micros,
    to_micros,
)
from pipelinehub.sync.mapping import (
    MalformedEvent,
    MalformedRun,
    change_from_event,
    change_from_flow_run,
    change_from_task_run,
    changes_from_events,
    heartbeats_from_events,
    is_state_event,
)

from .strategies import run_events, well_formed_events

FLOW_RUN = "ed60c0b6-e28a-45d3-8756-e39dda911e16"
TASK_RUN = "01a21714-4263-7814-9011-233b023b00f5"
STAMP = "2026-11-26T08:58:53.614453+00:00"
MICROS = 1_795_683_533_614_453
OTHER_RUN = "5b0f8a52-0c43-4d7e-a0d2-46a1c8f3f6a9"
YEAR_9999 = "9999-12-31T23:59:59.999999+00:00"
MINUTE = 60_000_000


def event(name, resource_id, labels=None, related=(), payload=None):
    resource = {
        "prefect.resource.id": resource_id,
        "prefect.resource.name": "dark-stork",
        "prefect.state-type": "COMPLETED",
        "prefect.state-name": "Completed",
        "prefect.state-timestamp": STAMP,
        "prefect.run-count": "1",
        **(labels or {}),
    }
    return Event(
        occurred=datetime.now(UTC),
        event=name,
        resource={k: v for k, v in resource.items() if v is not None},
        related=list(related),
        payload=payload or {},
    )


FLOW = {
    "prefect.resource.id": "prefect.flow.3a6d063a-1469-4dc8-9f70-eaad80c0fcc5",
    "prefect.resource.role": "flow",
    "prefect.resource.name": "etl",
}
DEPLOYMENT = {
    "prefect.resource.id": "prefect.deployment.9d1c63f4-7a5e-4d43-b6b4-1b8d50b1f3a2",
    "prefect.resource.role": "deployment",
    "prefect.resource.name": "nightly",
}
PARENT = {
    "prefect.resource.id": f"prefect.flow-run.{FLOW_RUN}",
    "prefect.resource.role": "flow-run",
    "prefect.resource.name": "dark-stork",
}


def test_flow_run_completed():
    change = change_from_event(
        event(
            "prefect.flow-run.Completed", f"prefect.flow-run.{FLOW_RUN}", related=[FLOW, DEPLOYMENT]
        )
    )
    assert (
        change.kind,
        change.id,
        change.version,
        change.state_type,
        change.flow,
        change.deployment,
        change.end,
        change.start,
        change.run_count,
    ) == (
        "flow",
        FLOW_RUN,
        MICROS,
        "COMPLETED",
        "etl",
        "9d1c63f4-7a5e-4d43-b6b4-1b8d50b1f3a2",
        MICROS,
        None,
        1,
    )


def test_flow_run_running_sets_start():
    change = change_from_event(
        event(
            "prefect.flow-run.Running",
            f"prefect.flow-run.{FLOW_RUN}",
            {"prefect.state-type": "RUNNING", "prefect.state-name": "Running"},
            [FLOW],
        )
    )
    assert (change.start, change.end, change.deployment) == (MICROS, None, "")


def test_task_run_takes_its_times_from_the_payload():
    change = change_from_event(
        event(
            "prefect.task-run.Completed",
            f"prefect.task-run.{TASK_RUN}",
            related=[PARENT, FLOW],
            payload={
                "task_run": {
                    "start_time": "2026-11-26T08:58:53.412509Z",
                    "end_time": "2026-11-26T08:58:53.614453Z",
                }
            },
        )
    )
    assert (change.kind, change.flow_run_id, change.start, change.end) == (
        "task",
        FLOW_RUN,
        MICROS - 201_944,
        MICROS,
    )


def test_heartbeats_are_not_states():
    heartbeat = event(
        "prefect.flow-run.heartbeat",
        f"prefect.flow-run.{FLOW_RUN}",
        {
            "prefect.state-type": None,
            "prefect.state-name": None,
            "prefect.state-timestamp": None,
            "prefect.run-count": None,
        },
    )
    assert not is_state_event(heartbeat)


def heartbeat(resource_id=None, occurred=None):
    resource_id = resource_id or f"prefect.flow-run.{FLOW_RUN.upper()}"
    beat = event("prefect.flow-run.heartbeat", resource_id, {"prefect.state-type": None})
    return beat.model_copy(update={"occurred": occurred or datetime.fromisoformat(STAMP)})


def test_heartbeats_are_read_as_a_runs_last_sign_of_life():
    beats = [
        heartbeat(),
        heartbeat("prefect.flow-run.not-a-uuid"),
        heartbeat(occurred=datetime(9999, 1, 1, tzinfo=UTC)),  # from the future: ignored
        flow_completed(),
    ]
    assert heartbeats_from_events(beats) == [(FLOW_RUN, MICROS)]


@pytest.mark.parametrize(
    "name,resource_id,labels,related",
    [
        ("prefect.deployment.created", "prefect.deployment.x", {}, []),
        ("prefect.flow-run.Completed", "prefect.task-run.x", {}, []),
        ("prefect.flow-run.Completed", "prefect.flow-run.", {}, []),
        (
            "prefect.flow-run.Completed",
            f"prefect.flow-run.{FLOW_RUN}",
            {"prefect.state-timestamp": "yesterday"},
            [],
        ),
        (
            "prefect.flow-run.Completed",
            f"prefect.flow-run.{FLOW_RUN}",
            {"prefect.state-type": "EXPLODED"},
            [],
        ),
        (
            "prefect.flow-run.Completed",
            f"prefect.flow-run.{FLOW_RUN}",
            {"prefect.run-count": "many"},
            [],
        ),
        ("prefect.task-run.Completed", f"prefect.task-run.{TASK_RUN}", {}, []),
    ],
)
def test_malformed_events_are_refused_with_a_reason(name, resource_id, labels, related):
    with pytest.raises(MalformedEvent) as excinfo:
        change_from_event(event(name, resource_id, labels, related))
    assert str(excinfo.value)


# -- one bad event costs only itself


def flow_completed(run_id=FLOW_RUN, **labels):
    return event("prefect.flow-run.Completed", f"prefect.flow-run.{run_id}", labels, [FLOW])


def task_completed(payload):
    return event(
        "prefect.task-run.Completed", f"prefect.task-run.{TASK_RUN}", {}, [PARENT], payload
    )


@pytest.mark.parametrize(
    "poison,reason",
    [
        pytest.param(
            flow_completed(**{"prefect.run-count": "9" * 30}), "run_count", id="30 digits"
        ),
        pytest.param(task_completed({"task_run": "oops"}), "task_run is a str", id="task_run str"),
        pytest.param(
            flow_completed(**{"prefect.state-timestamp": YEAR_9999}), "future", id="year 9999"
        ),
    ],
)
def test_the_poison_found_is_skipped_and_the_rest_of_its_batch_mapped(poison, reason):
    heartbeat = event(
        "prefect.flow-run.heartbeat", f"prefect.flow-run.{FLOW_RUN}", {"prefect.state-type": None}
    )
    changes, ignored, malformed = changes_from_events(
        [poison, flow_completed(OTHER_RUN), heartbeat]
    )
    assert [change.id for change in changes] == [OTHER_RUN]
    assert ignored == 1
    assert len(malformed) == 1
    assert str(poison.id) in malformed[0] and reason in malformed[0]


def test_a_reason_is_short_and_quotes_no_payload():
    huge = "2026-11-26T" + "9" * 100_000
    with pytest.raises(MalformedEvent) as excinfo:
        change_from_event(task_completed({"task_run": {"start_time": huge}}))
    assert len(str(excinfo.value)) < 300
    assert "9" * 100 not in str(excinfo.value)


def test_an_event_that_skipped_validation_still_raises_only_malformed_event():
    """Labels are strings only because pydantic checked them: a constructed event proves the
    mapping does not rely on it."""
    unchecked = ReceivedEvent.model_construct(
        id=uuid.uuid4(),
        event="prefect.flow-run.Completed",
        resource=Resource.model_construct(
            root={"prefect.resource.id": 42, "prefect.state-timestamp": STAMP}
        ),
        related=[],
        payload={},
    )
    with pytest.raises(MalformedEvent, match="AttributeError"):
        change_from_event(unchecked)


def assert_fits_the_record(change, latest):
    """Within the bounds, and Redis gets back exactly what was sent."""
    record = RunRecord(change.id, change.encode())
    assert {name: getattr(record, name) for name in RunRecord.FIELDS} == {
        name: getattr(change, name) for name in RunRecord.FIELDS
    }
    assert change.id == str(uuid.UUID(change.id))
    assert EARLIEST_MICROS <= change.version <= latest
    for moment in (change.start, change.end):
        assert moment is None or EARLIEST_MICROS <= moment <= latest
    assert 0 <= change.run_count <= MAX_RUN_COUNT
    assert max(change.version, change.start or 0, change.end or 0) < 2**53


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(run_events, max_size=20))
def test_no_batch_raises_and_every_change_fits_the_record(events):
    changes, ignored, malformed = changes_from_events(events)
    assert len(changes) + ignored + len(malformed) == len(events)
    assert all(len(reason) < 500 for reason in malformed)
    latest = latest_micros()
    for change in changes:
        assert_fits_the_record(change, latest)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(well_formed_events)
def test_every_well_formed_event_is_mapped(received):
    change = change_from_event(received)
    labels = received.resource
    assert change.id == labels.id.rsplit(".", 1)[1].lower()
    assert change.version == to_micros(datetime.fromisoformat(labels["prefect.state-timestamp"]))
    assert change.run_count == int(labels["prefect.run-count"])
    assert_fits_the_record(change, latest_micros())


# -- the bounds of a change


def change(**fields):
    return RunChange(
        **{
            "kind": "flow",
            "id": FLOW_RUN,
            "version": MICROS,
            "state_type": "RUNNING",
            "state_name": "Running",
            **fields,
        }
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"id": "r1"},
        {"id": FLOW_RUN.replace("-", "")},
        {"id": "{" + FLOW_RUN + "}"},
        {"id": uuid.UUID(FLOW_RUN)},
        {"deployment": "nightly"},
        {"kind": "task", "flow_run_id": "f1"},
        {"state_type": ["RUNNING"]},
        {"run_count": -1},
        {"run_count": MAX_RUN_COUNT + 1},
        {"run_count": 10**30},
        {"run_count": True},
        {"run_count": "1"},
        {"version": True},
        {"version": EARLIEST_MICROS - 1},
        {"version": to_micros(datetime.fromisoformat(YEAR_9999))},
        {"start": 0},
        {"end": "1"},
        {"end": -(10**5000)},
        {"name": None},
        {"flow": 3},
        {"state_name": b"Running"},
    ],
)
def test_a_change_out_of_bounds_is_refused_with_a_short_message(fields):
    with pytest.raises(ValueError) as excinfo:
        change(**fields)
    assert 0 < len(str(excinfo.value)) < 200


def test_a_state_from_the_future_is_refused_beyond_the_tolerance():
    now = to_micros(datetime.now(UTC))
    assert change(version=now + FUTURE_TOLERANCE_MICROS - MINUTE).version
    for fields in (
        {"version": now + FUTURE_TOLERANCE_MICROS + MINUTE},
        {"start": now + FUTURE_TOLERANCE_MICROS + MINUTE},
    ):
        with pytest.raises(ValueError, match="future"):
            change(**{"version": now, **fields})


def test_bounds_are_inclusive_and_ids_made_canonical():
    deployment = DEPLOYMENT["prefect.resource.id"].rsplit(".", 1)[1]
    made = change(
        id=FLOW_RUN.upper(),
        deployment=deployment.upper(),
        version=EARLIEST_MICROS,
        start=EARLIEST_MICROS,
        run_count=MAX_RUN_COUNT,
    )
    assert (made.id, made.deployment, made.run_count) == (FLOW_RUN, deployment, MAX_RUN_COUNT)


def test_display_strings_are_cut_and_made_encodable():
    made = change(name="n" * 1000, flow="\ud800etl", state_name="R" * (MAX_TEXT_LENGTH + 1))
    assert (len(made.name), made.flow, len(made.state_name)) == (
        MAX_TEXT_LENGTH,
        "?etl",
        MAX_TEXT_LENGTH,
    )
    assert RunRecord(made.id, made.encode()).flow == "?etl"


# -- runs read from the API


def completed(moment=STAMP):
    return State(type=StateType.COMPLETED, timestamp=datetime.fromisoformat(moment))


def flow_run(**fields):
    return FlowRun(
        **{
            "id": FLOW_RUN,
            "flow_id": uuid.uuid4(),
            "name": "dark-stork",
            "state": completed(),
            **fields,
        }
    )


def task_run(**fields):
    return TaskRun(
        **{
            "id": TASK_RUN,
            "flow_run_id": FLOW_RUN,
            "task_key": "load",
            "dynamic_key": "0",
            "name": "load-0",
            "state": completed(),
            **fields,
        }
    )


def test_api_runs_within_bounds_map():
    assert change_from_flow_run(flow_run(), "etl").version == MICROS
    assert change_from_task_run(task_run()).flow_run_id == FLOW_RUN


def test_a_scheduled_flow_run_has_its_expected_start_and_others_none():
    ahead = datetime(2030, 1, 1, tzinfo=UTC)
    late = State(
        type=StateType.SCHEDULED,
        name="Late",
        timestamp=datetime.fromisoformat(STAMP),
        state_details={"scheduled_time": ahead},
    )
    run = flow_run(state=late, expected_start_time=datetime.fromisoformat(STAMP))
    assert change_from_flow_run(run).expected_start == to_micros(ahead)  # the state's own
    assert change_from_flow_run(flow_run(expected_start_time=ahead)).expected_start is None


@pytest.mark.parametrize(
    "fields",
    [{"run_count": 10**30}, {"state": completed(YEAR_9999)}, {"state": None}],
    ids=["30 digits", "year 9999", "no state"],
)
def test_api_runs_out_of_bounds_raise_malformed_run(fields):
    with pytest.raises(MalformedRun, match=FLOW_RUN):
        change_from_flow_run(flow_run(**fields))
    with pytest.raises(MalformedRun, match=TASK_RUN):
        change_from_task_run(task_run(**fields))
