"""Celery tasks: the flush of a team's events (enqueued once per grouping window by
`service.schedule_flush_if_pending`) and the delivery of each message, retried by Celery with
exponential backoff until the receiver takes it or the retries run out."""

import logging
from datetime import timedelta

from celery import Task, shared_task
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from . import sending, service
from .models import Delivery

logger = logging.getLogger(__name__)

RETRY_BACKOFF = settings.ALERT_RETRY_BACKOFF_SECONDS
RETRY_BACKOFF_MAX = 600


@shared_task(name="pipelinehub.alerts.flush_team", ignore_result=True)
def flush_team(team_id):
    for delivery_id in service.flush(team_id):
        deliver.delay(delivery_id)


class DeliveryTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo):
        """The retries ran out (or something unexpected broke): the delivery is `failed`, and
        the admin lists it with its last error and can retry it."""
        error = str(exc) if isinstance(exc, sending.DeliveryFailed) else type(exc).__name__
        Delivery.objects.filter(pk=args[0]).exclude(status=Delivery.Status.SENT).update(
            status=Delivery.Status.FAILED, last_error=error[:300], next_attempt_at=None
        )
        logger.error("delivery %s failed for good: %s", args[0], error)


@shared_task(
    bind=True,
    base=DeliveryTask,
    name="pipelinehub.alerts.deliver",
    ignore_result=True,
    acks_late=True,
    autoretry_for=(sending.DeliveryFailed,),
    retry_backoff=RETRY_BACKOFF,
    retry_backoff_max=RETRY_BACKOFF_MAX,
    retry_jitter=False,
    max_retries=settings.ALERT_DELIVERY_RETRIES,
)
def deliver(self, delivery_id):
    """Send one delivery; `sent` only after the receiver answered 2xx. A delivery already sent
    (a redelivered task, a retry from the admin that raced the worker) is not sent again."""
    delivery = (
        Delivery.objects.select_related("target__team", "target__signing_secret")
        .filter(pk=delivery_id)
        .first()
    )
    if delivery is None or delivery.status == Delivery.Status.SENT:
        return
    attempted = Delivery.objects.filter(pk=delivery_id)
    if not delivery.target.enabled:
        attempted.update(status=Delivery.Status.FAILED, last_error="the target is disabled")
        return
    attempted.update(attempts=F("attempts") + 1)
    try:
        sending.deliver(delivery)
    except sending.DeliveryFailed as exc:
        retries = self.request.retries
        later = None
        if retries < self.max_retries:
            countdown = get_exponential_backoff_interval(
                RETRY_BACKOFF, retries, RETRY_BACKOFF_MAX, full_jitter=False
            )
            later = timezone.now() + timedelta(seconds=countdown)
        attempted.update(last_error=str(exc)[:300], next_attempt_at=later)
        logger.warning("delivery %s attempt %d failed: %s", delivery_id, retries + 1, exc)
        raise
    attempted.update(
        status=Delivery.Status.SENT, sent_at=timezone.now(), next_attempt_at=None, last_error=""
    )
