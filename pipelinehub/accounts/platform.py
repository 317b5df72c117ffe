"""Platform engineers through Okta: groups that give access to the admin site, at every login.

An SSO user's staff and superuser flags and their Django permission groups are derived from their
Okta groups through the platform mappings, like their team memberships: rewritten at every login,
in the same transaction, so a group removed in Okta takes the access away at the next login.
Only SSO logins sync; local users (the break-glass superusers) are never touched.
"""

from typing import NamedTuple

from django.contrib.auth import get_user_model
from django.db import transaction

from pipelinehub.audit.service import record

from .models import PlatformAccess, PlatformMapping


class Access(NamedTuple):
    staff: bool
    superuser: bool
    permission_groups: frozenset

    def snapshot(self):
        names = sorted(group.name for group in self.permission_groups)
        return {"is_staff": self.staff, "is_superuser": self.superuser, "groups": names}


def resolve(groups):
    """The platform access `groups` give, and the sorted groups that give it."""
    mappings = list(PlatformMapping.objects.select_related("permission_group"))
    matched = [(group, m) for group in groups for m in mappings if m.matches(group)]
    access = Access(
        staff=bool(matched),
        superuser=any(m.access == PlatformAccess.SUPERUSER for _, m in matched),
        permission_groups=frozenset(m.permission_group for _, m in matched if m.permission_group),
    )
    return access, sorted({group for group, _ in matched})


@transaction.atomic
def sync(user, groups, *, request=None):
    """Give `user` the platform access `groups` map to, and only that; audit a change."""
    wanted, mapped = resolve(groups)
    locked = get_user_model().objects.select_for_update().get(pk=user.pk)
    before = Access(locked.is_staff, locked.is_superuser, frozenset(locked.groups.all()))
    if before == wanted:
        return
    user.is_staff, user.is_superuser = wanted.staff, wanted.superuser
    user.save(update_fields=["is_staff", "is_superuser"])
    user.groups.set(wanted.permission_groups)
    record(
        f"user.{_verb(before, wanted)}",
        user,
        request=request,
        actor=user,
        before=before.snapshot(),
        after=wanted.snapshot(),
        message="Synced at login from the SSO groups that map to platform access: "
        + (", ".join(mapped) or "(none)"),
    )


def _verb(before, after):
    if not before.staff:
        return "grant_platform_access"
    if not after.staff:
        return "revoke_platform_access"
    return "change_platform_access"
