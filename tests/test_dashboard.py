"""The dashboard pages: what each member sees, and the team-admin settings page."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model

from pipelinehub.accounts.models import Membership
from pipelinehub.audit.models import AuditEvent
from pipelinehub.environments.models import Environment
from tests import factories

pytestmark = pytest.mark.django_db
SSO_BACKEND = "pipelinehub.accounts.backends.SingleSignOnBackend"


@pytest.fixture
def envs():
    own = factories.environment(factories.team("alpha"), "dev")
    other = factories.environment(factories.team("beta"), "secret-env")
    return own, other


def member(client, role, team):
    user = get_user_model().objects.create_user(username=f"{role}-user")
    Membership.objects.create(user=user, team=team, role=role)
    client.force_login(user, backend=SSO_BACKEND)
    return user


def url(environment):
    return f"/environments/{environment.team.slug}/{environment.slug}/settings/"


def test_home_lists_only_the_teams_environments(client, envs):
    own, other = envs
    member(client, "viewer", own.team)
    page = client.get("/").content.decode()
    assert own.team.name in page and "dev" in page
    assert other.team.name not in page and "secret-env" not in page
    assert url(own) not in page  # viewers get no settings link


def test_team_admin_changes_settings_and_it_is_audited(client, envs):
    own, _ = envs
    member(client, "admin", own.team)
    assert url(own) in client.get("/").content.decode()
    response = client.post(url(own), {"finished_run_ttl": "2 00:00:00", "key_prefix": "ph:x:"})
    assert response.status_code == 302
    own.refresh_from_db()
    assert own.finished_run_ttl == timedelta(days=2) and own.enabled is False
    assert own.key_prefix == "ph:{alpha.dev}:"  # not editable here
    event = AuditEvent.objects.get(object_type="environments.environment")
    assert (event.actor_name, event.action) == ("admin-user", "change")
    assert event.before["enabled"] is True and event.after["enabled"] is False
    assert "enabled" in event.message and "finished_run_ttl" in event.message


def test_invalid_settings_are_shown_not_saved(client, envs):
    own, _ = envs
    member(client, "admin", own.team)
    response = client.post(url(own), {"enabled": "on", "finished_run_ttl": "00:00:10"})
    assert response.status_code == 200 and "errorlist" in response.content.decode()
    assert Environment.objects.get(pk=own.pk).finished_run_ttl == timedelta(days=7)


@pytest.mark.parametrize(("role", "target", "status"), [
    ("viewer", "own", 403), ("operator", "own", 403), ("admin", "other", 404),
])
def test_settings_post_is_refused_and_changes_nothing(client, envs, role, target, status):
    own, other = envs
    member(client, role, own.team)
    environment = own if target == "own" else other
    response = client.post(url(environment), {"finished_run_ttl": "1 00:00:00"})
    assert response.status_code == status
    assert Environment.objects.get(pk=environment.pk).finished_run_ttl == timedelta(days=7)
    assert not AuditEvent.objects.exists()


def test_settings_post_needs_csrf(envs):
    from django.test import Client

    own, _ = envs
    client = Client(enforce_csrf_checks=True)
    member(client, "admin", own.team)
    assert client.post(url(own), {"finished_run_ttl": "1 00:00:00"}).status_code == 403
