from celery import shared_task

from pipelinehub.environments.models import RedisTarget

from .schedules import TASK
from .snapshots import take_snapshot


@shared_task(name=TASK, ignore_result=True)
def watch_target(target_pk):
    """Scheduled every minute per target by beat (see watch.schedules); a deleted target is
    skipped."""
    target = RedisTarget.objects.filter(pk=target_pk).first()
    if target is not None:
        take_snapshot(target)
