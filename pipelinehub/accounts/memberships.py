"""Make a user's memberships match their SSO groups, at every login, with an audit trail.

Runs in one transaction: a login either applies the whole new set of memberships or none of it,
so a user never ends up with half of an old and half of a new set of roles.
"""

from collections import defaultdict

from django.db import transaction

from pipelinehub.audit.service import record, snapshot
from pipelinehub.environments.models import Team

from .models import Membership, Role, RoleMapping

CLAIM = "groups"


def groups_from_claims(extra_data):
    """The `groups` claim of the ID token if it has one, else of userinfo.

    Okta's org authorization server puts the claim only in the ID token; a custom authorization
    server can put it in both.
    """
    for source in ("id_token", "userinfo"):
        groups = (extra_data.get(source) or {}).get(CLAIM)
        if groups is not None:
            return _group_names(groups)
    return []


def _group_names(claim):
    """The names in a groups claim: a list of names, or one name. Any other value (a number, a
    boolean) names no group, so its owner is refused like someone without groups."""
    if isinstance(claim, str):
        claim = [claim]
    if not isinstance(claim, list):
        return []
    return sorted({group for group in claim if isinstance(group, str)})


def roles_for_groups(groups):
    """`{Team: role}` the groups map to; when several map to one team the highest role wins."""
    return _resolve(groups)[0]


def _resolve(groups):
    """`roles_for_groups`, and the sorted groups that gave those roles."""
    best, sources = {}, defaultdict(set)
    mappings = list(RoleMapping.objects.select_related("team"))
    for group in groups:
        for mapping in mappings:
            if (found := mapping.resolve(group)) is None:
                continue
            team_slug, role = found
            sources[team_slug].add(group)
            if team_slug not in best or Role(role).rank > Role(best[team_slug]).rank:
                best[team_slug] = role
    roles = {team: best[team.slug] for team in Team.objects.filter(slug__in=best)}
    return roles, sorted(set().union(*(sources[team.slug] for team in roles)))


@transaction.atomic
def sync(user, groups, *, request=None):
    """Add, change and remove `user`'s memberships to match `groups`; audit each change.

    Returns the memberships the user has afterwards.
    """
    wanted, mapped = _resolve(groups)
    current = {
        membership.team_id: membership
        for membership in Membership.objects.select_for_update()
        .filter(user=user)
        .select_related("team")
    }
    # Only the groups that give a role: people are in hundreds of groups, which would make every
    # audit row of their logins as large as the whole list.
    message = "Synced at login from the SSO groups that map to teams: " + (
        ", ".join(mapped) or "(none)"
    )
    result = []
    for team, role in wanted.items():
        membership = current.pop(team.pk, None)
        if membership is None:
            membership = Membership.objects.create(user=user, team=team, role=role)
            _audit("membership.add", membership, user, request, message, after=snapshot(membership))
        elif membership.role != role:
            before = snapshot(membership)
            membership.role = role
            membership.save(update_fields=["role", "updated"])
            _audit(
                "membership.change",
                membership,
                user,
                request,
                message,
                before=before,
                after=snapshot(membership),
            )
        result.append(membership)
    for membership in current.values():
        before = snapshot(membership)
        _audit("membership.remove", membership, user, request, message, before=before)
        membership.delete()
    return result


def _audit(action, membership, user, request, message, before=None, after=None):
    record(
        action, membership, request=request, actor=user, before=before, after=after, message=message
    )
