"""Hypothesis strategies for Prefect run events as ingest receives them: `ReceivedEvent`, the
type both the live subscriber and `read_events` yield.

`run_events` draws one event: a well-formed flow-run or task-run state event, a heartbeat, or
an event poisoned wherever a broken or hostile client could poison it (label strings of any
content, such as a run count of thirty digits or a state dated in year 9999; a payload of any
JSON, such as a `task_run` that is a string or nested twenty levels deep; related resources
missing or wrong). Feed batches to anything that takes events:

    from tests.strategies import run_events

    @given(st.lists(run_events, max_size=20))
    def test_...(events): ...

`well_formed_events` draws only the first kind: every one of them must map to a change.

Run ids come mostly from a small pool (`RUN_IDS`), so that events of one batch often concern
the same runs; some are in upper case (a change holds the lowercase form). Well-formed state
times lie between 2000-01-02 and a day before this module was imported, event times in the day
before it, so a test session sees none from the future.
"""

import uuid
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import strategies as st
from prefect.events.schemas.events import ReceivedEvent

from pipelinehub.state.records import MAX_RUN_COUNT, STATE_TYPES, TERMINAL_STATES

IMPORTED = datetime.now(UTC)
RUN_IDS = [str(uuid.UUID(int=n)) for n in range(1, 5)]
FLOW_PREFIX, TASK_PREFIX = "prefect.flow-run.", "prefect.task-run."

# -- pieces of a well-formed event

