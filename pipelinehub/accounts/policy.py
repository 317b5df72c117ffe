"""The one access policy: may this user do this action on this environment?

Every view, API, websocket consumer, operator action and every queryset listing teams,
environments or runs asks here, so that a role means the same thing everywhere. Grants come from
memberships (themselves derived from SSO groups) and from being an active superuser (the
break-glass admin, who can already see everything in the admin site). Staff status alone grants
nothing here: platform engineers work in the admin site with its permissions.
"""

from enum import StrEnum

from django.core.exceptions import PermissionDenied
from django.http import Http404

from pipelinehub.environments.models import Environment, Team

from .models import Role


class Action(StrEnum):
    VIEW = "view"  # see the environment and its boards
    OPERATE = "operate"  # retry or cancel runs
    ADMINISTER = "administer"  # edit the environment's non-secret settings


MINIMUM_ROLE = {
    Action.VIEW: Role.VIEWER,
    Action.OPERATE: Role.OPERATOR,
    Action.ADMINISTER: Role.ADMIN,
}


def roles_allowed(action):
    """The roles that may do `action`."""
    minimum = MINIMUM_ROLE[Action(action)].rank
    return [role for role in Role if role.rank >= minimum]


def _unrestricted(user):
    return user.is_active and user.is_superuser


def _signed_in(user):
    return user is not None and user.is_authenticated and user.is_active


def teams_for(user, action):
    """The teams on whose environments `user` may do `action`."""
    if not _signed_in(user):
        return Team.objects.none()
    if _unrestricted(user):
        return Team.objects.all()
    return Team.objects.filter(memberships__user=user, memberships__role__in=roles_allowed(action))


def environments_for(user, action):
    """The environments on which `user` may do `action`."""
    return Environment.objects.filter(team__in=teams_for(user, action))


def can(user, action, environment):
    """Whether `user` may do `action` on `environment`."""
    return teams_for(user, action).filter(pk=environment.team_id).exists()


def environment_or_404(user, action, team_slug, environment_slug):
    """The environment for a view, checked: 404 unless the user may at least see it (so other
    teams' environments are indistinguishable from missing ones), 403 when they may see it but
    not do `action`."""
    try:
        environment = (
            environments_for(user, Action.VIEW)
            .select_related("team")
            .get(team__slug=team_slug, slug=environment_slug)
        )
    except Environment.DoesNotExist:
        raise Http404("No such environment.") from None
    if not can(user, action, environment):
        raise PermissionDenied(f"Your role does not allow '{action}' on {environment}.")
    return environment
