"""The admin's list pages run as many queries with 300 rows as with 10 (as NetBox's test
utilities check): a query per row, through a relation that the list does not load with its rows,
makes a page of a few hundred objects slow."""

import itertools

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext

from pipelinehub.accounts.models import Membership, PlatformMapping, RoleMapping
from pipelinehub.alerts.models import Alert, Delivery, Event, NotificationTarget
from pipelinehub.audit.models import AuditEvent
from pipelinehub.credentials.models import SecretRef
from pipelinehub.detection.models import DetectionSettings, FlowLimit
from pipelinehub.environments.models import Environment, PrefectWorkspace, RedisTarget, Team
from pipelinehub.rotation.models import PasswordRotation
from pipelinehub.sync.models import ReconcileReport
from pipelinehub.watch.models import HealthSnapshot

pytestmark = pytest.mark.django_db

FEW, MANY = 10, 300
_seq = itertools.count()


def _names(prefix, n):
    return [f"{prefix}{next(_seq)}" for _ in range(n)]


def secrets(n):
    return SecretRef.objects.bulk_create(SecretRef(name=name) for name in _names("secret/", n))


def teams(n):
    return Team.objects.bulk_create(Team(slug=slug, name=slug) for slug in _names("team", n))


def workspaces(n):
    return PrefectWorkspace.objects.bulk_create(
        PrefectWorkspace(name=name, api_url="http://127.0.0.1:4200/api", api_key=key)
        for name, key in zip(_names("ws", n), secrets(n), strict=True)
    )


def targets(n):
    return RedisTarget.objects.bulk_create(
        RedisTarget(name=name, host="127.0.0.1", port=6379, password=password)
        for name, password in zip(_names("redis", n), secrets(n), strict=True)
    )


def environments(n):
    """Each with a team, a workspace and a target of its own, so that nothing is shared."""
    rows = zip(teams(n), workspaces(n), targets(n), strict=True)
    return Environment.objects.bulk_create(
        Environment(
            team=team,
            slug="dev",
            workspace=ws,
            redis_target=target,
            key_prefix=f"ph:{{{team.slug}}}:",
        )
        for team, ws, target in rows
    )


def users(n):
    return get_user_model().objects.bulk_create(
        get_user_model()(username=name) for name in _names("user", n)
    )


def audit_events(n):
    return AuditEvent.objects.bulk_create(
        AuditEvent(actor=user, actor_name=user.username, action="team.change") for user in users(n)
    )


def reconcile_reports(n):
    return ReconcileReport.objects.bulk_create(
        ReconcileReport(environment=environment, trigger="beat") for environment in environments(n)
    )


def health_snapshots(n):
    return HealthSnapshot.objects.bulk_create(
        HealthSnapshot(target=target, reachable=True, used_memory=1, maxmemory=2, probe={})
        for target in targets(n)
    )


def role_mappings(n):
    return RoleMapping.objects.bulk_create(
        RoleMapping(group=f"g-{team.slug}", team=team, role="viewer") for team in teams(n)
    )


def platform_mappings(n):
    groups = Group.objects.bulk_create(Group(name=name) for name in _names("group", n))
    return PlatformMapping.objects.bulk_create(
        PlatformMapping(group=group.name, permission_group=group) for group in groups
    )


def memberships(n):
    return Membership.objects.bulk_create(
        Membership(user=user, team=team, role="viewer")
        for user, team in zip(users(n), teams(n), strict=True)
    )


def alerts(n):
    return Alert.objects.bulk_create(
        Alert(
            environment=environment,
            run_id=str(environment.pk),
            kind="runaway",
            reason="r",
            started_at="2026-11-01T00:00:00Z",
            acknowledged_by=user,
        )
        for environment, user in zip(environments(n), users(n), strict=True)
    )


def alert_events(n):
    return Event.objects.bulk_create(
        Event(alert=alert, team_id=alert.environment.team_id, type="started") for alert in alerts(n)
    )


def notification_targets(n):
    return NotificationTarget.objects.bulk_create(
        NotificationTarget(team=team, name="hook", url="http://127.0.0.1/", signing_secret=secret)
        for team, secret in zip(teams(n), secrets(n), strict=True)
    )


def deliveries(n):
    rows = Delivery.objects.bulk_create(Delivery(target=t) for t in notification_targets(n))
    for delivery, event in zip(rows, alert_events(n), strict=True):
        delivery.events.add(event)
    return rows


def password_rotations(n):
    return PasswordRotation.objects.bulk_create(
        PasswordRotation(target=target, username="default") for target in targets(n)
    )


def detection_settings(n):
    return DetectionSettings.objects.bulk_create(
        DetectionSettings(environment=environment) for environment in environments(n)
    )


def flow_limits(n):
    return FlowLimit.objects.bulk_create(
        FlowLimit(settings=settings, flow="etl", limit="01:00:00")
        for settings in detection_settings(n)
    )


BUILDERS = {
    Team: teams,
    Environment: environments,
    RedisTarget: targets,
    PasswordRotation: password_rotations,
    PrefectWorkspace: workspaces,
    SecretRef: secrets,
    AuditEvent: audit_events,
    ReconcileReport: reconcile_reports,
    HealthSnapshot: health_snapshots,
    RoleMapping: role_mappings,
    PlatformMapping: platform_mappings,
    Membership: memberships,
    Alert: alerts,
    Event: alert_events,
    NotificationTarget: notification_targets,
    Delivery: deliveries,
    DetectionSettings: detection_settings,
    FlowLimit: flow_limits,
}


def test_every_admin_list_of_ours_is_counted():
    ours = {model for model in admin.site._registry if model.__module__.startswith("pipelinehub.")}
    assert ours == set(BUILDERS)


def changelist_queries(client, model):
    url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


@pytest.mark.parametrize("model", list(BUILDERS), ids=lambda model: model._meta.label)
def test_a_list_page_runs_as_many_queries_for_many_rows_as_for_few(admin_client, model):
    BUILDERS[model](FEW)
    few = changelist_queries(admin_client, model)
    BUILDERS[model](MANY - FEW)
    many = changelist_queries(admin_client, model)
    assert many == few, f"{model._meta.label}: {few} queries for {FEW} rows, {many} for {MANY}"
