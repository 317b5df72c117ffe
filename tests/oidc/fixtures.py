"""Fixtures for tests that log in through the real OpenID Connect issuer: the live Django server,
the issuer, and the site configured for it with two teams and their role mappings. Test modules
load them with `pytest_plugins = ["tests.oidc.fixtures"]`, so that one issuer serves them all."""

import pytest

from pipelinehub.accounts.models import RoleMapping
from pipelinehub.accounts.oidc import okta_providers
from tests import factories

from .issuer import CLIENT_ID, CLIENT_SECRET, LOGIN_PATH, Issuer

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
