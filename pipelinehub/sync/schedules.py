"""Every environment gets two beat schedules in django-celery-beat: reconcile "changes"
(`reconcile_environment`) and reconcile "sweep" (`sweep_environment`). Both are created with the
environment (default every 5 minutes), enabled and disabled with it, deleted with it
(`pipelinehub/schedules.py`)."""

import json

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from pipelinehub.environments.models import Environment
from pipelinehub.schedules import ensure_periodic_task

DEFAULT_MINUTES = 5
# Celery task name -> the label that starts its schedule's name.
TASKS = {
    "pipelinehub.sync.reconcile_environment": "reconcile",
    "pipelinehub.sync.sweep_environment": "sweep",
}


def schedule_name(environment, label="reconcile"):
    return f"{label} {environment.pk}: {environment}"


def ensure_schedules(environment, periodic_task=PeriodicTask, interval=IntervalSchedule):
    """Create the environment's missing schedules and make all follow its `enabled`."""
    for task_name, label in TASKS.items():
        ensure_periodic_task(
            periodic_task,
            interval,
            task=task_name,
            identity={"args": json.dumps([environment.pk])},
            name=schedule_name(environment, label),
            every=(DEFAULT_MINUTES, IntervalSchedule.MINUTES),
            enabled=environment.enabled,
        )


@receiver(post_save, sender=Environment, dispatch_uid="sync.ensure_reconcile_schedule")
def ensure_reconcile_schedule(sender, instance, **kwargs):
    ensure_schedules(instance)


@receiver(post_delete, sender=Environment, dispatch_uid="sync.drop_reconcile_schedule")
def drop_reconcile_schedule(sender, instance, **kwargs):
    PeriodicTask.objects.filter(task__in=TASKS, args=json.dumps([instance.pk])).delete()
