"""Every environment gets two beat schedules in django-celery-beat: reconcile "changes"
(`reconcile_environment`) and reconcile "sweep" (`sweep_environment`). Both are created with the
environment (default every 5 minutes), enabled and disabled with it, deleted with it, and
otherwise edited in the admin like any schedule (an edited interval is kept)."""

import json

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from pipelinehub.environments.models import Environment

DEFAULT_MINUTES = 5
# Celery task name -> the label that starts its schedule's name.
TASKS = {
    "pipelinehub.sync.reconcile_environment": "reconcile",
    "pipelinehub.sync.sweep_environment": "sweep",
}


def schedule_name(environment, label="reconcile"):
    return f"{label} {environment.pk}: {environment}"


def ensure_schedules(environment, periodic_task=PeriodicTask, interval=IntervalSchedule):
    """Create the environment's missing schedules and make all follow its `enabled`.

    The model classes are parameters so that a data migration can pass its historical ones.
    """
    for task_name, label in TASKS.items():
        task = periodic_task.objects.filter(task=task_name, args=json.dumps([environment.pk]))
        task = task.first()
        if task is None:
            every = _every_five_minutes(interval)
            periodic_task.objects.create(
                name=schedule_name(environment, label),
                task=task_name,
                args=json.dumps([environment.pk]),
                interval=every,
                enabled=environment.enabled,
            )
        elif task.enabled != environment.enabled:
            task.enabled = environment.enabled
            task.save(update_fields=["enabled"])


def _every_five_minutes(interval):
    """The shared interval; not get_or_create, which makes a second row when two environments
    are saved at once and then raises MultipleObjectsReturned at every later save."""
    fields = {"every": DEFAULT_MINUTES, "period": IntervalSchedule.MINUTES}
    return interval.objects.filter(**fields).order_by("pk").first() or interval.objects.create(
        **fields
    )


@receiver(post_save, sender=Environment, dispatch_uid="sync.ensure_reconcile_schedule")
def ensure_reconcile_schedule(sender, instance, **kwargs):
    ensure_schedules(instance)


@receiver(post_delete, sender=Environment, dispatch_uid="sync.drop_reconcile_schedule")
def drop_reconcile_schedule(sender, instance, **kwargs):
    PeriodicTask.objects.filter(task__in=TASKS, args=json.dumps([instance.pk])).delete()
