"""Every environment gets its own reconcile schedule in django-celery-beat, created with the
environment (default every 5 minutes) and then edited in the admin like any schedule."""

import json

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from pipelinehub.environments.models import Environment

DEFAULT_MINUTES = 5


def schedule_name(environment):
    return f"reconcile {environment.pk}: {environment}"


@receiver(post_save, sender=Environment, dispatch_uid="sync.ensure_reconcile_schedule")
def ensure_reconcile_schedule(sender, instance, **kwargs):
    task = PeriodicTask.objects.filter(
        task="pipelinehub.sync.reconcile_environment", args=json.dumps([instance.pk])
    ).first()
    if task is None:
        every, _ = IntervalSchedule.objects.get_or_create(
            every=DEFAULT_MINUTES, period=IntervalSchedule.MINUTES
        )
        PeriodicTask.objects.create(
            name=schedule_name(instance),
            task="pipelinehub.sync.reconcile_environment",
            args=json.dumps([instance.pk]),
            interval=every,
            enabled=instance.enabled,
        )
    elif task.enabled != instance.enabled:
        task.enabled = instance.enabled
        task.save(update_fields=["enabled"])


@receiver(post_delete, sender=Environment, dispatch_uid="sync.drop_reconcile_schedule")
def drop_reconcile_schedule(sender, instance, **kwargs):
    PeriodicTask.objects.filter(
        task="pipelinehub.sync.reconcile_environment", args=json.dumps([instance.pk])
    ).delete()
