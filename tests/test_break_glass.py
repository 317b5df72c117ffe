"""Passwords: only local superusers have a password login (the break-glass path at
/admin/login/), every such login is audited, and repeated failures lock the username and the
client address out (django-axes), which no SSO login undoes."""

import io

import pytest
from allauth.socialaccount.models import SocialAccount
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from pipelinehub.accounts.identity import sso_username
from pipelinehub.audit.models import AuditEvent
from tests.oidc.issuer import sso_login

pytest_plugins = ["tests.oidc.fixtures"]
pytestmark = pytest.mark.django_db
PASSWORD = "correct-horse-battery-staple"


def make_user(username, **flags):
    return get_user_model().objects.create_user(username=username, password=PASSWORD, **flags)


def make_sso_superuser(subject):
    """A superuser made through Okta, as the SSO login makes one (the user carries its subject
    until its SocialAccount exists), who was then given a password by hand."""
    user = get_user_model()(username=sso_username(subject), is_staff=True, is_superuser=True)
    user.sso_subject = subject
    user.set_password(PASSWORD)
    user.save()
    SocialAccount.objects.create(user=user, provider="okta", uid=subject)
    return user


def admin_login(client, username, password=PASSWORD, address="127.0.0.1"):
    return client.post(
        "/admin/login/?next=/admin/",
        {"username": username, "password": password},
        REMOTE_ADDR=address,
    )


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


def test_an_sso_login_does_not_reset_the_failures(client, settings, okta, site_url):
    """Someone with a team role cannot interleave their own SSO logins with password guesses:
    the SSO login comes from the same address as the guesses (127.0.0.1)."""
    make_user("root", is_staff=True, is_superuser=True)
    okta.set_users({"mallory": {"groups": ["pipelinehub-alpha-viewer"]}})
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        admin_login(client, "root", "wrong")

    _, page = sso_login(site_url, "mallory")
    assert page.status_code == 200 and "_auth_user_id" not in client.session
    admin_login(client, "root", "wrong")

    assert admin_login(client, "root").status_code == 429


def test_failures_lock_the_username_out_from_any_address(client, settings):
    make_user("root", is_staff=True, is_superuser=True)
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        admin_login(client, "root", "wrong", address=f"10.0.0.{attempt + 1}")

    assert admin_login(client, "root", address="10.0.1.1").status_code == 429
    assert "_auth_user_id" not in client.session


def test_a_break_glass_login_resets_only_its_own_failures(client, settings):
    make_user("root", is_staff=True, is_superuser=True)
    make_user("ops", is_staff=True, is_superuser=True)
    for _ in range(settings.AXES_FAILURE_LIMIT - 2):
        admin_login(client, "ops", "wrong")
    admin_login(client, "root", "wrong")

    assert admin_login(client, "root").status_code == 302
    client.logout()
    assert not AccessAttempt.objects.filter(username="root").exists()
    for _ in range(2):
        admin_login(client, "ops", "wrong", address="10.0.0.2")

    assert admin_login(client, "ops", address="10.0.0.3").status_code == 429


def test_a_superuser_through_okta_has_no_password_login(client):
    make_sso_superuser("pat")

    response = admin_login(client, "okta-pat")

    assert response.status_code == 200 and "correct username and password" in response.text
    assert "_auth_user_id" not in client.session


def test_ensure_admin_looks_for_a_break_glass_superuser_not_for_a_name(monkeypatch):
    monkeypatch.delenv("DJANGO_SUPERUSER_USERNAME", raising=False)
    make_user("root", is_staff=True, is_superuser=True)
    out = io.StringIO()

    call_command("ensure_admin", stdout=out)

    assert "Admin login: root (exists" in out.getvalue()
    assert not get_user_model().objects.filter(username="admin").exists()


def test_ensure_admin_does_not_count_superusers_through_okta(monkeypatch):
    monkeypatch.delenv("DJANGO_SUPERUSER_USERNAME", raising=False)
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)
    make_sso_superuser("pat")

    call_command("ensure_admin", stdout=io.StringIO())

    assert get_user_model().objects.get(username="admin").is_superuser


def test_local_accounts_may_not_take_sso_usernames(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "okta-pat")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)

    with pytest.raises(CommandError, match="belong to Okta identities"):
        call_command("ensure_admin", stdout=io.StringIO())
    with pytest.raises(CommandError, match="belong to Okta identities"):
        call_command("createsuperuser", interactive=False, email="", stdout=io.StringIO())
    lead = make_user("lead")
    lead.username = "okta-lead"
    with pytest.raises(ValidationError, match="belong to Okta identities"):
        lead.save()
    assert not get_user_model().objects.filter(username__startswith="okta-").exists()


def test_the_admin_site_refuses_sso_usernames_for_local_accounts(admin_client):
    response = admin_client.post(
        "/admin/auth/user/add/",
        {
            "username": "okta-pat",
            "password1": PASSWORD,
            "password2": PASSWORD,
            "usable_password": "true",
        },
    )
    assert response.status_code == 200 and "belong to Okta identities" in response.text
    lead = make_user("lead")
    response = admin_client.post(
        f"/admin/auth/user/{lead.pk}/change/",
        {"username": "okta-lead", "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00"},
    )
    assert response.status_code == 200 and "belong to Okta identities" in response.text
    assert not get_user_model().objects.filter(username__startswith="okta-").exists()
