import importlib

import pytest
from django.apps import apps
from django.contrib import admin
from django_celery_beat.models import IntervalSchedule

from pipelinehub.audit.models import AuditEvent
from pipelinehub.audit.service import ACTION_NAME, action_name, record
from pipelinehub.environments.models import Team

pytestmark = pytest.mark.django_db
renaming = importlib.import_module("pipelinehub.audit.migrations.0002_action_names_object_verb")


@pytest.fixture(autouse=True)
def written_actions_follow_the_scheme():
    """Every event the tests below make the code write is named `<object>.<verb>`."""
    yield
    assert all(ACTION_NAME.match(a) for a in AuditEvent.objects.values_list("action", flat=True))


def test_admin_add_change_delete_are_recorded_with_snapshots(admin_client):
    admin_client.post(
        "/admin/environments/team/add/",
        {"slug": "data", "name": "Data", **_empty_inline("environments")},
        HTTP_X_REQUEST_ID="req-123",
    )
    team = Team.objects.get(slug="data")
    admin_client.post(
        f"/admin/environments/team/{team.pk}/change/",
        {"slug": "data", "name": "Data platform", **_empty_inline("environments")},
    )
    admin_client.post(f"/admin/environments/team/{team.pk}/delete/", {"post": "yes"})

    added, changed, deleted = AuditEvent.objects.filter(object_type="environments.team").order_by(
        "id"
    )
    assert (added.action, added.actor_name, added.request_id) == ("team.add", "admin", "req-123")
    assert added.after["name"] == "Data"
    assert (changed.before["name"], changed.after["name"]) == ("Data", "Data platform")
    assert changed.action == "team.change"
    assert deleted.action == "team.delete" and deleted.before["name"] == "Data platform"
    assert deleted.object_id == str(team.pk)


def test_bulk_delete_action_records_each_object(admin_client):
    teams = [Team.objects.create(slug=f"t{i}", name=f"T{i}") for i in range(3)]
    admin_client.post(
        "/admin/environments/team/",
        {"action": "delete_selected", "_selected_action": [t.pk for t in teams], "post": "yes"},
    )
    assert not Team.objects.exists()
    assert AuditEvent.objects.filter(action="team.delete").count() == 3


def test_secrets_are_redacted_in_snapshots(admin_client):
    admin_client.post(
        "/admin/environments/redistarget/add/",
        {
            "name": "main",
            "host": "127.0.0.1",
            "port": "6379",
            "db": "0",
            "tls_verify": "required",
            "new_password": "hunter2-redis",
        },
    )
    events = AuditEvent.objects.all()
    assert events.filter(object_type="environments.redistarget", action="redistarget.add").exists()
    for event in events:
        assert "hunter2" not in str(event.before) + str(event.after) + event.message


def test_library_admins_are_audited_too(admin_client):
    """Schedules (django-celery-beat) and users (auth) are registered by their libraries."""
    admin_client.post(
        "/admin/django_celery_beat/intervalschedule/add/",
        {"every": "5", "period": "minutes", **_empty_inline("periodictask_set")},
    )
    assert IntervalSchedule.objects.filter(every=5).exists()
    event = AuditEvent.objects.get(object_type="django_celery_beat.intervalschedule")
    assert event.action == "intervalschedule.add" and event.after["every"] == 5

    admin_client.post(
        "/admin/auth/user/add/",
        {
            "username": "lead",
            "password1": "Very-long-pass-123",
            "password2": "Very-long-pass-123",
            "usable_password": "true",
        },
    )
    event = AuditEvent.objects.get(object_type="auth.user", action="user.add")
    assert event.after["password"] == "[redacted]"


def test_audit_log_is_read_only_in_the_admin(admin_client):
    event = AuditEvent.objects.create(action="auditevent.test")
    assert admin_client.get("/admin/audit/auditevent/add/").status_code == 403
    assert (
        admin_client.post(
            f"/admin/audit/auditevent/{event.pk}/delete/", {"post": "yes"}
        ).status_code
        == 403
    )
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_admin_actions_of_every_registered_model_follow_the_scheme():
    for model in admin.site._registry:
        for verb in ("add", "change", "delete"):
            assert ACTION_NAME.match(action_name(model, verb)), model
    assert action_name(Team(), "change") == "team.change"
    assert action_name("flow_run", "retry") == "flow_run.retry"


def test_record_refuses_a_name_outside_the_scheme():
    for action in ("change", "flow_run_retry", "Team.add", "team.add.now"):
        with pytest.raises(ValueError, match="<object>.<verb>"):
            record(action)
    assert not AuditEvent.objects.exists()


OLD_AND_NEW = [
    ("add", "environments.team", "team.add"),
    ("change", "environments.environment", "environment.change"),
    ("delete", "accounts.membership", "membership.delete"),
    ("add", "django_celery_beat.periodictask", "periodictask.add"),
    ("acl_user", "environments.environment", "environment.provision_acl_user"),
    ("flow_run_retry", "prefect.flow_run", "flow_run.retry"),
    ("flow_run_cancel", "prefect.flow_run", "flow_run.cancel"),
    ("rotate_encryption_keys", "credentials.secretref", "secret.rotate_encryption_keys"),
    ("membership.add", "accounts.membership", "membership.add"),
    ("membership.change", "accounts.membership", "membership.change"),
    ("membership.remove", "accounts.membership", "membership.remove"),
    ("login.break_glass", "auth.user", "login.break_glass"),
]


def test_the_migration_renames_stored_actions_and_back():
    events = [
        AuditEvent.objects.create(action=old, object_type=type_) for old, type_, _ in OLD_AND_NEW
    ]

    renaming.forwards(apps, None)
    assert [AuditEvent.objects.get(pk=e.pk).action for e in events] == [n for *_, n in OLD_AND_NEW]

    renaming.backwards(apps, None)
    assert [AuditEvent.objects.get(pk=e.pk).action for e in events] == [o for o, *_ in OLD_AND_NEW]
    AuditEvent.objects.all().delete()  # the old names, only for this test


def _empty_inline(prefix):
    return {
        f"{prefix}-TOTAL_FORMS": "0",
        f"{prefix}-INITIAL_FORMS": "0",
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }
