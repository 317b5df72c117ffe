"""Every environment gets a detection schedule in django-celery-beat (`detect_environment`,
every 30 seconds) and a `DetectionSettings` row with the defaults, both made with the
environment; the schedule is enabled and disabled with it and deleted with it, and otherwise
edited in the admin like any schedule (an edited interval is kept; `pipelinehub/schedules.py`)."""

import json

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from pipelinehub.environments.models import Environment
from pipelinehub.schedules import ensure_periodic_task

from .models import DetectionSettings

TASK = "pipelinehub.detection.detect_environment"
EVERY_SECONDS = 30


def schedule_name(environment):
    return f"detect {environment.pk}: {environment}"


def ensure_schedule(environment, periodic_task=PeriodicTask, interval=IntervalSchedule):
    """Create the environment's schedule if missing and make it follow `enabled`. The model
    classes are parameters so that a data migration can pass its historical ones."""
    ensure_periodic_task(
        periodic_task,
        interval,
        task=TASK,
        identity={"args": json.dumps([environment.pk])},
        name=schedule_name(environment),
        every=(EVERY_SECONDS, IntervalSchedule.SECONDS),
        enabled=environment.enabled,
        # A pass queued behind a busy worker for longer than the interval is superseded.
        expire_seconds=EVERY_SECONDS,
    )


@receiver(post_save, sender=Environment, dispatch_uid="detection.ensure_schedule")
def ensure_detection(sender, instance, **kwargs):
    ensure_schedule(instance)
    DetectionSettings.objects.get_or_create(environment=instance)


@receiver(post_delete, sender=Environment, dispatch_uid="detection.drop_schedule")
def drop_detection_schedule(sender, instance, **kwargs):
    PeriodicTask.objects.filter(task=TASK, args=json.dumps([instance.pk])).delete()
