"""Prefect to Redis, against a real Prefect server, real flows and the real Redis."""

import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from pipelinehub.state.records import RunChange
from pipelinehub.state.store import EnvironmentState
from pipelinehub.sync.models import ReconcileReport
from pipelinehub.sync.reconcile import reconcile
from pipelinehub.sync.tasks import reconcile_environment, sweep_environment

from .conftest import delete_prefix, redis_for_tests
from .prefect.fixtures import assert_mirrors_prefect, mismatches

pytestmark = pytest.mark.prefect


def test_ingest_mirrors_real_flows_exactly(prefect_server, prefect_environment, ingest):
    ingest.start()
    ingest.wait_for_log("live environments=")
    prefect_server.run_flows("all")
    assert_mirrors_prefect(prefect_environment)
    state = EnvironmentState.for_environment(prefect_environment)
    states = {run.state_type for run in state.board(limit=1000).runs}
    assert {"COMPLETED", "FAILED"} <= states
    assert "heartbeat" not in ingest.log()
    assert "source=live" in ingest.log() and "malformed=0" in ingest.log()


def test_ingest_killed_mid_stream_misses_nothing(prefect_server, prefect_environment, ingest):
    ingest.start()
    ingest.wait_for_log("live environments=")
    flows = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "prefect" / "flows.py"), "long,ok"],
        env=prefect_server.client_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    ingest.wait_for_log("source=live")
    ingest.kill()
    assert flows.wait(120) == 0, flows.stderr.read()
    assert mismatches(prefect_environment)  # it really missed part of the stream

    ingest.start()
    ingest.wait_for_log("source=catch-up")
    assert_mirrors_prefect(prefect_environment)


def test_ingest_survives_a_prefect_server_restart(prefect_server, prefect_environment, ingest):
    ingest.start()
    ingest.wait_for_log("live environments=")
    prefect_server.restart()
    prefect_server.run_flows("ok,fail")
    assert_mirrors_prefect(prefect_environment)
    assert ingest.process.poll() is None


def test_ingest_survives_a_redis_restart(
    prefect_server, prefect_environment, ingest, private_redis
):
    target = prefect_environment.redis_target
    target.port = private_redis.port
    target.save()
    ingest.start()
    ingest.wait_for_log("live environments=")
    prefect_server.run_flows("ok")
    assert_mirrors_prefect(prefect_environment)

    private_redis.stop()  # it keeps nothing on disk: it comes back empty
    prefect_server.run_flows("fail")
    ingest.wait_for_log("error=ConnectionError")
    private_redis.start()
    assert_mirrors_prefect(prefect_environment, timeout=90)
    assert ingest.process.poll() is None


def test_one_reconcile_restores_a_flushed_redis(prefect_server, prefect_environment):
    prefect_server.run_flows("ok,parent")
    first = reconcile(prefect_environment)
    assert not first.error and first.checked > 0
    assert_mirrors_prefect(prefect_environment, timeout=0)

    delete_prefix(redis_for_tests(), prefect_environment.key_prefix)
    report = reconcile(prefect_environment)
    assert report.missing == report.checked == first.checked
    assert_mirrors_prefect(prefect_environment, timeout=0)

    again = reconcile(prefect_environment)
    assert (again.missing, again.stale, again.orphaned) == (0, 0, 0)
    assert ReconcileReport.objects.filter(environment=prefect_environment).count() == 3


def test_reconcile_repairs_stale_and_removes_what_prefect_does_not_have(
    prefect_server, prefect_environment
):
    prefect_server.run_flows("ok")
    reconcile(prefect_environment)
    state = EnvironmentState.for_environment(prefect_environment)
    real = state.board(limit=1).runs[0]
    ghost = str(uuid.uuid4())
    state.apply(RunChange("flow", ghost, real.version, "RUNNING", "Running"))
    redis_for_tests().hset(
        state.keys.flow_runs,
        real.id,
        RunChange("flow", real.id, real.version - 60_000_000, "PENDING", "Pending").encode(),
    )

    report = reconcile(prefect_environment, mode="full")
    assert (report.stale, report.orphaned) == (1, 1)
    assert state.flow_run(ghost) is None
    assert_mirrors_prefect(prefect_environment, timeout=0)


