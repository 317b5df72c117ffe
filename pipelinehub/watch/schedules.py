"""Every Redis target gets a beat schedule in django-celery-beat: `watch_target` every minute.
It is created with the target and deleted with it; otherwise edited in the admin like any
schedule (an edited interval is kept). The target is passed as a keyword, so that the schedule
is never mistaken for one of an environment's (those take the environment's id as `args`)."""

import json

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from pipelinehub.environments.models import RedisTarget
from pipelinehub.schedules import ensure_periodic_task

TASK = "pipelinehub.watch.watch_target"
EVERY_SECONDS = 60


def schedule_kwargs(target):
    return json.dumps({"target_pk": target.pk})


def ensure_schedule(target, periodic_task=PeriodicTask, interval=IntervalSchedule):
    ensure_periodic_task(
        periodic_task,
        interval,
        task=TASK,
        identity={"kwargs": schedule_kwargs(target)},
        name=f"health {target.pk}: {target.name}",
        every=(EVERY_SECONDS, IntervalSchedule.SECONDS),
        # A probe that waited longer than its interval in the queue is stale: the next is due.
        expire_seconds=EVERY_SECONDS,
    )


@receiver(post_save, sender=RedisTarget, dispatch_uid="watch.ensure_health_schedule")
def ensure_health_schedule(sender, instance, **kwargs):
    ensure_schedule(instance)


@receiver(post_delete, sender=RedisTarget, dispatch_uid="watch.drop_health_schedule")
def drop_health_schedule(sender, instance, **kwargs):
    PeriodicTask.objects.filter(task=TASK, kwargs=schedule_kwargs(instance)).delete()