run_ids = st.sampled_from(RUN_IDS) | st.uuids().map(str) | st.uuids().map(lambda u: str(u).upper())
zones = st.sampled_from(
    [None, UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)
moments = st.datetimes(
    min_value=datetime(2000, 1, 2),
    max_value=(IMPORTED - timedelta(days=1)).replace(tzinfo=None),
    timezones=zones,
)
stamps = moments.map(datetime.isoformat)
state_types = st.sampled_from(sorted(STATE_TYPES))
run_counts = st.integers(0, MAX_RUN_COUNT).map(str)
long_texts = st.builds(lambda char, n: char * n, st.characters(), st.integers(201, 5000))
surrogate_texts = st.text(
    st.characters(categories=["Cs"]) | st.characters(), min_size=1, max_size=5
)
texts = st.text(max_size=30) | long_texts | surrogate_texts  # all valid: names are only shown


def _resource(kind, role):
    return st.fixed_dictionaries(
        {
            "prefect.resource.id": run_ids.map(f"prefect.{kind}.".__add__),
            "prefect.resource.role": st.just(role),
            "prefect.resource.name": texts,
        }
    )


flows, deployments = _resource("flow", "flow"), _resource("deployment", "deployment")
parent_flow_runs = _resource("flow-run", "flow-run")

# -- poison: what a label, a related resource or the payload may hold instead

bad_stamps = (
    st.sampled_from(
        [
            "9999-12-31T23:59:59.999999+00:00",
            "0001-01-01T00:00:00+00:00",
            "1999-12-31T23:59:59+00:00",
            (IMPORTED + timedelta(days=1)).isoformat(),
            "yesterday",
            "",
            "1795683533614453",
        ]
    )
    | st.datetimes(
        min_value=(IMPORTED + timedelta(days=1)).replace(tzinfo=None), timezones=zones
    ).map(datetime.isoformat)
    | st.datetimes(max_value=datetime(1999, 12, 31), timezones=zones).map(datetime.isoformat)
    | st.text(max_size=40)
    | long_texts
)
bad_run_counts = (
    st.integers(MAX_RUN_COUNT + 1, 10**40).map(str)
    | st.text("0123456789", min_size=20, max_size=60)
    | st.integers(max_value=-1).map(str)
    | st.sampled_from(["9" * 5000, "many", "1.5", ""])
    | st.text(max_size=20)
)
bad_state_types = st.sampled_from(["", "completed", "EXPLODED"]) | st.text(max_size=20)
bad_run_ids = st.text(max_size=40) | st.sampled_from(["", "x", str(uuid.UUID(int=7)).join("{}")])
other_related = st.fixed_dictionaries(
    {
        "prefect.resource.id": st.text(min_size=1, max_size=40),
        "prefect.resource.role": st.text(min_size=1, max_size=20),
    },
    optional={"prefect.resource.name": texts},
)
broken_related = st.fixed_dictionaries(
    {
        "prefect.resource.id": st.sampled_from(
            ["prefect.flow-run.", "prefect.deployment."]
        ).flatmap(lambda prefix: bad_run_ids.map(prefix.__add__)),
        "prefect.resource.role": st.sampled_from(["flow-run", "deployment", "flow"]),
    }
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**64, max_value=10**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=12,
)


def _nest(value, keys):
    """`value` inside one list or object per key ("" for a list), outermost last."""
    for key in keys:
        value = {key: value} if key else [value]
    return value


deep_values = st.builds(
    _nest,
    json_values,
    st.lists(st.sampled_from(["", "task_run", "start_time", "x"]), min_size=10, max_size=20),
)
any_times = stamps | bad_stamps | json_values | deep_values
task_run_payloads = (
    st.fixed_dictionaries(
        {}, optional={"start_time": any_times, "end_time": any_times, "name": json_values}
    )
    | json_values
    | deep_values
)
payloads = st.fixed_dictionaries(
    {"task_run": task_run_payloads}, optional={"intended": json_values}
) | st.dictionaries(st.text(max_size=10), json_values | deep_values, max_size=4)


def _received(name, labels, related, payload, draw):
    occurred = draw(
        st.datetimes(
            min_value=(IMPORTED - timedelta(days=1)).replace(tzinfo=None),
            max_value=IMPORTED.replace(tzinfo=None),
            timezones=st.just(UTC),
        )
    )
    return ReceivedEvent(
        id=draw(st.uuids()),
        occurred=occurred,
        received=occurred,
        event=name,
        resource=labels,
        related=related,
        payload=payload,
    )


def _state_labels(prefix, draw):
    state_type = draw(state_types)
    return {
        "prefect.resource.id": prefix + draw(run_ids),
        "prefect.resource.name": draw(texts),
        "prefect.state-type": state_type,
        "prefect.state-name": state_type.title(),
        "prefect.state-timestamp": draw(stamps),
        "prefect.run-count": draw(run_counts),
    }


@st.composite
def flow_run_state_events(draw):
    """A flow-run state event as a Prefect 3 server emits it."""
    labels = _state_labels(FLOW_PREFIX, draw)
    related = [draw(flows)] + draw(st.lists(deployments, max_size=1))
    payload = {"validated_state": {"type": labels["prefect.state-type"]}}
    return _received(FLOW_PREFIX + labels["prefect.state-name"], labels, related, payload, draw)


@st.composite
def task_run_state_events(draw):
    """A task-run state event: its run's times are in the payload, and the run has ended
    only if its state is terminal."""
    labels = _state_labels(TASK_PREFIX, draw)
    ended = labels["prefect.state-type"] in TERMINAL_STATES
    task_run = {
        "start_time": draw(st.none() | stamps),
        "end_time": draw(stamps) if ended else None,
        "name": labels["prefect.resource.name"],
    }
    related = [draw(parent_flow_runs)] + draw(st.lists(flows, max_size=1))
    return _received(
        TASK_PREFIX + labels["prefect.state-name"], labels, related, {"task_run": task_run}, draw
    )


@st.composite
def heartbeats(draw):
    labels = {
        "prefect.resource.id": FLOW_PREFIX + draw(run_ids),
        "prefect.resource.name": draw(texts),
    }
    return _received(FLOW_PREFIX + "heartbeat", labels, [draw(flows)], {}, draw)


LABEL_FAULTS = {
    "prefect.state-type": bad_state_types,
    "prefect.state-timestamp": bad_stamps,
    "prefect.run-count": bad_run_counts,
    "prefect.state-name": texts,
    "prefect.resource.name": texts,
}
FAULTS = [*LABEL_FAULTS, "prefect.resource.id", "event", "related", "payload"]
OTHER_PREFIX = {FLOW_PREFIX: TASK_PREFIX, TASK_PREFIX: FLOW_PREFIX}


@st.composite
def poisoned_events(draw):
    """A well-formed state event with one to three faults, so that every check meets its
    fault alone as well as with others: a label missing or wrong, the resource id or the event
    name wrong, the related resources missing or broken, the payload any JSON."""
    event = draw(well_formed_events)
    prefix = FLOW_PREFIX if event.event.startswith(FLOW_PREFIX) else TASK_PREFIX
    labels, related = dict(event.resource.root), [resource.root for resource in event.related]
    name, payload = event.event, event.payload
    for fault in draw(st.sets(st.sampled_from(FAULTS), min_size=1, max_size=3)):
        if fault == "prefect.resource.id":
            labels[fault] = draw(
                bad_run_ids.map(prefix.__add__)
                | run_ids.map(OTHER_PREFIX[prefix].__add__)
                | st.text(min_size=1)
            )
        elif fault == "event":
            name = draw(
                st.sampled_from([prefix + "heartbeat", OTHER_PREFIX[prefix] + "Completed"])
                | st.text(max_size=40)
            )
        elif fault == "related":
            related = draw(
                st.lists(
                    flows | deployments | parent_flow_runs | broken_related | other_related,
                    max_size=4,
                )
            )
        elif fault == "payload":
            payload = draw(payloads)
        else:  # None: the label is missing
            labels[fault] = draw(st.none() | LABEL_FAULTS[fault])
    labels = {label: value for label, value in labels.items() if value is not None}
    return _received(name, labels, related, payload, draw)


well_formed_events = flow_run_state_events() | task_run_state_events()
run_events = well_formed_events | heartbeats() | poisoned_events()