def test_the_beat_tasks_reconcile_enabled_environments_only(prefect_server, prefect_environment):
    prefect_server.run_flows("ok")
    reconcile_environment.apply(args=[prefect_environment.pk]).get()
    report = ReconcileReport.objects.get(environment=prefect_environment)
    assert (report.trigger, report.error) == ("beat", "") and report.checked > 0
    sweep_environment.apply(args=[prefect_environment.pk]).get()
    sweep = ReconcileReport.objects.latest()
    assert (sweep.trigger, sweep.mode, sweep.error) == ("beat", "sweep", "")

    prefect_environment.enabled = False
    prefect_environment.save()
    reconcile_environment.apply(args=[prefect_environment.pk]).get()
    sweep_environment.apply(args=[prefect_environment.pk]).get()
    assert ReconcileReport.objects.filter(environment=prefect_environment).count() == 2


def test_one_reconcile_at_a_time_and_old_reports_go(prefect_environment, monkeypatch):
    monkeypatch.setattr("pipelinehub.sync.reconcile.LOCK_WAIT_SECONDS", 0.5)
    old = ReconcileReport.objects.create(
        environment=prefect_environment,
        trigger="beat",
        started_at=timezone.now() - timedelta(days=31),
    )
    state = EnvironmentState.for_environment(prefect_environment)
    with state.client.lock(state.keys.lock("reconcile"), timeout=30):
        report = reconcile(prefect_environment)
    assert "another reconcile" in report.error
    assert not ReconcileReport.objects.filter(pk=old.pk).exists()


def test_unreachable_prefect_is_reported_and_writes_nothing(prefect_environment):
    workspace = prefect_environment.workspace
    workspace.api_url = "http://127.0.0.1:9/api"
    workspace.save()
    report = reconcile(prefect_environment)
    assert "ConnectError" in report.error
    assert not list(redis_for_tests().scan_iter(match=f"{prefect_environment.key_prefix}run*"))


def test_wrong_key_is_reported_and_writes_nothing(prefect_environment, ingest):
    prefect_environment.workspace.api_key.store("pipelinehub:wrong")
    report = reconcile(prefect_environment)
    assert "401" in report.error
    ingest.start()
    ingest.wait_for_log("error=")
    assert "401" in ingest.log()
    assert not list(redis_for_tests().scan_iter(match=f"{prefect_environment.key_prefix}run*"))


@pytest.mark.django_db(transaction=True)
async def test_ingest_logs_and_skips_malformed_events(prefect_environment, caplog):
    from asgiref.sync import sync_to_async
    from django.db import connections
    from prefect.events.schemas.events import Event

    from pipelinehub.state.store import AsyncEnvironmentState
    from pipelinehub.sync.ingest import EnvironmentIngest, enabled_environments

    ((_, environment),) = (await sync_to_async(enabled_environments)()).values()
    ingest = EnvironmentIngest(environment)
    state = AsyncEnvironmentState.for_environment(environment)
    run_id = str(uuid.uuid4())
    labels = {
        "prefect.state-type": "COMPLETED",
        "prefect.state-name": "Completed",
        "prefect.state-timestamp": "2026-11-26T08:58:53.614453+00:00",
    }
    good = Event(
        occurred=timezone.now(),
        event="prefect.flow-run.Completed",
        resource={"prefect.resource.id": f"prefect.flow-run.{run_id}", **labels},
    )
    bad = Event(
        occurred=timezone.now(),
        event="prefect.flow-run.Completed",
        resource={"prefect.resource.id": "prefect.flow-run.", **labels},
    )
    heartbeat = Event(
        occurred=timezone.now(),
        event="prefect.flow-run.heartbeat",
        resource={"prefect.resource.id": f"prefect.flow-run.{run_id}"},
    )
    with caplog.at_level("INFO", logger="pipelinehub.sync.ingest"):
        await ingest.apply_events([bad, heartbeat, good], state, source="live")
    assert "malformed event skipped" in caplog.text and "prefect.flow-run." in caplog.text
    assert "events=3 changes=1 applied=1 ignored=1 malformed=1" in caplog.text
    assert await state.flow_run_ids() == {run_id}
    await state.aclose()
    await sync_to_async(connections.close_all)()  # the worker thread's, before the test DB goes
