"""Reconcile's modes against the real Prefect server and the real Redis: "changes" reads what
can have changed, "sweep" the window slice by slice, "full" all of it; and the schedules that
run them."""

import asyncio
import http.client
import importlib
import json
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask
from prefect.client.orchestration import PrefectClient

from pipelinehub.audit.models import AuditEvent
from pipelinehub.state.records import RunChange, to_micros
from pipelinehub.state.store import EnvironmentState
from pipelinehub.sync.models import ReconcileReport
from pipelinehub.sync.reconcile import SWEEP_SLICES, reconcile, sweep_slice
from pipelinehub.sync.schedules import TASKS

from . import factories
from .conftest import delete_prefix, redis_for_tests
from .prefect.fixtures import assert_mirrors_prefect
from .prefect.server import AUTH_STRING, clean_env

SEEDER = Path(__file__).resolve().parents[1] / "bench" / "seed_prefect.py"
HISTORY = 1000  # old finished flow runs, one task run each
HISTORY_FLOW = "ph-history"
schedules_migration = importlib.import_module("pipelinehub.sync.migrations.0003_sweep_schedules")


def seed(server, count, *options, flow):
    """Write flow runs straight into the running server's database (bench/seed_prefect.py)."""
    subprocess.run(
        [sys.executable, str(SEEDER), str(count), "--flow", flow, *options],
        env=clean_env(PREFECT_HOME=str(server.home)),
        check=True,
    )


def delete_flow(server, name):
    """Delete a flow and, by cascade, its flow runs and task runs."""

    async def delete():
        async with PrefectClient(server.api_url, auth_string=AUTH_STRING) as client:
            await client.delete_flow((await client.read_flow_by_name(name)).id)

    asyncio.run(delete())


@pytest.fixture(scope="module")
def history(prefect_server):
    """HISTORY flow runs that ended between 10 minutes and 6 days ago: what a team's week of
    finished runs looks like to reconcile, in small."""
    seed(prefect_server, HISTORY, "--days", "6", "--tasks", "1", flow=HISTORY_FLOW)
    yield
    delete_flow(prefect_server, HISTORY_FLOW)


