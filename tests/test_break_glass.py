"""Passwords: only superusers have a local login (the break-glass path at /admin/login/), every
such login is audited, and repeated failures lock the client out (django-axes)."""

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model

from pipelinehub.audit.models import AuditEvent

pytestmark = pytest.mark.django_db
PASSWORD = "correct-horse-battery-staple"


def make_user(username, **flags):
    return get_user_model().objects.create_user(username=username, password=PASSWORD, **flags)


def admin_login(client, username, password=PASSWORD):
    return client.post("/admin/login/?next=/admin/", {"username": username, "password": password})


def test_superuser_break_glass_login_works_and_is_audited(client):
    root = make_user("root", is_staff=True, is_superuser=True)
    response = admin_login(client, "root", PASSWORD)
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    event = AuditEvent.objects.get(action="login.break_glass")
    assert event.actor == root and event.object_id == str(root.pk) and event.request_id
    assert PASSWORD not in str(event.before) + str(event.after) + event.message


@pytest.mark.parametrize("flags", [{"is_staff": True}, {}], ids=["staff", "plain"])
def test_password_login_is_refused_for_everyone_else(client, flags):
    make_user("lead", **flags)
    response = admin_login(client, "lead")
    assert response.status_code == 200 and "correct username and password" in response.text
    assert "_auth_user_id" not in client.session
    assert not AuditEvent.objects.filter(action="login.break_glass").exists()


def test_allauth_password_login_is_off(client):
    make_user("lead")
    response = client.post("/accounts/login/", {"login": "lead", "password": PASSWORD})
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session


def test_repeated_failures_lock_the_client_out(client, settings):
    make_user("root", is_staff=True, is_superuser=True)
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        admin_login(client, "root", "wrong")
    assert admin_login(client, "root").status_code == 302  # under the limit
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        admin_login(client, "root", "wrong")
    response = admin_login(client, "root")  # even the right password now
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    assert AccessAttempt.objects.filter(username="root").exists()
