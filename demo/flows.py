"""The demo's flows: what `make run` serves on its local Prefect server when nothing is configured,
so that the board has runs changing state within a minute or two.

Each flow shows the board something different: a quick success, failures, Prefect's retries,
a long run to cancel, a flow that maps many tasks, and a "runaway" whose usual run is short but
whose every Nth run lasts minutes (for the runaway detector). They run as deployments, so
that retry from the board works: Prefect's retry sends a run back to Scheduled, and the serving
process (`serve`) runs any Scheduled run of its deployments.

Run by `python -m demo flows`, which sets PREFECT_API_URL before prefect is imported.
"""

import random
import time
from datetime import UTC, datetime, timedelta

from prefect import flow, get_client, serve, task
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import StateType
from prefect.runtime import flow_run, task_run
from prefect.schedules import Interval
from prefect.states import Crashed

DEPLOYMENT_NAME = "demo"
RUNAWAY_EVERY = 6  # every 6th run of inventory-snapshot is a runaway
RUNAWAY_INTERVAL = timedelta(seconds=30)
USUAL_SECONDS = 4
# Well past the detector's default threshold (3x a usual 4 s is under its 5 minute floor), so
# that it is flagged runaway from minute 5 to minute 12 of each long run: a newcomer sees the
# flag a few minutes after `make run`.
RUNAWAY_SECONDS = 720
# Served runs in flight at once; a runaway or two plus a long run must not hold up the rest.
PROCESS_LIMIT = 10


@task
def extract(source):
    time.sleep(1)
    return [random.randint(1, 100) for _ in range(20)]


@task
def transform(rows):
    time.sleep(1)
    return [row * 2 for row in rows]


@task
def load(rows):
    time.sleep(1)
    return len(rows)


@flow(name="orders-etl")
def orders_etl():
    """Extract, transform, load in a few seconds: the common case, completed."""
    return load(transform(extract("orders")))


@task
def call_payments_api():
    time.sleep(2)
    if random.random() < 0.4:
        raise ConnectionError("payments API answered 503 Service Unavailable")


@flow(name="payments-sync")
def payments_sync():
    """Fails about two runs in five, through its task."""
    call_payments_api()


@task(retries=2, retry_delay_seconds=3)
def fetch_contacts():
    """Fails its first attempt: the task run shows Prefect's task retries."""
    if task_run.run_count == 1:
        raise TimeoutError("CRM export timed out")
    return 120


@flow(name="crm-import", retries=1, retry_delay_seconds=10)
def crm_import():
    """Its first attempt fails and Prefect runs it again 10 s later: the flow run goes through
    AwaitingRetry and Retrying to Completed, with a run count of 2."""
    contacts = fetch_contacts()
    if flow_run.run_count == 1:
        raise RuntimeError(f"{contacts} contacts fetched, but the CRM closed the session")
    return contacts


@task
def refresh_table(name):
    time.sleep(7)
    return name


@flow(name="warehouse-refresh")
def warehouse_refresh(tables=12):
    """About 90 s, one table at a time: a run in flight long enough to cancel from the board."""
    for number in range(tables):
        refresh_table(f"table_{number:02d}")


@task
def thumbnail(image):
    time.sleep(random.uniform(0.05, 0.3))
    return image


@flow(name="image-thumbnails")
def image_thumbnails(images=50):
    """Maps a task over 50 images: many task runs under one flow run, a few seconds."""
    return len(thumbnail.map(range(images)).result())


def is_runaway(scheduled_start: datetime) -> bool:
    """Whether the run scheduled at `scheduled_start` is the long one: scheduled runs are one
    interval apart, so counting intervals since the epoch makes exactly every Nth run long
    without keeping any state."""
    slot = int(scheduled_start.timestamp() // RUNAWAY_INTERVAL.total_seconds())
    return slot % RUNAWAY_EVERY == 0


@flow(name="inventory-snapshot")
def inventory_snapshot():
    """Usually done in 4 s; every 6th run takes 12 minutes, far beyond its usual duration."""
    runaway = is_runaway(flow_run.scheduled_start_time)
    time.sleep(RUNAWAY_SECONDS if runaway else USUAL_SECONDS)


# Every flow and how often it runs.
SCHEDULES = {
    orders_etl: timedelta(seconds=30),
    payments_sync: timedelta(seconds=45),
    crm_import: timedelta(seconds=60),
    warehouse_refresh: timedelta(seconds=120),
    image_thumbnails: timedelta(seconds=60),
    inventory_snapshot: RUNAWAY_INTERVAL,
}


# Fixed anchors, 5 s apart: the flows start staggered rather than all at once, and serving them
# again (each `make run`) leaves their schedules, and the runs already scheduled, unchanged.
ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)
STAGGER = timedelta(seconds=5)


def deployments():
    """One deployment per flow, on its interval, tagged `demo`."""
    return [
        demo_flow.to_deployment(
            DEPLOYMENT_NAME,
            schedule=Interval(every, anchor_date=ANCHOR + position * STAGGER),
            tags=["demo"],
        )
        for position, (demo_flow, every) in enumerate(SCHEDULES.items())
    ]


def crash_leftovers():
    """Mark Crashed the demo's runs that a previous `make run` left in flight.

    Ctrl-C stops the flows together with the server, so Prefect may never hear that they ended:
    they would stay Running on the board for good, and look like runaways. Before serving, no
    demo run can be in flight, since only this process runs them.
    """
    in_flight = [StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]
    leftovers = FlowRunFilter(
        tags=FlowRunFilterTags(all_=["demo"]),
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=in_flight)),
    )
    with get_client(sync_client=True) as client:
        for run in client.read_flow_runs(flow_run_filter=leftovers, limit=200):
            message = "The demo stopped (make run ended) while this run was in flight."
            client.set_flow_run_state(run.id, Crashed(message=message), force=True)


if __name__ == "__main__":
    crash_leftovers()
    # Not paused on shutdown: the server stops at the same moment, and schedules left paused
    # would keep the next `make run` from running anything.
    serve(*deployments(), limit=PROCESS_LIMIT, pause_on_shutdown=False)
