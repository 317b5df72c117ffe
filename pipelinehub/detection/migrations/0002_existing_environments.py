"""Environments made before detection get their settings row and detection schedule (new
environments get both from the post_save hook in detection.schedules)."""

from django.db import migrations
from django.utils import timezone


def add_detection(apps, schema_editor):
    from pipelinehub.detection.schedules import ensure_schedule

    periodic_task = apps.get_model("django_celery_beat", "PeriodicTask")
    interval = apps.get_model("django_celery_beat", "IntervalSchedule")
    settings = apps.get_model("detection", "DetectionSettings")
    environments = apps.get_model("environments", "Environment").objects.select_related("team")
    for environment in environments:
        ensure_schedule(_Named(environment), periodic_task, interval)
        settings.objects.get_or_create(environment=environment)
    # Historical models skip PeriodicTask.save(), which tells a running beat to reload.
    apps.get_model("django_celery_beat", "PeriodicTasks").objects.update_or_create(
        ident=1, defaults={"last_update": timezone.now()}
    )


def remove_detection_schedules(apps, schema_editor):
    from pipelinehub.detection.schedules import TASK

    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task=TASK).delete()


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
        ("detection", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(add_detection, remove_detection_schedules)]
