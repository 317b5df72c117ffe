"""What an SSO login changes: the user's profile, team memberships and platform access, all taken
from the IdP's claims at every login, in one transaction."""

from allauth.socialaccount.adapter import get_adapter
from django.db import transaction

from . import memberships, platform

PROFILE_FIELDS = ["username", "email", "first_name", "last_name"]


def admits(groups):
    """Whether `groups` give anything here: a role in a team, or platform access."""
    return bool(memberships.roles_for_groups(groups)) or platform.resolve(groups)[0].staff


@transaction.atomic
def apply_login(request, sociallogin):
    """Bring the logged-in user in step with the claims of their login."""
    refresh_profile(request, sociallogin)
    groups = memberships.groups_from_claims(sociallogin.account.extra_data)
    sync_access(sociallogin.user, groups, request=request)


def refresh_profile(request, sociallogin):
    """Name and e-mail are the IdP's, copied again at every login (allauth copies them only when
    it creates the user), so a change in Okta shows here at the next login."""
    claims = sociallogin.provider.extract_common_fields(sociallogin.account.extra_data)
    get_adapter(request).populate_user(request, sociallogin, claims)
    sociallogin.user.save(update_fields=PROFILE_FIELDS)


@transaction.atomic
def sync_access(user, groups, *, request=None):
    """Memberships and platform access follow `groups` together, or not at all."""
    memberships.sync(user, groups, request=request)
    platform.sync(user, groups, request=request)
