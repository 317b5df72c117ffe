"""Single sign-on end to end: a real OpenID Connect issuer (npm oidc-provider) on loopback, the
real Django server (`live_server`) and a plain HTTP client through the authorization-code flow
with PKCE. The issuer's users and their groups are rewritten by each test."""

import io
import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from allauth.socialaccount.models import SocialAccount, SocialApp, SocialToken
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.sessions.models import Session
from django.core.management import call_command

from pipelinehub.accounts.models import Membership, PlatformMapping
from pipelinehub.accounts.oidc import okta_providers
from pipelinehub.audit.models import AuditEvent
from tests.oidc.issuer import CLIENT_ID, CLIENT_SECRET, LOGIN_PATH, free_port, sso_login

pytest_plugins = ["tests.oidc.fixtures"]

SSO_BACKEND = "pipelinehub.accounts.backends.SingleSignOnBackend"
PASSWORD = "correct-horse-battery-staple"


def sso_user(subject):
    """The user of the Okta identity `subject`: identities are found by subject, never by name."""
    return SocialAccount.objects.select_related("user").get(uid=subject).user


def roles(subject):
    return dict(Membership.objects.filter(user=sso_user(subject)).values_list("team__slug", "role"))


def audit_actions(subject, prefix="membership."):
    return sorted(
        AuditEvent.objects.filter(actor=sso_user(subject), action__startswith=prefix).values_list(
            "action", "object_repr"
        )
    )


def local_superuser(username="root", email="root@example.com"):
    return get_user_model().objects.create_superuser(username, email, PASSWORD)


def test_first_login_creates_user_and_memberships(okta, site_url):
    okta.set_users(
        {
            "alice": {
                "email": "alice@example.com",
                "name": "Alice A",
                "groups": [
                    "pipelinehub-alpha-operator",
                    "data-leads",
                    "everyone",
                    "pipelinehub-nosuch-admin",
                ],
            }
        }
    )

    session, page = sso_login(site_url, "alice", start_path="/accounts/login/")

    assert page.status_code == 200 and urlsplit(page.url).path == "/"
    assert "alpha" in page.text.lower() and "beta" in page.text.lower()
    authorize = next(step for step in page.trace if f"{okta.url}/auth?" in step)
    query = parse_qs(urlsplit(authorize.split()[1]).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]
    assert set(query["scope"][0].split()) == {"openid", "profile", "email", "groups"}
    user = sso_user("alice")
    assert user.username == "okta-alice"
    assert user.email == "alice@example.com" and not user.has_usable_password()
    assert (user.first_name, user.last_name) == ("Alice", "A")
    assert roles("alice") == {"alpha": "operator", "beta": "admin"}
    assert audit_actions("alice") == [
        ("membership.add", "okta-alice in alpha: operator"),
        ("membership.add", "okta-alice in beta: admin"),
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
    assert ("membership.change", "okta-alice in alpha: admin") in audit_actions("alice")
    assert ("membership.remove", "okta-alice in beta: admin") in audit_actions("alice")

    # Losing every mapped group: refused, and the remaining membership is removed too.
    okta.set_users({"alice": {"groups": ["everyone"]}})
    session, page = sso_login(site_url, "alice")
    assert page.status_code == 403 and "Your groups map to no team" in page.text
    assert roles("alice") == {}
    assert ("membership.remove", "okta-alice in alpha: admin") in audit_actions("alice")
    assert session.get(site_url + "/", allow_redirects=False).status_code == 302


def test_user_without_mapped_groups_is_refused_clearly(okta, site_url):
    okta.set_users({"carol": {"email": "carol@example.com", "groups": ["everyone", "hr"]}})

    session, page = sso_login(site_url, "carol")

    assert page.status_code == 403
    assert "Your groups map to no team" in page.text and "everyone, hr" in page.text
    assert not get_user_model().objects.filter(email="carol@example.com").exists()
    home = session.get(site_url + "/", allow_redirects=False)
    assert home.status_code == 302 and home.headers["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize(
    "claim", [42, True, {"pipelinehub-alpha-admin": 1}], ids=["number", "boolean", "object"]
)
def test_a_groups_claim_that_is_not_a_list_of_names_is_refused(okta, site_url, claim):
    okta.set_users({"odd": {"groups": claim}})

    _, page = sso_login(site_url, "odd")

    assert page.status_code == 403 and "Your groups map to no team" in page.text
    assert not SocialAccount.objects.filter(uid="odd").exists()


def test_groups_only_in_the_id_token_are_used(okta, site_url):
    """Okta's org authorization server puts the groups claim only in the ID token."""
    okta.set_users(
        {"bob": {"groups": ["pipelinehub-beta-viewer"], "groups_in_id_token_only": True}}
    )

    _, page = sso_login(site_url, "bob")

    assert page.status_code == 200
    extra = SocialAccount.objects.get(uid="bob").extra_data
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
    response = session.post(
        site_url + "/accounts/logout/",
        data={"csrfmiddlewaretoken": token},
        headers={"Referer": site_url + "/"},
    )

    assert response.status_code == 200 and not Session.objects.exists()
    home = session.get(site_url + "/", allow_redirects=False)
    assert home.status_code == 302 and home.headers["Location"].startswith("/accounts/login/")


# Identities are pinned to the IdP's subject.


def test_an_email_of_a_local_account_makes_a_separate_user_without_a_form(okta, site_url):
    root = local_superuser(email="root@example.com")
    okta.set_users(
        {
            "mallory": {
                "email": "root@example.com",
                "preferred_username": "root",
                "groups": ["pipelinehub-alpha-viewer"],
            }
        }
    )

    _, page = sso_login(site_url, "mallory")

    assert page.status_code == 200 and urlsplit(page.url).path == "/"
    assert not any("/3rdparty/signup/" in step for step in page.trace)
    mallory = sso_user("mallory")
    assert mallory != root and mallory.username == "okta-mallory"
    assert mallory.email == "root@example.com" and not mallory.is_superuser
    root.refresh_from_db()
    assert root.username == "root" and root.is_superuser and root.has_usable_password()
    assert not SocialAccount.objects.filter(user=root).exists()


def test_preferred_username_admin_leaves_the_break_glass_name_free(okta, site_url, monkeypatch):
    monkeypatch.delenv("DJANGO_SUPERUSER_USERNAME", raising=False)
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)
    okta.set_users({"eve": {"preferred_username": "admin", "groups": ["pipelinehub-alpha-viewer"]}})
    sso_login(site_url, "eve")
    out = io.StringIO()

    call_command("ensure_admin", stdout=out)

    assert sso_user("eve").username == "okta-eve"
    assert "Admin login created: admin" in out.getvalue()
    assert get_user_model().objects.get(username="admin").is_superuser


