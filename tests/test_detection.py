"""Runaway, stuck and late runs, against the real Redis and a real Prefect server: runs mirrored
by the ingest process, judged by a detection pass (in this process, and as deployed by beat and
a worker), their flags on the board, the run page, the home page and the websocket."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.urls import reverse
from django_celery_beat.models import PeriodicTask
from prefect.states import Scheduled

from pipelinehub.accounts.models import Membership
from pipelinehub.alerts.models import Alert
from pipelinehub.alerts.service import FLUSH_MARKER
from pipelinehub.detection import rules
from pipelinehub.detection.models import DetectionSettings, FlowLimit
from pipelinehub.detection.schedules import TASK
from pipelinehub.detection.service import detect
from pipelinehub.live.relay import StreamRelay
from pipelinehub.state.flags import LATE, RUNAWAY, STUCK, RunFlag
from pipelinehub.state.records import RunChange
from pipelinehub.state.store import EnvironmentState
from tests import factories
from tests.conftest import delete_prefix
from tests.test_board import board_url, run_url, sign_in
from tests.test_live import connect
from tests.webhook_receiver import Receiver

from .prefect.fixtures import deployment_run, wait_until
from .processes import DeployedProcess

pytestmark = pytest.mark.django_db(transaction=True)
SECOND = 1_000_000
MINUTE = 60 * SECOND

# A flow that sleeps: `python flow.py <name> <seconds> <how many runs>`, one run after another.
SLEEPER = """
import sys, time
from prefect import flow

name, seconds, count = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
sleeper = flow(name=name)(lambda: time.sleep(seconds))
for _ in range(count):
    sleeper()
