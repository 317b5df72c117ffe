"""Reconcile as deployed: `manage.py reconcile` and the Celery worker's reconcile, each a
process started as the Procfile and the Dockerfile start it, with only the documented
environment (no PREFECT_* variables), against the real Prefect server with auth on. Ingest runs
the same way in tests/test_sync_ingest.py and tests/test_sync_prefect.py."""

import os

import pytest
from django.conf import settings

from pipelinehub.celery import app
from pipelinehub.sync.models import ReconcileReport

from .prefect.fixtures import assert_mirrors_prefect, mismatches
from .processes import DeployedProcess

pytestmark = pytest.mark.prefect


def test_the_reconcile_command_mirrors_an_authenticated_server(
    prefect_server, prefect_environment, tmp_path
):
    prefect_server.run_flows("ok,fail")
    assert mismatches(prefect_environment)
    target = f"{prefect_environment.team.slug}/dev"
    command = DeployedProcess("reconcile", tmp_path, args=("--full", target))
    assert command.run() == 0, command.tail()
    assert not any(name.startswith("PREFECT_") for name in command.environment())
    assert_mirrors_prefect(prefect_environment, timeout=5)


def test_the_workers_reconcile_mirrors_an_authenticated_server(
    prefect_server, prefect_environment, tmp_path
):
    prefect_server.run_flows("ok,retries")
    worker = DeployedProcess("worker", tmp_path)
    worker.start()
    try:
        worker.wait_ready()
        with app.connection_for_write(settings.CELERY_BROKER_URL) as connection:
            task = app.send_task(
                "pipelinehub.sync.reconcile_environment",
                args=[prefect_environment.pk],
                kwargs={"mode": "full"},
                connection=connection,
            )
        worker.wait_for_log(f"[{task.id}] succeeded", timeout=120)
    finally:
        worker.stop()
    report = ReconcileReport.objects.filter(environment=prefect_environment).latest()
    assert (report.trigger, report.error) == ("beat", "")
    assert_mirrors_prefect(prefect_environment, timeout=5)
    assert "PREFECT_API_URL" not in os.environ  # nothing here lent the processes a setting
