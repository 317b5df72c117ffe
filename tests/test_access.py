"""Authorization matrix: every URL and websocket route of our own apps, for every role.

The cases are generated from the URL conf and the websocket routing, so a new URL or consumer
without a line in the expectations below fails the suite, and one whose view skips the access
policy fails its row of the matrix.
"""

import re

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.urls import URLResolver, get_resolver, reverse

from pipelinehub.accounts.models import Membership
from pipelinehub.routing import websocket_urlpatterns
from pipelinehub.state.records import RunChange
from pipelinehub.state.store import EnvironmentState
from tests import factories
from tests.conftest import delete_prefix

ROLES = ["anonymous", "outsider", "viewer", "operator", "admin"]
SSO_BACKEND = "pipelinehub.accounts.backends.SingleSignOnBackend"

# URL conf prefixes that belong to libraries, with where their access rules are tested.
LIBRARY_PREFIXES = {
    "admin/": "Django's admin (staff only): test_admin_site_is_for_staff_only below",
    "accounts/": "allauth's login and logout: tests/test_sso.py, tests/test_break_glass.py",
}

# Expected HTTP status of a GET, by URL name, then by whose environment the URL names ("own":
# the team of the viewer/operator/admin users, "other": a team none of them belongs to, "any":
# URLs without an environment), then by role.
HTTP_EXPECTATIONS = {
    "healthz": {"any": dict.fromkeys(ROLES, 200)},
    "home": {
        "any": {"anonymous": 302, "outsider": 403, "viewer": 200, "operator": 200, "admin": 200}
    },
    "environment_settings": {
        "own": {"anonymous": 302, "outsider": 404, "viewer": 403, "operator": 403, "admin": 200},
        "other": {"anonymous": 302, "outsider": 404, "viewer": 404, "operator": 404, "admin": 404},
    },
    "board": {
        "own": {"anonymous": 302, "outsider": 404, "viewer": 200, "operator": 200, "admin": 200},
        "other": {"anonymous": 302, "outsider": 404, "viewer": 404, "operator": 404, "admin": 404},
    },
    "run": {
        "own": {"anonymous": 302, "outsider": 404, "viewer": 200, "operator": 200, "admin": 200},
        "other": {"anonymous": 302, "outsider": 404, "viewer": 404, "operator": 404, "admin": 404},
    },
    # POSTed; operators and admins are sent back home with Prefect's answer as the message.
    "run_action": {
        "method": "post",
        "own": {"anonymous": 302, "outsider": 404, "viewer": 403, "operator": 302, "admin": 302},
        "other": {"anonymous": 302, "outsider": 404, "viewer": 404, "operator": 404, "admin": 404},
    },
    # Alerts: an environment's list for its viewers; acknowledge and silence POSTed by operators.
    "alerts": {
        "own": {"anonymous": 302, "outsider": 404, "viewer": 200, "operator": 200, "admin": 200},
        "other": {"anonymous": 302, "outsider": 404, "viewer": 404, "operator": 404, "admin": 404},
    },
    **dict.fromkeys(
        ["alert_acknowledge", "alert_silence"],
        {
            "method": "post",
            "own": {
                "anonymous": 302,
                "outsider": 404,
                "viewer": 403,
                "operator": 302,
                "admin": 302,
            },
            "other": {"anonymous": 302, **dict.fromkeys(ROLES[1:], 404)},
        },
    ),
    # A team's notification targets: its admins only (test and delete POSTed).
    **{
        name: {
            "method": method,
            "own": {
                "anonymous": 302,
                "outsider": 404,
                "viewer": 403,
                "operator": 403,
                "admin": 200 if method == "get" else 302,
            },
            "other": {"anonymous": 302, **dict.fromkeys(ROLES[1:], 404)},
        }
        for name, method in [
            ("notification_targets", "get"),
            ("notification_target_add", "get"),
            ("notification_target_edit", "get"),
            ("notification_target_delete", "post"),
            ("notification_target_test", "post"),
        ]
    },
}

# Websocket routes, by route name, in the same shape: "open" (a snapshot comes), or the close
# code the server answers with (4403: not allowed, 4404: no such environment).
WEBSOCKET_EXPECTATIONS = {
    "live_environment": {
        "own": {
            "anonymous": 4403,
            "outsider": 4403,
            "viewer": "open",
            "operator": "open",
            "admin": "open",
        },
        "other": dict.fromkeys(ROLES, 4403),
    },
}

RUN_ID = "6f3c5a3e-8d0e-4b7e-9f43-2d1c7a9b0e11"
# Alerts and notification targets made by `client_as` with these ids, one per team.
ALERT_IDS = {"alpha": 9001, "beta": 9002}
TARGET_IDS = {"alpha": 9101, "beta": 9102}
URL_KWARGS = {
    target: {
        "team": team,
        "env": "dev",
        "run_id": RUN_ID,
        "action": "cancel",
        "alert_id": ALERT_IDS[team],
        "target_id": TARGET_IDS[team],
    }
    for target, team in (("own", "alpha"), ("other", "beta"))
}


