"""Environments made before reconcile had modes get their "sweep" schedule (new environments
get it from the post_save hook in sync.schedules)."""

from django.db import migrations
from django.utils import timezone


def add_sweep_schedules(apps, schema_editor):
    from pipelinehub.sync.schedules import ensure_schedules

    periodic_task = apps.get_model("django_celery_beat", "PeriodicTask")
    interval = apps.get_model("django_celery_beat", "IntervalSchedule")
    environments = apps.get_model("environments", "Environment").objects.select_related("team")
    for environment in environments:
        ensure_schedules(_Named(environment), periodic_task, interval)
    # Historical models skip PeriodicTask.save(), which tells a running beat to reload.
    apps.get_model("django_celery_beat", "PeriodicTasks").objects.update_or_create(
        ident=1, defaults={"last_update": timezone.now()}
    )


def remove_sweep_schedules(apps, schema_editor):
    from pipelinehub.sync.schedules import TASKS

    sweep = [name for name, label in TASKS.items() if label == "sweep"]
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task__in=sweep).delete()


class _Named:
    """A historical Environment named as the real model names it (team/env)."""

    def __init__(self, environment):
        self.pk = environment.pk
        self.enabled = environment.enabled
        self._name = f"{environment.team.slug}/{environment.slug}"

    def __str__(self):
        return self._name


class Migration(migrations.Migration):
    dependencies = [
        ("sync", "0002_report_mode_requests_malformed"),
        ("environments", "0002_environment_acl_user"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(add_sweep_schedules, remove_sweep_schedules)]
