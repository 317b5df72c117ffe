"""What ingest and beat take from the configuration."""

import json

import pytest
from django.core.management import CommandError, call_command
from django_celery_beat.models import PeriodicTask

from pipelinehub.sync.ingest import enabled_workspaces

from . import factories

pytestmark = pytest.mark.django_db


def test_ingest_follows_only_enabled_environments():
    on = factories.environment(factories.team("on"), slug="dev")
    factories.environment(factories.team("off"), slug="dev", enabled=False)
    assert enabled_workspaces() == {on.workspace: [on]}


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
