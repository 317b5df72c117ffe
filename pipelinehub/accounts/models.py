"""Who may do what: Okta groups map to a team and a role, or to access to the admin site.

Mappings are configuration (edited in the admin). Memberships and platform access are derived:
they are rewritten at every single sign-on login from the user's current groups (see
`memberships.sync` and `platform.sync`), so editing them by hand only lasts until the user's next
login.
"""

import re

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import models

from pipelinehub.environments.models import Team


class Role(models.TextChoices):
    """Roles from least to most: each one may do everything the ones before it may."""

    VIEWER = "viewer", "Viewer: sees the boards"
    OPERATOR = "operator", "Operator: also retries and cancels runs"
    ADMIN = "admin", "Admin: also edits the team's environments' settings"

    @property
    def rank(self):
        return list(Role).index(self)


PATTERN_GROUPS = frozenset({"team", "role"})


class RoleMapping(models.Model):
    group = models.CharField(
        "SSO group",
        max_length=200,
        help_text="An Okta group name, or with 'pattern' on a regular expression that must match "
        "the whole name, e.g. pipelinehub-(?P<team>[a-z0-9-]+)-(?P<role>viewer|operator|admin).",
    )
    is_pattern = models.BooleanField(
        "pattern",
        default=False,
        help_text="Treat the group as a regular expression. Its named groups 'team' (a team's "
        "slug) and 'role' stand in for the fields below.",
    )
    team = models.ForeignKey(
        Team,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="role_mappings",
        help_text="Required unless the pattern has a (?P<team>...) group.",
    )
    role = models.CharField(
        max_length=16,
        choices=Role.choices,
        blank=True,
        help_text="Required unless the pattern has a (?P<role>...) group.",
    )

    class Meta:
        ordering = ["group"]

    def __str__(self):
        target = self.team.slug if self.team_id else "<team>"
        return f"{self.group} → {target}: {self.role or '<role>'}"

    def clean(self):
        named = set()
        if self.is_pattern:
            try:
                named = set(re.compile(self.group).groupindex)
            except re.error as exc:
                raise ValidationError({"group": f"Not a valid regular expression: {exc}"}) from exc
            if unknown := named - PATTERN_GROUPS:
                raise ValidationError(
                    {
                        "group": f"Only the named groups 'team' and 'role' mean something here, "
                        f"not {', '.join(sorted(unknown))}."
                    }
                )
        errors = {}
        for name, has_value in (("team", bool(self.team_id)), ("role", bool(self.role))):
            if name in named and has_value:
                errors[name] = f"The pattern's (?P<{name}>...) group gives the {name}: leave empty."
            elif name not in named and not has_value:
                errors[name] = f"Choose a {name}, or use a pattern with a (?P<{name}>...) group."
        if errors:
            raise ValidationError(errors)

    def resolve(self, group_name):
        """`(team_slug, role)` that `group_name` maps to through this mapping, or None."""
        if not self.is_pattern:
            return (self.team.slug, self.role) if group_name == self.group else None
        match = re.fullmatch(self.group, group_name)
        if match is None:
            return None
        found = match.groupdict()
        team_slug = found.get("team") or (self.team.slug if self.team_id else None)
        role = found.get("role") or self.role
        if not team_slug or role not in Role.values:
            return None
        return team_slug, role


class Membership(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["team__slug", "user__username"]
        constraints = [
            models.UniqueConstraint(fields=["user", "team"], name="unique_membership_per_team"),
        ]

    def __str__(self):
        return f"{self.user} in {self.team.slug}: {self.role}"


class PlatformAccess(models.TextChoices):
    STAFF = "staff", "Staff: the admin site, with the permission group's permissions"
    SUPERUSER = "superuser", "Superuser: everything, in the admin site and on every team"


class PlatformMapping(models.Model):
    """An Okta group that makes its members platform engineers: staff of the admin site with a
    permission group, or superusers. Kept apart from role mappings because it grants access to
    the configuration of every team, not to one team's boards."""

    group = models.CharField(
        "SSO group",
        max_length=200,
        help_text="An Okta group name, or with 'pattern' on a regular expression that must match "
        "the whole name, e.g. pipelinehub-platform-(viewer|admin).",
    )
    is_pattern = models.BooleanField(
        "pattern", default=False, help_text="Treat the group as a regular expression."
    )
    access = models.CharField(
        max_length=16, choices=PlatformAccess.choices, default=PlatformAccess.STAFF
    )
    permission_group = models.ForeignKey(
        Group,
        null=True,
        blank=True,
        # A permission group in use is not deleted from under its mappings: deleting it would
        # silently turn staff access into access to nothing.
        on_delete=models.PROTECT,
        related_name="platform_mappings",
        help_text="For staff access: the Django permission group that says what they may see and "
        "change in the admin site (platform-viewer, platform-admin). Superusers need none.",
    )

    class Meta:
        ordering = ["group"]

    def __str__(self):
        target = self.permission_group or "superuser"
        return f"{self.group} → {target}"

    def clean(self):
        if self.is_pattern:
            try:
                re.compile(self.group)
            except re.error as exc:
                raise ValidationError({"group": f"Not a valid regular expression: {exc}"}) from exc
        if self.access == PlatformAccess.STAFF and not self.permission_group_id:
            raise ValidationError(
                {
                    "permission_group": "Staff access needs a permission group: without one the "
                    "admin site would show them nothing."
                }
            )
        if self.access == PlatformAccess.SUPERUSER and self.permission_group_id:
            raise ValidationError(
                {"permission_group": "Superusers have every permission: leave empty."}
            )

    def matches(self, group_name):
        if self.is_pattern:
            return re.fullmatch(self.group, group_name) is not None
        return group_name == self.group
