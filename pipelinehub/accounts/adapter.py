"""allauth hook that refuses an SSO login whose groups map to no team.

Such a person gets a page that says so (and which groups they have) instead of an empty site, and
no local user is created for them. An existing user who lost all their mapped groups is refused
the same way, and their memberships are removed (audited).
"""

from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.shortcuts import render

from . import memberships


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def pre_social_login(self, request, sociallogin):
        groups = memberships.groups_from_claims(sociallogin.account.extra_data)
        if memberships.roles_for_groups(groups):
            return
        if sociallogin.is_existing:
            memberships.sync(sociallogin.user, groups, request=request)
        raise ImmediateHttpResponse(no_team_response(request, groups))


def no_team_response(request, groups=None):
    """The page for someone whose groups give them no team (403: they may use nothing)."""
    return render(request, "accounts/no_team.html", {"groups": groups}, status=403)