def test_usernames_come_from_the_subject_never_from_chosen_names(okta, site_url):
    cyrillic_root = "r\u043e\u043et"  # looks like "root"
    okta.set_users(
        {
            "lookalike": {
                "preferred_username": cyrillic_root,
                "groups": ["pipelinehub-alpha-viewer"],
            },
            cyrillic_root: {"groups": ["pipelinehub-alpha-viewer"]},
            "alice": {"groups": ["pipelinehub-alpha-viewer"]},
            "ALICE": {"groups": ["pipelinehub-alpha-viewer"]},
        }
    )

    for subject in ("lookalike", cyrillic_root, "alice", "ALICE"):
        _, page = sso_login(site_url, subject)
        assert page.status_code == 200, subject

    assert sso_user("lookalike").username == "okta-lookalike"
    assert re.fullmatch(r"okta-rt\+[0-9a-f]{16}", sso_user(cyrillic_root).username)
    # allauth finds "okta-ALICE" taken by "okta-alice" (it compares without case): the subject's
    # own name is kept all the same, rather than one made up from the e-mail address.
    assert (sso_user("alice").username, sso_user("ALICE").username) == ("okta-alice", "okta-ALICE")


def test_name_and_email_follow_the_idp_at_every_login(okta, site_url):
    okta.set_users(
        {
            "frank": {
                "email": "frank@old.example",
                "name": "Frank Old",
                "groups": ["pipelinehub-alpha-viewer"],
            }
        }
    )
    sso_login(site_url, "frank")
    okta.set_users(
        {
            "frank": {
                "email": "frank@new.example",
                "name": "Frank New",
                "groups": ["pipelinehub-alpha-viewer"],
            }
        }
    )

    sso_login(site_url, "frank")

    user = sso_user("frank")
    assert (user.email, user.first_name, user.last_name) == ("frank@new.example", "Frank", "New")


def test_an_okta_login_removes_a_password_given_by_hand(okta, site_url):
    okta.set_users({"pat": {"groups": ["pipelinehub-alpha-viewer"]}})
    sso_login(site_url, "pat")
    pat = sso_user("pat")
    pat.set_password(PASSWORD)
    pat.save()

    session, page = sso_login(site_url, "pat")

    pat.refresh_from_db()
    assert page.status_code == 200 and not pat.has_usable_password()
    assert session.get(site_url + "/", allow_redirects=False).status_code == 200


