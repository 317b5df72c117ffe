"""Every Redis target gets a beat schedule in django-celery-beat that rotates its passwords
(`rotate_target`): created with the target (default every 30 days), deleted with it
(`pipelinehub/schedules.py`)."""

import json

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from pipelinehub.environments.models import RedisTarget
from pipelinehub.schedules import ensure_periodic_task

TASK = "pipelinehub.rotation.rotate_target"
DEFAULT_DAYS = 30


def ensure_schedule(target, periodic_task=PeriodicTask, interval=IntervalSchedule):
    ensure_periodic_task(
        periodic_task,
        interval,
        task=TASK,
        identity={"args": json.dumps([target.pk])},
        name=f"rotate passwords {target.pk}: {target.name}",
        every=(DEFAULT_DAYS, IntervalSchedule.DAYS),
    )


@receiver(post_save, sender=RedisTarget, dispatch_uid="rotation.ensure_schedule")
def ensure_rotation_schedule(sender, instance, **kwargs):
    ensure_schedule(instance)


@receiver(post_delete, sender=RedisTarget, dispatch_uid="rotation.drop_schedule")
def drop_rotation_schedule(sender, instance, **kwargs):
    PeriodicTask.objects.filter(task=TASK, args=json.dumps([instance.pk])).delete()
