"""The alerts service: what the detectors call, what operators do, how events are grouped.

`reconcile_alerts` is called by the detection task every 30 s per environment with every flag it
sees: it opens alerts for new flags, clears those no longer flagged and records one event for
each start and end, so that calling it again with the same flags changes nothing. Events of one
team are grouped: the first schedules one flush of the team `ALERT_GROUP_SECONDS` later (a cache
`add`, which is Redis `SET NX EX`: enqueued once, whatever number of events and processes), and
that flush makes one delivery per target (docs/alerts.md).
"""

import logging
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from pipelinehub.audit.service import action_name, record, snapshot
from pipelinehub.environments.models import Environment
from pipelinehub.state import flags as flag_kinds

from .models import Alert, Delivery, Event, NotificationTarget

logger = logging.getLogger(__name__)

OPEN_KINDS = (flag_kinds.RUNAWAY, flag_kinds.STUCK, flag_kinds.LATE)
FLUSH_MARKER = "pipelinehub:alerts:flush-scheduled:{team_id}"
MAX_SILENCE = timedelta(days=7)
# A delivery never tried this long after its flush made it was never queued (the flush's worker
# died between its commit and queueing the delivery tasks).
STRANDED_AFTER = timedelta(minutes=5)


def group_seconds():
    return settings.ALERT_GROUP_SECONDS


def reconcile_alerts(environment, flags, failed=()):
    """Make the open alerts of `environment` match `flags` (its current runaway, stuck and late
    flags), and announce each run of `failed` once. Idempotent; passes that overlap are
    serialized by a lock on the environment's row, and the unique constraints back it up."""
    now = timezone.now()
    current = {(flag.run_id, flag.kind): flag for flag in flags if flag.kind in OPEN_KINDS}
    with transaction.atomic():
        Environment.objects.select_for_update(of=("self",)).filter(pk=environment.pk).first()
        open_alerts = {
            (alert.run_id, alert.kind): alert
            for alert in Alert.objects.filter(
                environment=environment, cleared_at__isnull=True, kind__in=OPEN_KINDS
            ).select_related("environment")
        }
        for key, alert in open_alerts.items():
            if key not in current:
                _clear(alert, now)
            elif alert.reason != current[key].reason:
                alert.reason = current[key].reason[:300]
                alert.save(update_fields=["reason"])
        for key, flag in current.items():
            if key not in open_alerts:
                _open(environment, flag, now)
        for flag in failed:
            _announce_failure(environment, flag, now)
        team_id = environment.team_id
        transaction.on_commit(lambda: schedule_flush_if_pending(team_id))
        transaction.on_commit(lambda: resend_stranded(team_id))


def _open(environment, flag, now):
    alert = Alert.objects.create(environment=environment, **_alert_fields(flag))
    _event(alert, Event.Type.STARTED, now)
    logger.info("alert opened: %s %s in %s", flag.kind, flag.run_id, environment)


def _clear(alert, now):
    alert.cleared_at = now
    alert.save(update_fields=["cleared_at"])
    _event(alert, Event.Type.CLEARED, now)
    logger.info("alert cleared: %s %s in %s", alert.kind, alert.run_id, alert.environment)


def _announce_failure(environment, flag, now):
    fields = _alert_fields(flag)
    fields["cleared_at"] = fields["started_at"]  # a one-shot: never open, never cleared
    alert, created = Alert.objects.get_or_create(
        environment=environment,
        run_id=flag.run_id,
        kind=flag_kinds.FAILED,
        started_at=fields.pop("started_at"),
        defaults=fields,
    )
    if created:
        _event(alert, Event.Type.STARTED, now)


def _alert_fields(flag):
    return {
        "run_id": flag.run_id,
        "kind": flag.kind,
        "reason": flag.reason[:300],
        "run_name": flag.run_name[:200],
        "flow_name": flag.flow_name[:200],
        "deployment": flag.deployment[:200],
        "started_at": datetime.fromtimestamp(flag.since_micros / 1_000_000, tz=UTC),
    }