def own_url_patterns():
    """(route, URLPattern) of every URL outside the library prefixes."""

    def walk(patterns, prefix):
        for entry in patterns:
            route = prefix + str(entry.pattern)
            if isinstance(entry, URLResolver):
                if route not in LIBRARY_PREFIXES:
                    yield from walk(entry.url_patterns, route)
            else:
                yield route, entry

    return list(walk(get_resolver().url_patterns, ""))


def targets(pattern):
    params = set(pattern.pattern.converters)
    if not params:
        return ["any"]
    assert params <= set(URL_KWARGS["own"]), f"{pattern.name}: no test values for {params}"
    return ["own", "other"]


HTTP_CASES = [
    pytest.param(route, pattern, target, role, id=f"{pattern.name or route}-{target}-{role}")
    for route, pattern in own_url_patterns()
    for target in targets(pattern)
    for role in ROLES
]


@pytest.fixture
def client_as(db, client, redis_client):
    """A client signed in (through the SSO backend) as one of ROLES in team alpha; team beta
    exists too, with an environment of the same name. Both hold flow run RUN_ID in Redis."""
    environments = [
        factories.environment(factories.team(slug), "dev") for slug in ("alpha", "beta")
    ]
    for environment in environments:
        EnvironmentState.for_environment(environment).apply(
            RunChange("flow", RUN_ID, 1_764_000_000_000_000, "RUNNING", "Running")
        )
        slug = environment.team.slug
        factories.alert(environment, RUN_ID, pk=ALERT_IDS[slug])
        factories.notification_target(environment.team, pk=TARGET_IDS[slug])

    def sign_in(role):
        if role != "anonymous":
            user = get_user_model().objects.create_user(username=role)
            if role != "outsider":
                Membership.objects.create(user=user, team=factories.team("alpha"), role=role)
            client.force_login(user, backend=SSO_BACKEND)
        return client

    yield sign_in
    for environment in environments:
        delete_prefix(redis_client, environment.key_prefix)


def test_every_url_has_expectations():
    names = [pattern.name for _, pattern in own_url_patterns()]
    assert all(names), "give every URL a name so the matrix can list it"
    assert sorted(names) == sorted(HTTP_EXPECTATIONS), (
        "every URL needs its line in HTTP_EXPECTATIONS (and only existing URLs may have one)"
    )


@pytest.mark.parametrize(("route", "pattern", "target", "role"), HTTP_CASES)
def test_http_matrix(client_as, route, pattern, target, role):
    expected = HTTP_EXPECTATIONS.get(pattern.name, {}).get(target, {}).get(role)
    if expected is None:
        pytest.fail(f"no expectation for {route} ({pattern.name}), {target}, {role}")
    kwargs = {name: URL_KWARGS[target][name] for name in pattern.pattern.converters}
    method = HTTP_EXPECTATIONS[pattern.name].get("method", "get")
    response = getattr(client_as(role), method)(reverse(pattern.name, kwargs=kwargs))
    assert response.status_code == expected
    if role == "anonymous" and expected == 302:
        assert response["Location"].startswith("/accounts/login/")


def test_other_teams_environment_is_indistinguishable_from_a_missing_one(client_as):
    client = client_as("admin")
    other = client.get(reverse("environment_settings", kwargs={"team": "beta", "env": "dev"}))
    missing = client.get(reverse("environment_settings", kwargs={"team": "nope", "env": "dev"}))
    assert other.status_code == missing.status_code == 404
    assert other.content == missing.content


def test_every_websocket_route_has_expectations():
    names = [route.name for route in websocket_urlpatterns]
    assert all(names), "give every websocket route a name so the matrix can list it"
    assert sorted(names) == sorted(WEBSOCKET_EXPECTATIONS), (
        "every websocket route needs its line in WEBSOCKET_EXPECTATIONS, and a connect test in "
        "this matrix (the live board issue brings the first consumer)"
    )


WEBSOCKET_CASES = [
    pytest.param(route, target, role, id=f"ws-{route.name}-{target}-{role}")
    for route in websocket_urlpatterns
    for target in targets(route)
    for role in ROLES
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("route", "target", "role"), WEBSOCKET_CASES)
async def test_websocket_matrix(client_as, route, target, role):
    from pipelinehub.asgi import application

    expected = WEBSOCKET_EXPECTATIONS.get(route.name, {}).get(target, {}).get(role)
    if expected is None:
        pytest.fail(f"no expectation for websocket {route.name}, {target}, {role}")
    client = await sync_to_async(client_as)(role)
    cookie = client.cookies.get(settings.SESSION_COOKIE_NAME)
    headers = [(b"origin", b"http://127.0.0.1")]
    if cookie is not None:
        headers.append((b"cookie", f"{cookie.key}={cookie.value}".encode()))
    kwargs = URL_KWARGS.get(target, {})
    path = "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda match: kwargs[match[1]], str(route.pattern))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    await communicator.connect()
    first = await communicator.receive_output(timeout=5)
    await communicator.disconnect()
    if expected == "open":
        assert first["type"] == "websocket.send" and '"snapshot"' in first["text"]
    else:
        assert first == {"type": "websocket.close", "code": expected}


def test_admin_site_is_for_staff_only(client_as):
    response = client_as("admin").get("/admin/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
