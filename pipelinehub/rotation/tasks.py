"""Celery tasks: `rotate_target` (beat, per target, see rotation.schedules; and the admin's
"Rotate password now") and the delayed `retire_old_passwords` it queues."""

import logging

from celery import shared_task
from django.conf import settings
from django.contrib.auth import get_user_model

from pipelinehub.environments.models import RedisTarget

from . import service

logger = logging.getLogger(__name__)
# A retire that finds the target's lock taken tries again; a lock left by a killed process
# expires within state.rotation.LOCK_SECONDS.
BUSY_RETRY_SECONDS = 60
BUSY_RETRIES = 30


# Every step is idempotent, so a task whose worker died is delivered again (acks_late) and
# continues the rotation it left, rather than leaving it stalled until the next schedule.
@shared_task(
    name="pipelinehub.rotation.rotate_target",
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
)
def rotate_target(target_pk, actor_pk=None, trigger="beat"):
    """Rotate the passwords of the target's own user and of every environment ACL user on it,
    then queue the removal of the old ones after ROTATION_GRACE_SECONDS. A deleted target is
    skipped; a refused or concurrent rotation is logged (and the refusal audited)."""
    target = RedisTarget.objects.filter(pk=target_pk).first()
    if target is None:
        return
    actor = get_user_model().objects.filter(pk=actor_pk).first() if actor_pk else None
    try:
        rotations = service.rotate(target, actor=actor, trigger=trigger)
    except (service.RotationBusy, service.RotationRefused) as exc:
        logger.warning("Password rotation of %s not started: %s", target, exc)
        return
    schedule_retire(target, rotations)


def schedule_retire(target, rotations):
    """Queue the second phase when any rotation is waiting for it."""
    if any(rotation.status == rotation.Status.WAITING for rotation in rotations):
        retire_old_passwords.apply_async((target.pk,), countdown=settings.ROTATION_GRACE_SECONDS)


@shared_task(
    bind=True,
    name="pipelinehub.rotation.retire_old_passwords",
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
)
def retire_old_passwords(task, target_pk):
    """The grace period is over: remove the old passwords from every node and persist."""
    target = RedisTarget.objects.filter(pk=target_pk).first()
    if target is None:
        return
    try:
        service.retire(target)
    except service.RotationBusy as exc:
        logger.warning("Old passwords of %s not removed yet: %s", target, exc)
        raise task.retry(countdown=BUSY_RETRY_SECONDS, max_retries=BUSY_RETRIES) from None