def history_run(state):
    """A stored flow run of the history, from the middle of the window."""
    runs = [r for r in state.records("flow", state.flow_run_ids()) if r.flow == HISTORY_FLOW]
    runs.sort(key=lambda run: run.version)
    return runs[len(runs) // 2]


def older(run, state_type="RUNNING"):
    """The change of `run` to an older state than the one Prefect has."""
    return RunChange(
        "flow", run.id, run.version - 60_000_000, state_type, state_type.title(), name=run.name
    )


def replace(state, change):
    """Store `change` in place of what Redis holds (apply alone keeps the newer state)."""
    state.remove(change.kind, [change.id])
    state.apply(change)


@pytest.mark.prefect
def test_changes_reads_what_changed_and_not_the_history(
    prefect_server, prefect_environment, history
):
    full = reconcile(prefect_environment)  # a new Redis: full by itself
    assert (full.mode, full.error) == ("full", "")
    assert full.checked >= 2 * HISTORY
    prefect_server.run_flows("ok")  # a flow run and its task run after the last reconcile
    state = EnvironmentState.for_environment(prefect_environment)
    before = state.flow_run_ids()

    report = reconcile(prefect_environment)
    assert (report.mode, report.error) == ("changes", "")
    assert len(state.flow_run_ids() - before) == 1 and report.missing == 2
    assert report.checked < HISTORY / 10
    assert report.requests <= 8 < full.requests
    assert_mirrors_prefect(prefect_environment, timeout=0)


@pytest.mark.prefect
def test_changes_asks_prefect_about_runs_held_unfinished(prefect_environment, history):
    reconcile(prefect_environment)
    state = EnvironmentState.for_environment(prefect_environment)
    old = history_run(state)
    replace(state, older(old))  # its terminal event was lost, days ago
    ghost = str(uuid.uuid4())  # running in Redis, unknown to Prefect
    state.apply(RunChange("flow", ghost, to_micros(datetime.now(UTC)), "RUNNING", "Running"))

    report = reconcile(prefect_environment)
    assert (report.mode, report.stale, report.orphaned) == ("changes", 1, 1)
    assert state.flow_run(ghost) is None
    assert state.records("flow", [old.id])[0].state_type == "COMPLETED"
    assert_mirrors_prefect(prefect_environment, timeout=0)


@pytest.mark.prefect
def test_a_sweep_cycle_repairs_old_runs_and_removes_old_orphans(prefect_environment, history):
    reconcile(prefect_environment)
    state = EnvironmentState.for_environment(prefect_environment)
    old = history_run(state)
    replace(state, older(old, "FAILED"))  # finished, but not as Prefect has it
    ghost = RunChange(
        "flow", str(uuid.uuid4()), old.version, "COMPLETED", "Completed", end=old.version
    )
    state.apply(ghost)  # finished days ago, unknown to Prefect

    changes = reconcile(prefect_environment)
    assert (changes.stale, changes.orphaned) == (0, 0)  # old finished runs are not its business

    sweeps = []
    while len(sweeps) < 2 * SWEEP_SLICES:
        sweeps.append(reconcile(prefect_environment, mode="sweep"))
        if state.meta()["sweep_cursor"] == "":
            break
    assert len(sweeps) == SWEEP_SLICES and {s.error for s in sweeps} == {""}
    assert sum(s.stale for s in sweeps) == sum(s.orphaned for s in sweeps) == 1
    # Each reads a slice of the history; the newest slice also holds what earlier tests of the
    # session ran on the same Prefect server, so it is left out of the count.
    assert sorted(s.checked for s in sweeps)[-2] < HISTORY / 2
    assert state.flow_run(ghost.id) is None
    assert state.records("flow", [old.id])[0].state_type == "COMPLETED"
    assert_mirrors_prefect(prefect_environment, timeout=0)


@pytest.mark.prefect
def test_full_runs_by_itself_when_the_state_is_gone(prefect_environment, history):
    first = reconcile(prefect_environment)
    assert reconcile(prefect_environment).mode == "changes"

    delete_prefix(redis_for_tests(), prefect_environment.key_prefix)  # a flushed Redis
    report = reconcile(prefect_environment)
    assert report.mode == "full"
    assert report.missing == report.checked == first.checked
    assert_mirrors_prefect(prefect_environment, timeout=0)

    call_command("reconcile", str(prefect_environment), "--full")
    assert ReconcileReport.objects.latest().mode == "full"


class RateLimitingProxy:
    """A loopback HTTP proxy in front of the real Prefect server: answers the first `reject`
    requests 429 with Retry-After: 1 and forwards the others."""

    def __init__(self, upstream_port, reject):
        self.upstream_port = upstream_port
        self.to_reject = reject
        self.rejected, self.forwarded = [], []  # monotonic times
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _ProxyHandler)
        self.server.proxy = self
        self._lock = threading.Lock()

    @property
    def api_url(self):
        return f"http://127.0.0.1:{self.server.server_port}/api"

    def admit(self):
        """Whether to forward this request; records when it came."""
        with self._lock:
            if len(self.rejected) < self.to_reject:
                self.rejected.append(time.monotonic())
                return False
            self.forwarded.append(time.monotonic())
            return True

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "host", "date", "server"}


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the Prefect client expects

    def do_GET(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self.server.proxy.admit():
            self._answer(429, [("Retry-After", "1")], b"")
            return
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.proxy.upstream_port)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        upstream.close()
        kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_HEADERS]
        self._answer(response.status, [h for h in kept if h[0].lower() != "content-length"], data)

    do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

    def _answer(self, status, headers, data):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.mark.prefect
def test_429_with_retry_after_is_honoured(prefect_server, prefect_environment):
    prefect_server.run_flows("ok")
    with RateLimitingProxy(prefect_server.port, reject=3) as proxy:
        workspace = prefect_environment.workspace
        workspace.api_url = proxy.api_url
        workspace.save()
        report = reconcile(prefect_environment, mode="full")

    assert report.error == "" and report.checked > 0
    assert len(proxy.rejected) == 3
    assert report.requests == len(proxy.forwarded) + 3
    # Each request after a 429 came at least the Retry-After second later (a minimum the
    # client must wait, not a measure of speed).
    arrivals = sorted(proxy.rejected + proxy.forwarded)
    for rejected_at in proxy.rejected:
        following = next(t for t in arrivals if t > rejected_at)
        assert following - rejected_at >= 1.0
    workspace.api_url = prefect_server.api_url
    workspace.save()
    assert_mirrors_prefect(prefect_environment, timeout=0)