"""


def run_sleeper(prefect_server, tmp_path, name, seconds, count=1, **env):
    """The sleeper flow in its own process (its own session, so that it can be killed)."""
    script = tmp_path / "sleeper.py"
    script.write_text(SLEEPER)
    return subprocess.Popen(
        [sys.executable, str(script), name, str(seconds), str(count)],
        env=prefect_server.client_env(**env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def configure(environment, **thresholds):
    """Thresholds for the environment (its settings row is made with it)."""
    assert DetectionSettings.objects.filter(environment=environment).update(**thresholds) == 1


def runs_of(state, flow, state_type="RUNNING"):
    return [
        run for run in state.unfinished().runs if run.flow == flow and run.state_type == state_type
    ]


def flags_of(result, kind):
    return {flag.run_id: flag for flag in result.flags if flag.kind == kind}


@pytest.fixture
def mirrored(prefect_environment, ingest):
    """The Prefect environment with ingest mirroring it."""
    ingest.start()
    ingest.wait_for_log("live environments=")
    return prefect_environment, EnvironmentState.for_environment(prefect_environment)


WEBHOOK_SECRET = "detection-webhook-secret-for-tests"


def test_runs_within_twice_their_history_are_never_flagged_and_a_runaway_is(
    mirrored, prefect_server, tmp_path, eager
):
    """...and its team's webhook gets one signed message when the flag starts and one when it
    clears, however many passes see it."""
    environment, state = mirrored
    configure(environment, runaway_floor=timedelta(seconds=1))
    cache.delete(FLUSH_MARKER.format(team_id=environment.team_id))
    receiver = Receiver(WEBHOOK_SECRET).start()
    factories.webhook_target(environment.team, receiver.url, WEBHOOK_SECRET)
    name = f"ph-steady-{uuid.uuid4().hex[:6]}"
    assert run_sleeper(prefect_server, tmp_path, name, 1, count=3).wait(120) == 0
    wait_until(
        lambda: getattr(state.baselines([("flow", name)]).get(("flow", name)), "runs", 0) == 3,
        60,
        lambda: "no baseline of three completed runs",
    )
    # About twice its history: judged all along, never flagged.
    normal = run_sleeper(prefect_server, tmp_path, name, 2)
    flagged = []
    while normal.poll() is None:
        flagged += detect(environment).flags
        time.sleep(0.3)
    assert normal.returncode == 0 and flagged == []

    runaway = run_sleeper(prefect_server, tmp_path, name, 15)  # its threshold is about 5 s
    try:
        wait_until(lambda: runs_of(state, name), 60, lambda: "the long run is not running")
        (run,) = runs_of(state, name)
        started = time.monotonic()
        wait_until(lambda: run.id in flags_of(detect(environment), RUNAWAY), 60)
        assert time.monotonic() - started < 60
        flag = state.flags()[run.id]
        assert flag["kind"] == RUNAWAY and ", usually " in flag["reason"]
        for _ in range(3):
            detect(environment)  # passes that see the same flag send nothing more
        assert runaway.wait(90) == 0
        wait_until(lambda: run.id not in state.flags(), 30, lambda: "the flag stayed")
        assert run.id not in flags_of(detect(environment), RUNAWAY)
        events = [(m.signed, m.json["events"][0]) for m in receiver.received]
        sent = [(signed, event["event"], event["run_id"]) for signed, event in events]
        assert sent == [(True, "started", run.id), (True, "cleared", run.id)]
    finally:
        runaway.kill()
        receiver.stop()


def test_a_run_whose_process_is_killed_is_flagged_stuck_when_its_heartbeats_stop(
    mirrored, prefect_server, tmp_path
):
    environment, state = mirrored
    configure(environment, heartbeat_silence=timedelta(seconds=30))
    name = f"ph-doomed-{uuid.uuid4().hex[:6]}"
    doomed = run_sleeper(
        prefect_server, tmp_path, name, 600, PREFECT_FLOWS_HEARTBEAT_FREQUENCY="30"
    )
    try:
        wait_until(lambda: runs_of(state, name), 60, lambda: "the run is not running")
        (run,) = runs_of(state, name)
        wait_until(lambda: run.id in state.unfinished().heartbeats, 60, lambda: "no heartbeat")
        assert detect(environment).flags == []  # alive
    finally:
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait()
    wait_until(lambda: run.id in flags_of(detect(environment), STUCK), 120)
    flag = state.flags()[run.id]
    assert flag["kind"] == STUCK and flag["reason"].startswith("no heartbeat for ")
    assert runs_of(state, name)  # Prefect still says Running: only the hub knows


def expected_start_of(state, run_id):
    return next((r.expected_start for r in state.unfinished().runs if r.id == run_id), None)


def test_a_deployment_with_no_worker_makes_a_late_run_flagged_by_the_deployed_pass(
    mirrored, tmp_path
):
    environment, state = mirrored
    configure(environment, late_after=timedelta(seconds=5))
    schedule = PeriodicTask.objects.get(task=TASK, args=json.dumps([environment.pk]))
    assert (schedule.interval.every, schedule.interval.period, schedule.enabled) == (
        30,
        "seconds",
        True,
    )
    expected = datetime.now(UTC) - timedelta(minutes=1)
    run_id = str(deployment_run(environment, Scheduled(scheduled_time=expected)))
    # Its expected start comes with the follow-up's read by id, after STALE (events carry none).
    wait_until(lambda: expected_start_of(state, run_id), 90, lambda: "no expected start")
    # Last run half a minute ago: beat sends the pass as it starts, not 30 s after.
    schedule.last_run_at = datetime.now(UTC) - timedelta(seconds=30)
    schedule.save(update_fields=["last_run_at"])
    worker, beat = DeployedProcess("worker", tmp_path), DeployedProcess("beat", tmp_path)
    worker.start()
    beat.start()
    try:
        worker.wait_ready()
        beat.wait_ready()
        wait_until(
            lambda: run_id in state.flags(),
            60,
            lambda: f"no late flag; worker log:\n{worker.tail()}",
        )
        assert state.flags()[run_id]["kind"] == LATE
        assert "after its scheduled time" in state.flags()[run_id]["reason"]
        worker.wait_for_log(f"detect environment={environment}", timeout=5)
    finally:
        beat.stop()
        worker.stop()


# -- thresholds and the reads of a pass, on runs written straight into Redis


@pytest.fixture
def environment(redis_client):
    env = factories.environment(factories.team(f"d{uuid.uuid4().hex[:8]}"), "dev")
    yield env
    delete_prefix(redis_client, env.key_prefix)


@pytest.fixture
def state(environment):
    return EnvironmentState.for_environment(environment)


NOW = time.time_ns() // 1000


def running(flow="etl", started=NOW - MINUTE, state_type="RUNNING", **fields):
    fields.setdefault("start", started if state_type == "RUNNING" else None)
    return RunChange(
        "flow",
        str(uuid.uuid4()),
        started,
        state_type,
        state_type.title(),
        name="calm-fox",
        flow=flow,
        **fields,
    )


def completed_runs(state, flow, seconds, count=5):
    for n in range(count):
        start = NOW - (n + 2) * 3600 * SECOND
        end = start + seconds * SECOND
        state.apply(
            RunChange(
                "flow",
                str(uuid.uuid4()),
                end,
                "COMPLETED",
                "Completed",
                flow=flow,
                start=start,
                end=end,
            )
        )


def test_a_flow_with_no_history_is_runaway_past_its_own_limit_or_the_environments(
    environment, state
):
    settings = DetectionSettings.of(environment)
    settings.runaway_limit = timedelta(minutes=30)
    settings.save()
    FlowLimit.objects.create(settings=settings, flow="slow", limit=timedelta(hours=2))
    new, slow, long_ago = (
        running("new", NOW - 40 * MINUTE),
        running("slow", NOW - 40 * MINUTE),
        running("slow", NOW - 3 * 3600 * SECOND),
    )
    state.apply_batch([new, slow, long_ago])
    result = detect(environment, now=NOW)
    runaway = flags_of(result, RUNAWAY)
    assert set(runaway) == {new.id, long_ago.id}
    assert runaway[new.id].reason == "running 40 min, past its limit of 30 min"
    assert runaway[new.id].since_micros == new.start + 30 * MINUTE


def test_the_floor_and_the_multiple_of_the_baseline(environment, state):
    completed_runs(state, "quick", 10)  # p95 10 s: 3x is 30 s, the 5 minute floor rules
    completed_runs(state, "hourly", 600)  # p95 10 min: runaway past 30 min
    quick, hourly = running("quick", NOW - 4 * MINUTE), running("hourly", NOW - 31 * MINUTE)
    state.apply_batch([quick, hourly])
    assert set(flags_of(detect(environment, now=NOW), RUNAWAY)) == {hourly.id}
    assert state.flags()[hourly.id]["reason"] == "running 31 min, usually 10 min"
    # The alerts app opened an alert for it: the pass hands its flags over.
    alert = Alert.objects.get(environment=environment, run_id=hourly.id)
    assert (alert.kind, alert.cleared_at) == (RUNAWAY, None)
    assert set(flags_of(detect(environment, now=NOW + 2 * MINUTE), RUNAWAY)) == {
        quick.id,
        hourly.id,
    }


def test_silence_without_heartbeats_takes_the_longer_limit(environment, state):
    quiet = running("etl", NOW - 61 * MINUTE)
    pending = running("etl", NOW - 30 * MINUTE, state_type="PENDING")
    beating = running("etl", NOW - 61 * MINUTE)
    state.apply_batch([quiet, pending, beating])
    state.record_heartbeats([(beating.id, NOW - MINUTE)])
    stuck = flags_of(detect(environment, now=NOW), STUCK)
    assert set(stuck) == {quiet.id}
    assert stuck[quiet.id].reason == "no heartbeat and no state change for 61 min"


def test_a_pass_writes_flags_and_a_changed_reason_but_not_an_unchanged_one(environment, state):
    late = running(state_type="SCHEDULED", expected_start=NOW - 10 * MINUTE)
    state.apply(late)
    assert detect(environment, now=NOW).changed == 1
    assert detect(environment, now=NOW + SECOND).changed == 0  # same words
    assert detect(environment, now=NOW + MINUTE).changed == 1  # "11 min" now
    assert detect(environment, now=NOW + MINUTE).flags[0].kind == LATE
    began = NOW + 2 * MINUTE
    state.apply(RunChange("flow", late.id, began, "RUNNING", "Running", start=began))
    assert state.flags() == {}  # it started: apply dropped the flag
    detect(environment, now=began)
    alert = Alert.objects.get(environment=environment, run_id=late.id)
    assert alert.kind == LATE and alert.cleared_at is not None  # and the next pass cleared it


def test_failed_runs_are_handed_over_only_when_the_environment_opted_in(environment, state):
    now = time.time_ns() // 1000
    failed = RunChange(
        "flow",
        str(uuid.uuid4()),
        now,
        "FAILED",
        "Failed",
        name="n",
        flow="etl",
        start=now - 3 * MINUTE,
        end=now,
    )
    state.apply(failed)
    assert detect(environment).failed == []  # not opted in: taken and dropped
    configure(environment, notify_failed=True)
    state.apply(RunChange("flow", str(uuid.uuid4()), now, "CRASHED", "Crashed", flow="etl"))
    state.apply(
        RunChange(
            "flow",
            str(uuid.uuid4()),
            now,
            "FAILED",
            "Failed",
            flow="etl",
            start=now - 3 * MINUTE,
            end=now,
        )
    )
    result = detect(environment)
    assert sorted(flag.reason for flag in result.failed) == [
        "Crashed before it ran",
        "Failed after 3 min",
    ]
    assert detect(environment).failed == []  # each once


def test_the_rules_defaults_are_the_settings_defaults():
    assert rules.Thresholds.of(DetectionSettings()) == rules.Thresholds()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"runaway_multiple": "1.2"}, "greater than or equal to 1.5"),
        ({"runaway_floor": timedelta(0)}, "between 1 second and 30 days"),
        ({"late_after": timedelta(days=31)}, "between 1 second and 30 days"),
        ({"heartbeat_silence": timedelta(seconds=10)}, "at most every 30 seconds"),
    ],
)
def test_bad_thresholds_are_refused_with_a_clear_error(environment, fields, message):
    settings = DetectionSettings.of(environment)
    for name, value in fields.items():
        setattr(settings, name, value)
    with pytest.raises(ValidationError, match=message):
        settings.full_clean()


def test_the_schedule_and_settings_come_and_go_with_the_environment(environment):
    assert DetectionSettings.objects.filter(environment=environment).exists()
    schedule = PeriodicTask.objects.get(task=TASK, args=json.dumps([environment.pk]))
    environment.enabled = False
    environment.save()
    schedule.refresh_from_db()
    assert not schedule.enabled
    environment.delete()
    assert not PeriodicTask.objects.filter(task=TASK, args=json.dumps([environment.pk])).exists()


# -- flags shown to people


def flagged_run(state):
    run = running("etl", NOW - 50 * MINUTE)
    state.apply(run)
    flag = RunFlag(run.id, RUNAWAY, "running 50 min, usually 6 min", NOW - 30 * MINUTE)
    state.set_flags([(flag, "RUNNING")])
    return run


def test_flags_show_on_the_board_the_run_page_and_the_home_page(client, environment, state):
    run = flagged_run(state)
    sign_in(client, environment, "viewer")
    board = client.get(board_url(environment)).content.decode()
    assert board.count("running 50 min, usually 6 min") == 2  # its row, and Needs attention
    assert "data-flagged-count>1<" in board
    page = client.get(run_url(environment, run.id)).content.decode()
    assert 'Runaway</span>: <span class="flag-reason">running 50 min, usually 6 min' in page
    home = client.get(reverse("home")).content.decode()
    assert 'data-count="flagged">1<' in home and 'data-count="flagged.runaway">1<' in home


async def test_a_flag_reaches_the_board_as_a_delta_and_its_clearing_too(environment, state):
    user = await sync_to_async(get_user_model().objects.create_user)(username="watcher")
    await sync_to_async(Membership.objects.create)(user=user, team=environment.team, role="viewer")
    run = running("etl", NOW - 70 * MINUTE)
    await sync_to_async(state.apply)(run)
    relay = asyncio.create_task(StreamRelay([environment]).run_forever())
    try:
        ws, _ = await connect(user, f"/ws/environments/{environment.team.slug}/dev/")
        snapshot = await ws.receive_json_from()
        assert snapshot["rows"][0]["flag"] is None
        await asyncio.sleep(0.5)  # the relay has read where the stream ends
        await sync_to_async(detect)(environment, now=NOW)
        frame = await ws.receive_json_from(timeout=10)
        (change,) = frame["changes"]
        assert (frame["type"], change["id"]) == ("delta", run.id)
        assert change["run"]["flag"] == {
            "kind": STUCK,
            "reason": "no heartbeat and no state change for 70 min",
            "since": run.version + 60 * MINUTE,
        }
        await sync_to_async(state.apply)(
            RunChange("flow", run.id, NOW, "COMPLETED", "Completed", end=NOW)
        )
        frame = await ws.receive_json_from(timeout=10)
        assert frame["changes"][0]["run"]["flag"] is None
        await ws.disconnect()
    finally:
        relay.cancel()
