"""Security headers and the settings built from the environment."""

import os
import subprocess
import sys

import pytest
from django.contrib.auth import get_user_model

from pipelinehub.accounts.oidc import okta_providers
from tests import factories

SSO_BACKEND = "pipelinehub.accounts.backends.SingleSignOnBackend"


@pytest.mark.django_db
def test_pages_carry_a_strict_content_security_policy(client):
    user = get_user_model().objects.create_superuser("root", password="x" * 20)
    factories.environment(factories.team("alpha"), "dev")
    client.force_login(user, backend=SSO_BACKEND)
    response = client.get("/")
    assert response.status_code == 200
    header = response["Content-Security-Policy"]
    policy = dict(directive.strip().split(" ", 1) for directive in header.split(";"))
    assert policy["script-src"] == "'self'" and policy["default-src"] == "'self'"
    assert "unsafe" not in header
    assert policy["frame-ancestors"] == "'none'"
    assert "<script" not in response.text and "style=" not in response.text
    assert response["X-Frame-Options"] == "DENY"
    assert response.cookies["csrftoken"]["httponly"]


def settings_in_subprocess(expression, **env):
    """Evaluate `expression` on the settings module loaded with `env` in a fresh interpreter."""
    code = f"import pipelinehub.settings as s; print(repr({expression}))"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OKTA_")}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_okta_settings_come_from_the_environment():
    okta = {
        "OKTA_SERVER_URL": "https://example.okta.com/oauth2/default/",
        "OKTA_CLIENT_ID": "cid",
        "OKTA_CLIENT_SECRET": "shh",
    }
    result = settings_in_subprocess(
        "(s.SOCIALACCOUNT_PROVIDERS['openid_connect']['APPS'][0]['settings']['server_url'],"
        " s.CONTENT_SECURITY_POLICY['DIRECTIVES']['form-action'])",
        **okta,
    )
    assert result.stdout.strip() == repr(
        ("https://example.okta.com/oauth2/default", ["'self'", "https://example.okta.com"])
    )
    missing_secret = settings_in_subprocess("1", **{**okta, "OKTA_CLIENT_SECRET": ""})
    assert "OKTA_CLIENT_SECRET" in missing_secret.stderr and missing_secret.returncode != 0
    unset = settings_in_subprocess("s.SOCIALACCOUNT_PROVIDERS['openid_connect']['APPS']")
    assert unset.stdout.strip() == "[]"


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_login_pages_need_no_inline_script_or_style(client, settings, path):
    """The Content Security Policy forbids inline scripts and styles: the pages must not use any."""
    settings.SOCIALACCOUNT_PROVIDERS = okta_providers("https://example.okta.com", "id", "secret")
    response = client.get(path)
    assert response.status_code == 200
    assert "<script>" not in response.text and "style=" not in response.text
    if path == "/accounts/login/":
        assert "/accounts/oidc/okta/login/" in response.text
