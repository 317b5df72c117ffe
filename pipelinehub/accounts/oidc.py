"""The Okta login as allauth's generic OpenID Connect provider, built from three settings.

The generic provider (not allauth's `okta` one) discovers the endpoints of either Okta server
(the org server or a custom authorization server) and keeps the ID token's claims, which is the
only place Okta's org server puts the `groups` claim. Settings and tests build the provider
configuration here so that they cannot drift apart.
"""

from urllib.parse import urlsplit

PROVIDER_ID = "okta"
SCOPES = ["openid", "profile", "email", "groups"]


def okta_providers(server_url, client_id, secret):
    """`SOCIALACCOUNT_PROVIDERS` with the Okta app, or with no app when `server_url` is empty."""
    apps = []
    if server_url:
        apps.append(
            {
                "provider_id": PROVIDER_ID,
                "name": "Okta",
                "client_id": client_id,
                "secret": secret,
                "settings": {
                    "server_url": server_url,
                    "scope": SCOPES,
                    "oauth_pkce_enabled": True,
                },
            }
        )
    return {"openid_connect": {"OAUTH_PKCE_ENABLED": True, "APPS": apps}}


def origin(url):
    """`scheme://host[:port]` of `url`: what a Content Security Policy source names."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