def _event(alert, event_type, now):
    Event.objects.create(
        alert=alert,
        team_id=alert.environment.team_id,
        type=event_type,
        created_at=now,
        suppressed=alert.silenced_at(now),
    )


def pending_events(team_id):
    return Event.objects.filter(team_id=team_id, grouped_at__isnull=True, suppressed=False)


def schedule_flush_if_pending(team_id):
    """Enqueue one flush of the team's events in `ALERT_GROUP_SECONDS`, unless one is already
    scheduled. Also the safety net: any pending event left by a flush that was never enqueued
    (the broker was down) gets one at the next detection pass."""
    if not pending_events(team_id).exists():
        return False
    from .tasks import flush_team

    window = group_seconds()
    # The marker outlives the window a little, so that a late worker cannot be doubled; a flush
    # deletes it first thing, so events after that schedule the next one.
    if not cache.add(FLUSH_MARKER.format(team_id=team_id), 1, timeout=int(window) + 30):
        return False
    try:
        flush_team.apply_async(args=[team_id], countdown=window)
    except Exception:
        cache.delete(FLUSH_MARKER.format(team_id=team_id))
        logger.exception("flush of team %s not enqueued; the next detection pass retries", team_id)
        return False
    return True


def flush(team_id):
    """Put the team's pending events into one delivery per enabled target; the ids of the
    deliveries to send. With no target, the events are grouped and go nowhere."""
    cache.delete(FLUSH_MARKER.format(team_id=team_id))
    now = timezone.now()
    with transaction.atomic():
        events = list(
            pending_events(team_id)
            .select_for_update(skip_locked=True, of=("self",))
            .select_related("alert")
        )
        silenced = [event.pk for event in events if event.alert.silenced_at(now)]
        events = [event for event in events if event.pk not in silenced]
        Event.objects.filter(pk__in=silenced).update(suppressed=True)
        if not events:
            return []
        Event.objects.filter(pk__in=[event.pk for event in events]).update(grouped_at=now)
        deliveries = []
        for target in NotificationTarget.objects.filter(team_id=team_id, enabled=True):
            delivery = Delivery.objects.create(target=target, created_at=now)
            delivery.events.set(events)
            deliveries.append(delivery.pk)
    logger.info(
        "team %s: %d events grouped into %d deliveries", team_id, len(events), len(deliveries)
    )
    return deliveries


def resend_stranded(team_id):
    """Queue again the team's deliveries that a flush made but never queued. Should one of them
    be queued twice after all, its receiver can drop the repeat: every attempt carries the same
    X-PipelineHub-Delivery id."""
    from .tasks import deliver

    stranded = Delivery.objects.filter(
        target__team_id=team_id,
        status=Delivery.Status.PENDING,
        attempts=0,
        created_at__lt=timezone.now() - STRANDED_AFTER,
    ).values_list("pk", flat=True)
    for delivery_id in stranded:
        logger.warning("delivery %s was never queued; queueing it now", delivery_id)
        deliver.delay(delivery_id)


# Operators' actions


def acknowledge(alert, *, user, request=None):
    """Someone is on it: recorded on the alert and in the audit log; it still clears as usual."""
    before = snapshot(alert)
    alert.acknowledged_at = timezone.now()
    alert.acknowledged_by = user
    alert.save(update_fields=["acknowledged_at", "acknowledged_by"])
    record(
        action_name(alert, "acknowledge"),
        alert,
        request=request,
        actor=user,
        before=before,
        after=snapshot(alert),
    )


def silence(alert, duration, *, user, request=None):
    """Nothing about this alert is sent until `duration` has passed (at most a week); a zero
    duration ends a silence."""
    if not timedelta(0) <= duration <= MAX_SILENCE:
        raise ValueError("A silence lasts from 0 minutes to 7 days.")
    before = snapshot(alert)
    alert.silenced_until = timezone.now() + duration if duration else None
    alert.silenced_by = user if duration else None
    alert.save(update_fields=["silenced_until", "silenced_by"])
    verb = "silence" if duration else "unsilence"
    record(
        action_name(alert, verb),
        alert,
        request=request,
        actor=user,
        before=before,
        after=snapshot(alert),
    )
