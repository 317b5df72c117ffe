"""Single sign-on end to end: a real OpenID Connect issuer (npm oidc-provider) on loopback, the
real Django server (`live_server`) and a plain HTTP client through the authorization-code flow
with PKCE. The issuer's users and their groups are rewritten by each test."""

import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from allauth.socialaccount.models import SocialAccount
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session

from pipelinehub.accounts.models import Membership, RoleMapping
from pipelinehub.accounts.oidc import okta_providers
from pipelinehub.audit.models import AuditEvent
from tests import factories
from tests.oidc.issuer import CLIENT_ID, CLIENT_SECRET, Issuer, login

LOGIN_PATH = "/accounts/oidc/okta/login/"
PATTERN = r"pipelinehub-(?P<team>[a-z0-9-]+)-(?P<role>viewer|operator|admin)"


@pytest.fixture(scope="session")
def site_url(live_server):
    # The issuer only accepts the exact redirect URI, so one host name everywhere: 127.0.0.1.
    return f"http://127.0.0.1:{live_server.thread.port}"


@pytest.fixture(scope="session")
def issuer(site_url, tmp_path_factory):
    running = Issuer(tmp_path_factory.mktemp("oidc"), f"{site_url}{LOGIN_PATH}callback/")
    yield running
    running.stop()


@pytest.fixture
def okta(settings, issuer, site_url, transactional_db):
    """The site configured for the test issuer, two teams with an environment each, and the
    mappings: the pattern for pipelinehub-<team>-<role> and the exact group data-leads."""
    settings.SOCIALACCOUNT_PROVIDERS = okta_providers(issuer.url, CLIENT_ID, CLIENT_SECRET)
    alpha, beta = factories.team("alpha"), factories.team("beta")
    factories.environment(alpha, "dev")
    factories.environment(beta, "prod")
    RoleMapping.objects.create(group=PATTERN, is_pattern=True)
    RoleMapping.objects.create(group="data-leads", team=beta, role="admin")
    return issuer


def sso_login(site_url, username):
    """A fresh browser-like session logged in as `username`, and the page it ended on."""
    session = requests.Session()
    return session, login(session, site_url + LOGIN_PATH, username)


def roles(username):
    return dict(
        Membership.objects.filter(user__username=username).values_list("team__slug", "role")
    )


def audit_actions(username):
    return sorted(
        AuditEvent.objects.filter(actor_name=username, action__startswith="membership.")
        .values_list("action", "object_repr")
    )


def test_first_login_creates_user_and_memberships(okta, site_url):
    okta.set_users({"alice": {"email": "alice@example.com", "name": "Alice A", "groups": [
        "pipelinehub-alpha-operator", "data-leads", "everyone", "pipelinehub-nosuch-admin"]}})

    session, page = sso_login(site_url, "alice")

    assert page.status_code == 200 and urlsplit(page.url).path == "/"
    assert "alpha" in page.text.lower() and "beta" in page.text.lower()
    authorize = next(step for step in page.trace if f"{okta.url}/auth?" in step)
    query = parse_qs(urlsplit(authorize.split()[1]).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]
    assert set(query["scope"][0].split()) == {"openid", "profile", "email", "groups"}
    user = get_user_model().objects.get(username="alice")
    assert user.email == "alice@example.com" and not user.has_usable_password()
    assert roles("alice") == {"alpha": "operator", "beta": "admin"}
    assert audit_actions("alice") == [
        ("membership.add", "alice in alpha: operator"),
        ("membership.add", "alice in beta: admin"),
    ]


def test_later_logins_change_and_remove_memberships(okta, site_url):
    okta.set_users({"alice": {"groups": ["pipelinehub-alpha-viewer", "data-leads"]}})
    sso_login(site_url, "alice")
    assert roles("alice") == {"alpha": "viewer", "beta": "admin"}

    okta.set_users({"alice": {"groups": ["pipelinehub-alpha-admin"]}})
    _, page = sso_login(site_url, "alice")

    assert page.status_code == 200
    assert roles("alice") == {"alpha": "admin"}
    assert "beta" not in page.text.lower()
    assert ("membership.change", "alice in alpha: admin") in audit_actions("alice")
    assert ("membership.remove", "alice in beta: admin") in audit_actions("alice")

    # Losing every mapped group: refused, and the remaining membership is removed too.
    okta.set_users({"alice": {"groups": ["everyone"]}})
    session, page = sso_login(site_url, "alice")
    assert page.status_code == 403 and "Your groups map to no team" in page.text
    assert roles("alice") == {}
    assert ("membership.remove", "alice in alpha: admin") in audit_actions("alice")
    assert session.get(site_url + "/", allow_redirects=False).status_code == 302


def test_user_without_mapped_groups_is_refused_clearly(okta, site_url):
    okta.set_users({"carol": {"email": "carol@example.com", "groups": ["everyone", "hr"]}})

    session, page = sso_login(site_url, "carol")

    assert page.status_code == 403
    assert "Your groups map to no team" in page.text and "everyone, hr" in page.text
    assert not get_user_model().objects.filter(email="carol@example.com").exists()
    home = session.get(site_url + "/", allow_redirects=False)
    assert home.status_code == 302 and home.headers["Location"].startswith("/accounts/login/")


def test_groups_only_in_the_id_token_are_used(okta, site_url):
    """Okta's org authorization server puts the groups claim only in the ID token."""
    okta.set_users({"bob": {"groups": ["pipelinehub-beta-viewer"],
                            "groups_in_id_token_only": True}})

    _, page = sso_login(site_url, "bob")

    assert page.status_code == 200
    extra = SocialAccount.objects.get(user__username="bob").extra_data
    assert "groups" not in extra["userinfo"]
    assert extra["id_token"]["groups"] == ["pipelinehub-beta-viewer"]
    assert roles("bob") == {"beta": "viewer"}


def test_session_lasts_session_hours_and_logout_ends_it(okta, site_url, settings):
    okta.set_users({"dave": {"groups": ["pipelinehub-alpha-viewer"]}})
    session, page = sso_login(site_url, "dave")
    cookie = next(c for c in session.cookies if c.name == settings.SESSION_COOKIE_NAME)
    assert settings.SESSION_COOKIE_AGE == 8 * 3600
    assert abs(cookie.expires - (time.time() + settings.SESSION_COOKIE_AGE)) < 60
    assert cookie.has_nonstandard_attr("HttpOnly")
    assert Session.objects.count() == 1

    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    response = session.post(site_url + "/accounts/logout/", data={"csrfmiddlewaretoken": token},
                            headers={"Referer": site_url + "/"})

    assert response.status_code == 200 and not Session.objects.exists()
    home = session.get(site_url + "/", allow_redirects=False)
    assert home.status_code == 302 and home.headers["Location"].startswith("/accounts/login/")
