"""What ingest and beat take from the configuration."""

import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django_celery_beat.models import PeriodicTask

from pipelinehub.sync.ingest import enabled_environments

from . import factories

pytestmark = pytest.mark.django_db


def test_ingest_follows_only_enabled_environments():
    on = factories.environment(factories.team("on"), slug="dev")
    factories.environment(factories.team("off"), slug="dev", enabled=False)
    assert [environment for _, environment in enabled_environments().values()] == [on]


@pytest.mark.parametrize(
    ("model", "field", "value"),
    [
        ("target", "host", "localhost"),
        ("target", "port", 6380),
        ("target", "db", 3),
        ("target", "tls", True),
        ("target", "tls_verify", "none"),
        ("target", "tls_ca_path", "/etc/ssl/ca.pem"),
        ("target", "username", "hub"),
        ("workspace", "api_url", "http://127.0.0.1:4201/api"),
        ("environment", "key_prefix", "ph:{moved}:"),
        ("environment", "finished_run_ttl", timedelta(days=1)),
    ],
)
def test_ingest_restarts_an_environment_when_its_connections_change(model, field, value):
    environment = factories.environment(factories.team("data"), slug="dev")
    ((before, _),) = enabled_environments().values()
    edited = {
        "target": environment.redis_target,
        "workspace": environment.workspace,
        "environment": environment,
    }[model]
    setattr(edited, field, value)
    edited.save()
    ((after, _),) = enabled_environments().values()
    assert after != before


def test_every_environment_gets_an_editable_reconcile_schedule():
    environment = factories.environment(factories.team("data"), slug="prod")
    task = PeriodicTask.objects.get(task="pipelinehub.sync.reconcile_environment")
    assert json.loads(task.args) == [environment.pk]
    assert (task.interval.every, task.interval.period, task.enabled) == (5, "minutes", True)

    task.interval = task.interval.__class__.objects.create(every=1, period="hours")
    task.save()
    environment.enabled = False
    environment.save()
    task.refresh_from_db()
    assert (task.interval.every, task.enabled) == (1, False)  # the edit is kept

    environment.delete()
    assert not PeriodicTask.objects.filter(task="pipelinehub.sync.reconcile_environment").exists()


def test_reconcile_command_names_an_unknown_environment():
    with pytest.raises(CommandError, match="nope/dev"):
        call_command("reconcile", "nope/dev")
