"""Admin actions are offered only to whom the model's permissions allow: an action without
`allowed_permissions` is offered to anyone who may merely view the list."""

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django_celery_beat.models import IntervalSchedule, PeriodicTask

pytestmark = pytest.mark.django_db


def registered_actions():
    for model, model_admin in admin.site._registry.items():
        for function, name, _ in model_admin._get_base_actions():
            yield f"{model._meta.label}.{name}", function


def test_every_action_declares_the_permissions_it_needs():
    """Ours, the libraries', and any added later (the walk covers every registered admin)."""
    undeclared = [
        label
        for label, function in registered_actions()
        if not getattr(function, "allowed_permissions", None)
    ]
    assert undeclared == []


def test_the_walk_sees_the_actions_that_change_what_runs():
    labels = {label for label, _ in registered_actions()}
    assert {
        "environments.Environment.create_or_update_acl_user",
        "environments.RedisTarget.remove_orphaned_acl_users",
        "django_celery_beat.PeriodicTask.run_tasks",
        "django_celery_beat.PeriodicTask.enable_tasks",
        "axes.AccessAttempt.cleanup_expired_attempts",
    } <= labels


def staff_with(client, *codenames):
    user = get_user_model().objects.create_user(username="staff", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(user, backend="pipelinehub.accounts.backends.SingleSignOnBackend")
    return user


@pytest.fixture
def disabled_task():
    every = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.HOURS)
    return PeriodicTask.objects.create(
        name="nightly", task="pipelinehub.sync.reconcile_environment", interval=every, enabled=False
    )


def enable(client, task):
    return client.post(
        "/admin/django_celery_beat/periodictask/",
        {"action": "enable_tasks", "_selected_action": [task.pk]},
        follow=True,
    )


def test_staff_who_may_only_view_schedules_cannot_enable_them(client, disabled_task):
    staff_with(client, "view_periodictask")
    page = client.get("/admin/django_celery_beat/periodictask/").content.decode()
    assert "enable_tasks" not in page and "run_tasks" not in page
    enable(client, disabled_task)
    disabled_task.refresh_from_db()
    assert not disabled_task.enabled


def test_staff_who_may_change_schedules_can_enable_them(client, disabled_task):
    staff_with(client, "view_periodictask", "change_periodictask")
    response = enable(client, disabled_task)
    assert "1 task was successfully enabled" in response.content.decode()
    disabled_task.refresh_from_db()
    assert disabled_task.enabled
