"""Authentication backends: passwords only for the break-glass superusers, sessions for SSO.

Local password login is off for everyone else, also at the admin site's login form, whatever
their staff flag: people log in through Okta, and only local superusers keep a password login for
when Okta is unavailable. A superuser through Okta (a platform mapping) is not one of them, even
if someone gave them a password: their access ends with their Okta group.
"""

from allauth.account.auth_backends import AuthenticationBackend
from django.contrib.auth.backends import ModelBackend


class BreakGlassBackend(ModelBackend):
    """Checks passwords, for active superusers without an SSO identity only."""

    def user_can_authenticate(self, user):
        return (
            super().user_can_authenticate(user)
            and user.is_superuser
            and not user.socialaccount_set.exists()
        )


class SingleSignOnBackend(AuthenticationBackend):
    """Holds the sessions of SSO logins (allauth picks its own backend class for them) and never
    checks a password: allauth's backend would otherwise accept any user's local password."""

    def authenticate(self, request, **credentials):
        return None


BREAK_GLASS_BACKEND = f"{BreakGlassBackend.__module__}.{BreakGlassBackend.__qualname__}"
