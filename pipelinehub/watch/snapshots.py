"""Taking a target's snapshot: probe Redis (`state.health`), add what the database knows of its
environments, raise the alerts against the previous snapshot, store it, and forget snapshots
older than HEALTH_SNAPSHOT_RETENTION."""

import json
import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from pipelinehub.rotation.service import failed_rotations
from pipelinehub.state.health import probe_target
from pipelinehub.state.vocabulary import meta_time
from pipelinehub.sync.schedules import DEFAULT_MINUTES, TASKS

from .alerts import EnvironmentFacts, TargetFacts, evaluate, evictions, primary_of
from .models import HealthSnapshot

log = logging.getLogger(__name__)

DEFAULT_RECONCILE = timedelta(minutes=DEFAULT_MINUTES)
RECONCILE_TASK = next(name for name, label in TASKS.items() if label == "reconcile")


def take_snapshot(target, now=None):
    """Probe `target` and store its snapshot with its alerts; returns the snapshot."""
    now = now or timezone.now()
    environments = list(target.environments.select_related("team"))
    previous = HealthSnapshot.objects.filter(target=target, taken_at__lt=now).first()
    probe = probe_target(target, {str(env.pk): env.key_prefix for env in environments})
    facts = environment_facts(environments, previous, now)
    for entry in facts:
        probe["environments"][entry.key]["watched_since"] = entry.watched_since.isoformat()
    alerts = evaluate(probe, previous.probe if previous else None, target_facts(target), facts, now)
    snapshot = HealthSnapshot.objects.create(
        target=target,
        taken_at=now,
        probe=probe,
        alerts=[alert.as_dict() for alert in alerts],
        **_primary_columns(probe, previous),
    )
    forget_old(target, now)
    log.info(
        "health target=%s reachable=%s alerts=%s",
        target.pk,
        probe["reachable"],
        ",".join(alert.code for alert in alerts) or "none",
    )
    return snapshot


def _primary_columns(probe, previous):
    if not probe["reachable"]:
        return {"reachable": False}
    primary = probe["nodes"][0]
    return {
        "reachable": True,
        "used_memory": primary["used_memory"],
        "maxmemory": primary["maxmemory"],
        "policy": primary["policy"],
        "evicted_keys": primary["evicted_keys"],
        "evictions": evictions(primary, primary_of(previous.probe if previous else None)),
    }


def target_facts(target):
    return TargetFacts(
        hosts=(target.host, *(host for host, _ in target.replica_nodes)),
        tls=target.tls,
        failed_rotations=tuple(failed_rotations(target).values_list("username", "step")),
    )


def environment_facts(environments, previous, now):
    """Each environment with its reconcile interval and since when the watch has seen it."""
    intervals = reconcile_intervals(environments)
    seen = previous.probe.get("environments", {}) if previous else {}
    facts = []
    for environment in environments:
        key = str(environment.pk)
        since = meta_time(seen.get(key, {}).get("watched_since")) or now
        facts.append(
            EnvironmentFacts(key, str(environment), environment.enabled, intervals[key], since)
        )
    return facts


def reconcile_intervals(environments):
    """{environment key: the interval of its reconcile ("changes") beat schedule}. A crontab
    schedule, or none at all, counts as the default interval: an enabled environment that is
    not reconciled is what the alert is for, whatever stopped it."""
    args = {json.dumps([environment.pk]): str(environment.pk) for environment in environments}
    intervals = dict.fromkeys(args.values(), DEFAULT_RECONCILE)
    tasks = PeriodicTask.objects.filter(task=RECONCILE_TASK, args__in=args, interval__isnull=False)
    for task in tasks.select_related("interval"):
        intervals[args[task.args]] = task.interval.schedule.run_every
    return intervals


def forget_old(target, now):
    """Delete the target's snapshots older than the retention."""
    cutoff = now - settings.HEALTH_SNAPSHOT_RETENTION
    return HealthSnapshot.objects.filter(target=target, taken_at__lt=cutoff).delete()[0]