def test_an_okta_identity_is_never_connected_to_a_signed_in_account(okta, site_url):
    root = local_superuser()
    okta.set_users({"mallory": {"groups": ["pipelinehub-alpha-admin"]}})
    session = requests.Session()
    form = session.get(site_url + "/admin/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
    signed_in = session.post(
        site_url + "/admin/login/?next=/admin/",
        data={"csrfmiddlewaretoken": token, "username": "root", "password": PASSWORD},
    )
    assert urlsplit(signed_in.url).path == "/admin/"

    _, page = sso_login(
        site_url, "mallory", start_path=LOGIN_PATH + "?process=connect", session=session
    )

    assert page.status_code == 403 and "cannot be connected" in page.text
    assert not SocialAccount.objects.exists()
    assert get_user_model().objects.get() == root


# Platform engineers through Okta.


@pytest.fixture
def platform_mappings(okta):
    """platform-viewers: staff with a group that may view environments; platform-root:
    superuser."""
    viewer = Group.objects.get_or_create(name="platform-viewer")[0]
    viewer.permissions.add(Permission.objects.get(codename="view_environment"))
    PlatformMapping.objects.create(group="platform-viewers", permission_group=viewer)
    PlatformMapping.objects.create(group="platform-root", access="superuser")
    return viewer


def test_a_platform_group_without_a_team_gets_the_admin_site(platform_mappings, site_url, okta):
    root = local_superuser()
    okta.set_users({"pat": {"groups": ["platform-viewers", "everyone"]}})

    session, page = sso_login(site_url, "pat")

    assert page.status_code == 200 and urlsplit(page.url).path == "/admin/"
    assert "Teams and environments" in page.text
    assert session.get(site_url + "/admin/environments/environment/").status_code == 200
    assert session.get(site_url + "/admin/auth/user/").status_code == 403
    pat = sso_user("pat")
    assert pat.is_staff and not pat.is_superuser
    assert list(pat.groups.all()) == [platform_mappings]
    event = AuditEvent.objects.get(action="user.grant_platform_access")
    assert event.actor == pat and event.object_id == str(pat.pk)
    assert event.after == {"is_staff": True, "is_superuser": False, "groups": ["platform-viewer"]}
    assert "platform-viewers" in event.message and "everyone" not in event.message
    root.refresh_from_db()
    assert root.is_superuser and root.is_staff


def test_platform_access_follows_the_groups_at_every_login(platform_mappings, site_url, okta):
    root = local_superuser()
    okta.set_users({"pat": {"groups": ["platform-root"]}})
    session, page = sso_login(site_url, "pat")
    pat = sso_user("pat")
    assert pat.is_superuser and pat.is_staff and not pat.has_usable_password()
    assert session.get(site_url + "/admin/auth/user/").status_code == 200

    okta.set_users({"pat": {"groups": ["platform-viewers", "pipelinehub-alpha-viewer"]}})
    sso_login(site_url, "pat")
    pat.refresh_from_db()
    assert pat.is_staff and not pat.is_superuser and list(pat.groups.all()) == [platform_mappings]

    okta.set_users({"pat": {"groups": ["pipelinehub-alpha-viewer"]}})
    _, page = sso_login(site_url, "pat")
    pat.refresh_from_db()
    assert page.status_code == 200 and urlsplit(page.url).path == "/"
    assert not pat.is_staff and not pat.is_superuser and not pat.groups.exists()

    okta.set_users({"pat": {"groups": ["platform-root"]}})
    sso_login(site_url, "pat")
    okta.set_users({"pat": {"groups": []}})
    _, page = sso_login(site_url, "pat")
    pat.refresh_from_db()
    assert page.status_code == 403 and not pat.is_staff and not pat.is_superuser

    assert [action for action, _ in audit_actions("pat", prefix="user.")] == sorted(
        [
            "user.grant_platform_access",
            "user.change_platform_access",
            "user.revoke_platform_access",
            "user.grant_platform_access",
            "user.revoke_platform_access",
        ]
    )
    root.refresh_from_db()
    assert root.is_superuser and root.is_staff and root.has_usable_password()


# Failed logins: the site's own page, and the cause in the log without secrets.


@pytest.mark.django_db
def test_an_unreachable_idp_gets_a_clear_page(client, settings, caplog):
    settings.SOCIALACCOUNT_PROVIDERS = okta_providers(
        f"http://127.0.0.1:{free_port()}", CLIENT_ID, CLIENT_SECRET
    )

    response = client.post(LOGIN_PATH)

    assert response.status_code == 503
    assert "Okta cannot be reached" in response.text and "PipelineHub" in response.text
    assert "the IdP is unreachable" in caplog.text and CLIENT_SECRET not in caplog.text


@pytest.mark.django_db
def test_a_forged_callback_is_refused_and_logged(client, settings, caplog):
    settings.SOCIALACCOUNT_PROVIDERS = okta_providers(
        f"http://127.0.0.1:{free_port()}", CLIENT_ID, CLIENT_SECRET
    )

    response = client.get(LOGIN_PATH + "callback/?code=stolen&state=forged")

    assert response.status_code == 401 and "Signing in with Okta failed" in response.text
    assert "unknown or expired state" in caplog.text
    assert "stolen" not in caplog.text and CLIENT_SECRET not in caplog.text


def test_a_token_error_is_logged_without_the_secret(okta, site_url, settings, caplog):
    wrong_secret = "not-the-secret-d1e8a4c3"
    settings.SOCIALACCOUNT_PROVIDERS = okta_providers(okta.url, CLIENT_ID, wrong_secret)
    okta.set_users({"alice": {"groups": ["pipelinehub-alpha-viewer"]}})

    _, page = sso_login(site_url, "alice")

    assert page.status_code == 401 and "Signing in with Okta failed" in page.text
    assert "Error retrieving access token" in caplog.text and "invalid_client" in caplog.text
    assert wrong_secret not in caplog.text
    assert not SocialAccount.objects.exists()


def test_an_id_token_for_another_issuer_is_refused_and_logged(okta, site_url, settings, caplog):
    providers = okta_providers(okta.url, CLIENT_ID, CLIENT_SECRET)
    providers["openid_connect"]["APPS"][0]["settings"]["openid_configuration_overrides"] = {
        "issuer": "http://127.0.0.1:9/elsewhere"
    }
    settings.SOCIALACCOUNT_PROVIDERS = providers
    okta.set_users({"alice": {"groups": ["pipelinehub-alpha-viewer"]}})

    _, page = sso_login(site_url, "alice")

    assert page.status_code == 401
    assert "Invalid id_token" in caplog.text and "InvalidIssuerError" in caplog.text
    assert CLIENT_SECRET not in caplog.text


# The login and the admin site look like the product.


@pytest.mark.django_db
def test_the_login_page_is_the_sites_own_with_one_button(client, settings):
    settings.SOCIALACCOUNT_PROVIDERS = okta_providers(
        "http://127.0.0.1:9", CLIENT_ID, CLIENT_SECRET
    )

    page = client.get("/accounts/login/")

    assert page.status_code == 200
    assert "PipelineHub" in page.text and 'href="/static/dashboard/dashboard.css"' in page.text
    assert page.text.count("<button") == 1 and "Sign in with Okta" in page.text
    assert f'action="{LOGIN_PATH}?process=login"' in page.text
    assert 'name="password"' not in page.text and "3rdparty" not in page.text


@pytest.mark.django_db
def test_the_other_account_pages_are_the_sites_own(client):
    inactive = client.get("/accounts/inactive/")
    client.force_login(get_user_model().objects.create_user("alice"), backend=SSO_BACKEND)
    logout = client.get("/accounts/logout/")

    assert "Your account is disabled" in inactive.text and "dashboard.css" in inactive.text
    assert "Log out of PipelineHub" in logout.text and "dashboard.css" in logout.text


ACCOUNT_MANAGEMENT_PATHS = [
    "/accounts/3rdparty/",
    "/accounts/3rdparty/signup/",
    "/accounts/3rdparty/login/cancelled/",
    "/accounts/3rdparty/login/error/",
    "/accounts/social/connections/",
    "/accounts/email/",
    "/accounts/signup/",
    "/accounts/password/change/",
    "/accounts/password/set/",
    "/accounts/password/reset/",
]


@pytest.mark.django_db
@pytest.mark.parametrize("signed_in", [False, True], ids=["anonymous", "signed-in"])
@pytest.mark.parametrize("path", ACCOUNT_MANAGEMENT_PATHS)
def test_account_management_pages_do_not_exist(client, path, signed_in):
    if signed_in:
        client.force_login(get_user_model().objects.create_user("alice"), backend=SSO_BACKEND)

    response = client.get(path, follow=True)

    assert response.status_code == 404


@pytest.mark.django_db
def test_the_admin_index_puts_platform_work_first_and_hides_allauth_internals(admin_client):
    page = admin_client.get("/admin/").text

    apps = re.findall(r'class="app-([a-z_]+) module', page)
    assert apps[:4] == ["environments", "accounts", "sync", "audit"]
    assert apps.index("credentials") < apps.index("auth") < apps.index("axes")
    assert "account" not in apps  # allauth's e-mail addresses
    environments = page[page.index('class="app-environments') : page.index('class="app-accounts')]
    models = re.findall(r'<tr class="model-([a-z_]+)">', environments)
    assert models == ["environment", "redistarget", "prefectworkspace", "team"]
    registered = admin.site._registry
    assert not {SocialApp, SocialToken} & set(registered)
    assert not registered[SocialAccount].has_change_permission(None)
    assert PlatformMapping in registered
