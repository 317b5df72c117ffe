"""allauth hooks: who an SSO login is, whether they may come in, and what a failed login shows.

- **Identity**: an Okta user is their subject and nothing else (`identity`). Their user is created
  at the first login without any form, under the username derived from the subject; an e-mail
  address never connects a login to an existing account, and connecting an Okta identity to a
  signed-in account is refused.
- **Admission**: someone whose groups map to no team and to no platform access gets a page that
  says so (and which groups they have) instead of an empty site, and no user is created for them.
  An existing user refused this way loses their memberships and platform access (audited).
- **Failures**: every failed login is logged with its cause, without secrets, and answered with
  the site's own page; an unreachable Okta gets a 503 page rather than a server error.
"""

import logging

import requests
from allauth.core import context
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount import app_settings
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.providers.base import AuthError, AuthProcess
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render

from . import identity, memberships, sso

logger = logging.getLogger(__name__)
MAX_CAUSE_LENGTH = 500


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def pre_social_login(self, request, sociallogin):
        if sociallogin.state.get("process", AuthProcess.LOGIN) != AuthProcess.LOGIN:
            raise PermissionDenied(
                "An Okta identity cannot be connected to an account: sign in with Okta instead."
            )
        groups = memberships.groups_from_claims(sociallogin.account.extra_data)
        if not sso.admits(groups):
            if sociallogin.is_existing:
                sso.sync_access(sociallogin.user, groups, request=request)
            raise ImmediateHttpResponse(_no_team_page(request, groups))
        if sociallogin.is_existing and sociallogin.user.has_usable_password():
            # Before the login, so that the session starts with the final password hash: an SSO
            # identity never keeps a local password (the break-glass login is for local users).
            sociallogin.user.set_unusable_password()
            sociallogin.user.save(update_fields=["password"])

    def is_auto_signup_allowed(self, request, sociallogin):
        """Always: the user is made from the claims, never through allauth's sign-up form, where
        the person could choose a username and an e-mail address."""
        return True

    def can_authenticate_by_email(self, login, email):
        """Never, whatever a provider's settings say: an e-mail address from the IdP does not
        make its owner the local account with that address."""
        return False

    def populate_user(self, request, sociallogin, data):
        user = super().populate_user(request, sociallogin, data)
        user.username = identity.sso_username(sociallogin.account.uid)
        return user

    def save_user(self, request, sociallogin, form=None):
        """Saves the new user and their SocialAccount, and nothing else: no allauth e-mail
        address records (e-mail identifies nobody here). The username is derived once more
        because allauth blanks one it finds taken, then makes one up from the e-mail address."""
        user = sociallogin.user
        user.sso_subject = sociallogin.account.uid
        user.username = identity.sso_username(user.sso_subject)
        user.set_unusable_password()
        user.save()
        sociallogin.account.user = user
        sociallogin.account.save()
        return user

    def on_authentication_error(
        self, request, provider, error=None, exception=None, extra_context=None
    ):
        cause = _redacted(_cause(request, exception, extra_context or {}), provider.app.secret)
        logger.warning("SSO login failed through %s: %s", provider.name, cause)
        raise ImmediateHttpResponse(_failure_page(request, error, exception))

    def get_requests_session(self):
        return IdentityProviderSession()


class IdentityProviderSession(requests.Session):
    """allauth's HTTP session to the IdP, which answers for an IdP that is down.

    allauth's login view lets the error of its first request to the IdP (the discovery document)
    escape as a server error. ImmediateHttpResponse is allauth's way for adapter code to answer
    instead: its views and its middleware return the response it carries.
    """

    def request(self, method, url, *args, **kwargs):
        kwargs.setdefault("timeout", app_settings.REQUESTS_TIMEOUT)
        try:
            response = super().request(method, url, *args, **kwargs)
        except requests.RequestException as exc:
            raise _unreachable(method, url, f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500:
            raise _unreachable(method, url, f"HTTP {response.status_code}")
        return response


def _unreachable(method, url, cause):
    logger.warning(
        "SSO login failed: the IdP is unreachable (%s %s): %s",
        method,
        url,
        cause[:MAX_CAUSE_LENGTH],
    )
    page = _page(
        context.request,
        "Okta cannot be reached",
        "PipelineHub could not reach Okta to sign you in. Try again in a few minutes. "
        "Platform administrators can use the break-glass login meanwhile.",
        status=503,
    )
    return ImmediateHttpResponse(page)


def _cause(request, exception, extra_context):
    """What went wrong, for the log: the exception and its causes, the IdP's own error, or a
    callback whose state this browser did not start."""
    if exception is not None:
        chain = []
        while exception is not None:
            chain.append(f"{type(exception).__name__}: {exception}")
            exception = exception.__cause__
        return " <- ".join(chain)
    if "state" not in extra_context:
        return (
            "unknown or expired state: a forged or replayed callback, or a login started in "
            "another browser or more than once"
        )
    error = request.GET.get("error", "no code")
    return f"the IdP answered {error}: {request.GET.get('error_description', '')}"


def _redacted(cause, secret):
    if secret:
        cause = cause.replace(secret, "[redacted]")
    return cause[:MAX_CAUSE_LENGTH]


def _failure_page(request, error, exception):
    if isinstance(exception, PermissionDenied):
        return _page(request, "Sign-in refused", str(exception), status=403)
    if error == AuthError.CANCELLED:
        message = "Okta did not sign you in. Ask for PipelineHub to be assigned to you in Okta."
    else:
        message = (
            "Signing in with Okta failed. Try again; tell the platform team if it fails again."
        )
    return _page(request, "Sign-in failed", message, status=401)


def _page(request, title, message, *, status):
    return render(
        request, "accounts/login_failed.html", {"title": title, "message": message}, status=status
    )


def _no_team_page(request, groups):
    return render(request, "accounts/no_team.html", {"groups": groups}, status=403)


def no_team_response(request, groups=None):
    """The dashboard's answer to someone whose groups give them no team: platform engineers go to
    the admin site, where their work is; anyone else gets the no-team page (403)."""
    if request.user.is_staff:
        return redirect("admin:index")
    return _no_team_page(request, groups)
