"""What the admin shows of a target's health: its newest snapshot's alerts, nodes and
environments, and the chart of the last day."""

from dataclasses import dataclass
from datetime import timedelta

from pipelinehub.environments.models import Environment
from pipelinehub.state.vocabulary import meta_time

from .alerts import CRITICAL, INFO, WARNING
from .chart import WINDOW, HealthChart, health_chart
from .models import HealthSnapshot

# Beat schedules a snapshot every minute: one older than this means beat or the workers stopped.
STALE_AFTER = timedelta(minutes=5)
SEVERITY_ORDER = (CRITICAL, WARNING, INFO)


@dataclass
class EnvironmentRow:
    environment: Environment
    keys: int | None
    keys_exact: bool
    memory: int | None
    inflight: int | None
    last_reconcile: object
    error: str


@dataclass
class TargetReport:
    target: object
    snapshot: HealthSnapshot | None
    stale: bool
    alerts: list
    environments: list
    chart: HealthChart


def target_report(target, now):
    snapshot = HealthSnapshot.objects.filter(target=target).first()
    rows = HealthSnapshot.objects.filter(target=target, taken_at__gte=now - WINDOW).values_list(
        "taken_at", "used_memory", "maxmemory", "evictions"
    )
    return TargetReport(
        target,
        snapshot,
        stale=snapshot is None or now - snapshot.taken_at > STALE_AFTER,
        alerts=sorted(
            snapshot.alerts if snapshot else [],
            key=lambda alert: SEVERITY_ORDER.index(alert["severity"]),
        ),
        environments=environment_rows(target, snapshot),
        chart=health_chart(rows, now),
    )


def environment_rows(target, snapshot):
    usage = snapshot.probe.get("environments", {}) if snapshot else {}
    rows = []
    for environment in target.environments.all():
        held = usage.get(str(environment.pk), {})
        rows.append(
            EnvironmentRow(
                environment,
                held.get("keys"),
                held.get("keys_exact", True),
                held.get("memory"),
                held.get("inflight_flow"),
                meta_time(held.get("last_reconcile")),
                held.get("error", "" if held else "not probed yet"),
            )
        )
    return sorted(rows, key=lambda row: -(row.memory or 0))