@pytest.mark.prefect
def test_a_malformed_run_is_skipped_and_counted(prefect_server, prefect_environment, caplog):
    reconcile(prefect_environment)
    seed(prefect_server, 1, "--run-count", "50000", flow="ph-malformed")
    try:
        prefect_server.run_flows("ok")
        with caplog.at_level("WARNING", logger="pipelinehub.sync.reconcile"):
            report = reconcile(prefect_environment)
        assert (report.mode, report.error, report.malformed) == ("changes", "", 1)
        assert report.missing == 2  # the good flow run and its task run are applied
        assert caplog.text.count("malformed run skipped") == 1
        assert "run_count" in caplog.text
    finally:
        delete_flow(prefect_server, "ph-malformed")
    assert_mirrors_prefect(prefect_environment, timeout=0)


@pytest.mark.prefect
def test_the_admin_action_queues_a_full_reconcile(client, prefect_environment, eager):
    admin_user = get_user_model().objects.create_superuser("root", "root@example.com", "x")
    client.force_login(admin_user)
    changelist = "/admin/environments/environment/"
    assert "reconcile_now_full" in client.get(changelist).content.decode()

    response = client.post(
        changelist, {"action": "reconcile_now_full", "_selected_action": [prefect_environment.pk]}
    )
    assert response.status_code == 302
    report = ReconcileReport.objects.get(environment=prefect_environment)
    assert (report.trigger, report.mode, report.error) == ("admin", "full", "")
    assert AuditEvent.objects.filter(action="environment.reconcile").count() == 1


@pytest.mark.django_db
def test_the_admin_action_needs_the_change_permission(client):
    factories.environment()
    viewer = get_user_model().objects.create_user("viewer", is_staff=True)
    viewer.user_permissions.add(
        apps.get_model("auth", "Permission").objects.get(codename="view_environment")
    )
    client.force_login(viewer)
    page = client.get("/admin/environments/environment/")
    assert page.status_code == 200
    assert "reconcile_now_full" not in page.content.decode()


@pytest.mark.django_db
def test_every_environment_gets_a_sweep_schedule_that_follows_it():
    environment = factories.environment(factories.team("data"), slug="prod")
    args = json.dumps([environment.pk])
    tasks = list(PeriodicTask.objects.filter(task__in=TASKS, args=args))
    assert sorted(t.name for t in tasks) == [
        f"reconcile {environment.pk}: data/prod",
        f"sweep {environment.pk}: data/prod",
    ]
    assert {(t.interval.every, t.interval.period, t.enabled) for t in tasks} == {
        (5, "minutes", True)
    }

    environment.enabled = False
    environment.save()
    assert not PeriodicTask.objects.filter(task__in=TASKS, args=args, enabled=True).exists()
    environment.delete()
    assert not PeriodicTask.objects.filter(task__in=TASKS, args=args).exists()


@pytest.mark.django_db
def test_the_migration_gives_existing_environments_their_sweep_schedule():
    environment = factories.environment(factories.team("old"), slug="prod")
    PeriodicTask.objects.filter(task="pipelinehub.sync.sweep_environment").delete()
    schedules_migration.add_sweep_schedules(apps, None)
    schedules_migration.add_sweep_schedules(apps, None)  # and again: nothing more
    sweep = PeriodicTask.objects.get(task="pipelinehub.sync.sweep_environment")
    assert (sweep.name, json.loads(sweep.args)) == (
        f"sweep {environment.pk}: old/prod",
        [environment.pk],
    )


def test_twelve_sweeps_five_minutes_apart_cover_the_window_once():
    ttl, now = timedelta(days=7), datetime(2026, 11, 26, 12, tzinfo=UTC)
    covered, cursor = [], ""
    for sweep in range(SWEEP_SLICES):
        at = now + sweep * timedelta(minutes=5)
        start, end = sweep_slice(at, ttl, cursor)
        covered.append((start, end))
        cursor = "" if end >= at else end.isoformat()
    assert cursor == ""  # the twelfth reached its present: the cycle is complete
    assert covered[0][0] == now - ttl
    assert all(a[1] == b[0] for a, b in zip(covered, covered[1:], strict=False))
    assert covered[-1][1] == now + 55 * timedelta(minutes=1)
