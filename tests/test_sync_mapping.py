"""Prefect events to changes: the shapes a 3.8 server sends (see docs/architecture.md)."""

from datetime import UTC, datetime

import pytest
from prefect.events.schemas.events import Event

from pipelinehub.sync.mapping import MalformedEvent, change_from_event, is_state_event

FLOW_RUN = "ed60c0b6-e28a-45d3-8756-e39dda911e16"
TASK_RUN = "01a21714-4263-7814-9011-233b023b00f5"
STAMP = "2026-11-26T08:58:53.614453+00:00"
MICROS = 1_795_683_533_614_453


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
