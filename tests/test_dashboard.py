"""The dashboard pages: what each member sees, and the team-admin settings page."""

import re
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from pipelinehub.accounts.models import Membership
from pipelinehub.audit.models import AuditEvent
from pipelinehub.environments.models import Environment
from pipelinehub.state.records import RunChange
from pipelinehub.state.store import EnvironmentState
from pipelinehub.sync.models import ReconcileReport
from tests import factories
from tests.conftest import delete_prefix

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
    assert (event.actor_name, event.action) == ("admin-user", "environment.change")
    assert event.before["enabled"] is True and event.after["enabled"] is False
    assert "enabled" in event.message and "finished_run_ttl" in event.message


def test_invalid_settings_are_shown_not_saved(client, envs):
    own, _ = envs
    member(client, "admin", own.team)
    response = client.post(url(own), {"enabled": "on", "finished_run_ttl": "00:00:10"})
    assert response.status_code == 200 and "errorlist" in response.content.decode()
    assert Environment.objects.get(pk=own.pk).finished_run_ttl == timedelta(days=7)


@pytest.mark.parametrize(
    ("role", "target", "status"),
    [
        ("viewer", "own", 403),
        ("operator", "own", 403),
        ("admin", "other", 404),
    ],
)
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


# The home page's numbers


@pytest.fixture
def watched(redis_client):
    """An environment of a team of its own (a unique prefix on the shared Redis), its state,
    and a viewer's client factory."""
    environment = factories.environment(factories.team(f"h{uuid.uuid4().hex[:8]}"), "dev")
    yield environment, EnvironmentState.for_environment(environment)
    delete_prefix(redis_client, environment.key_prefix)


def counts_on(page):
    """{"in_flight.RUNNING": 3, ...} as the page shows them."""
    return {key: int(value) for key, value in re.findall(r'data-count="([\w.]+)">(\d+)<', page)}


def change(state_type, version, **fields):
    return RunChange("flow", str(uuid.uuid4()), version, state_type, state_type.title(), **fields)


def test_home_shows_exact_counts_for_the_whole_environment(client, watched):
    environment, state = watched
    now = time.time_ns() // 1000
    hour = 3_600_000_000
    changes = [change("RUNNING", now - i) for i in range(1, 4)]
    changes += [change("SCHEDULED", now - 10 - i) for i in range(2)]
    changes += [change("COMPLETED", now - hour - i, end=now - hour) for i in range(4)]
    changes += [change("FAILED", now - 2 * hour, end=now - 2 * hour)]
    changes += [change("COMPLETED", now - 25 * hour, end=now - 25 * hour)]  # over a day ago
    # More runs than any board reads: the counts are the environment's, not a page's.
    changes += [change("CANCELLED", now - 3 * hour - i, end=now - 3 * hour) for i in range(2500)]
    state.apply_batch(changes)
    state.apply(change("RUNNING", now - 20))  # one more, then it finishes
    running = changes[0]
    state.apply(RunChange("flow", running.id, now, "FAILED", "Failed", end=now))
    member(client, "viewer", environment.team)

    page = client.get("/").content.decode()

    assert counts_on(page) == {
        "in_flight": 5,
        "in_flight.RUNNING": 3,
        "in_flight.SCHEDULED": 2,
        "finished_24h": 2506,
        "finished_24h.COMPLETED": 4,
        "finished_24h.FAILED": 2,
        "finished_24h.CANCELLED": 2500,
    }
    board = f"/environments/{environment.team.slug}/dev/"
    assert f'href="{board}?state=FAILED"' in page and f'href="{board}"' in page


def test_home_says_when_the_state_is_stale(client, watched):
    environment, state = watched
    member(client, "viewer", environment.team)
    state.set_meta(
        ingest_watermark=datetime.now(UTC).isoformat(),
        last_reconcile=(datetime.now(UTC) - timedelta(minutes=3)).isoformat(),
    )
    page = client.get("/").content.decode()
    assert "Up to date" in page and "Stale" not in page and "3\xa0minutes ago" in page

    state.set_meta(ingest_watermark=(datetime.now(UTC) - timedelta(minutes=3)).isoformat())
    page = client.get("/").content.decode()
    assert "Stale" in page and "Ingest has been silent since" in page

    state.set_meta(ingest_watermark=datetime.now(UTC).isoformat())
    ReconcileReport.objects.create(environment=environment, error="ReadTimeout: Prefect")
    page = client.get("/").content.decode()
    assert "Stale" in page and "The last reconcile failed: ReadTimeout: Prefect" in page


def test_an_unreachable_redis_is_unavailable_and_the_rest_is_shown(client, watched):
    environment, state = watched
    broken = factories.environment(environment.team, "prod", target=factories.redis_target(port=1))
    state.apply(change("RUNNING", time.time_ns() // 1000))
    member(client, "viewer", environment.team)

    response = client.get("/")

    assert response.status_code == 200
    page = response.content.decode()
    card = page.split(f'data-environment="{broken}"')[1].split("</li>\n    \n")[0]
    assert "Unavailable" in card and "data-count" not in card
    assert counts_on(page)["in_flight.RUNNING"] == 1


def test_home_queries_stay_flat_with_many_environments(client, redis_client):
    team = factories.team(f"q{uuid.uuid4().hex[:8]}")
    target, workspace = factories.redis_target(), factories.workspace()
    member(client, "viewer", team)

    def add_environments(count):
        start = Environment.objects.filter(team=team).count()
        Environment.objects.bulk_create(
            Environment(
                team=team,
                slug=f"e{i}",
                workspace=workspace,
                redis_target=target,
                key_prefix=Environment.default_prefix(team.slug, f"e{i}"),
            )
            for i in range(start, start + count)
        )

    def queries_of_home():
        with CaptureQueriesContext(connection) as queries:
            assert client.get("/").status_code == 200
        return len(queries)

    try:
        add_environments(3)
        few = queries_of_home()
        add_environments(297)
        many = queries_of_home()
        ReconcileReport.objects.bulk_create(
            ReconcileReport(environment=env, error="")
            for env in Environment.objects.filter(team=team)
        )
        assert queries_of_home() == many == few
        assert few <= 8
    finally:
        for environment in Environment.objects.filter(team=team):
            delete_prefix(redis_client, environment.key_prefix)
