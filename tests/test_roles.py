"""Group-to-role mappings, membership sync and the access policy, below the HTTP layer."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.urls import reverse

from pipelinehub.accounts import memberships, platform, sso
from pipelinehub.accounts.models import Membership, PlatformMapping, RoleMapping
from pipelinehub.accounts.policy import Action, can, environments_for, teams_for
from pipelinehub.audit.models import AuditEvent
from tests import factories

pytestmark = pytest.mark.django_db
PATTERN = r"pipelinehub-(?P<team>[a-z0-9-]+)-(?P<role>viewer|operator|admin)"


def user(name="u", **fields):
    return get_user_model().objects.create_user(username=name, **fields)


@pytest.mark.parametrize(
    ("fields", "error_field"),
    [
        ({"group": "g", "team": None, "role": "viewer"}, "team"),
        ({"group": "g", "role": ""}, "role"),
        ({"group": "pipelinehub-(", "is_pattern": True}, "group"),
        ({"group": "x-(?P<tenant>.+)", "is_pattern": True, "role": "viewer"}, "group"),
        ({"group": PATTERN, "is_pattern": True, "role": "admin"}, "role"),
        ({"group": "x-(?P<team>.+)", "is_pattern": True, "team": None, "role": ""}, "role"),
    ],
)
def test_invalid_mappings_are_refused_with_the_field_named(fields, error_field):
    fields = {"team": factories.team("alpha"), "role": "viewer", **fields}
    with pytest.raises(ValidationError) as caught:
        RoleMapping(**fields).full_clean()
    assert error_field in caught.value.message_dict


def test_pattern_and_exact_mappings_resolve_groups():
    alpha = factories.team("alpha")
    pattern = RoleMapping(group=PATTERN, is_pattern=True)
    pattern.full_clean()
    fixed_role = RoleMapping(group=r"ops-(?P<team>[a-z]+)", is_pattern=True, role="operator")
    exact = RoleMapping(group="leads", team=alpha, role="admin")
    assert pattern.resolve("pipelinehub-alpha-viewer") == ("alpha", "viewer")
    assert pattern.resolve("pipelinehub-alpha-owner") is None
    assert pattern.resolve("xpipelinehub-alpha-viewer") is None  # the whole name must match
    assert fixed_role.resolve("ops-beta") == ("beta", "operator")
    assert exact.resolve("leads") == ("alpha", "admin")
    assert exact.resolve("Leads") is None


def test_highest_role_wins_and_unknown_teams_are_ignored():
    alpha = factories.team("alpha")
    RoleMapping.objects.create(group=PATTERN, is_pattern=True)
    RoleMapping.objects.create(group="leads", team=alpha, role="operator")
    found = memberships.roles_for_groups(
        ["pipelinehub-alpha-viewer", "leads", "pipelinehub-ghost-admin", "other"]
    )
    assert found == {alpha: "operator"}


@pytest.mark.parametrize(
    ("extra_data", "groups"),
    [
        ({"id_token": {"groups": ["b", "a"]}, "userinfo": {"groups": ["c"]}}, ["a", "b"]),
        ({"id_token": {}, "userinfo": {"groups": ["c"]}}, ["c"]),
        ({"id_token": {"groups": "solo"}}, ["solo"]),
        ({"id_token": {}, "userinfo": {}}, []),
        # Not a list of names: no group (the ID token's claim still wins over userinfo's).
        ({"id_token": {"groups": 42}, "userinfo": {"groups": ["c"]}}, []),
        ({"id_token": {"groups": True}}, []),
        ({"userinfo": {"groups": {"pipelinehub-alpha-admin": 1}}}, []),
        ({"id_token": {"groups": ["a", 7, None]}}, ["a"]),
    ],
)
def test_groups_come_from_the_id_token_first_then_userinfo(extra_data, groups):
    assert memberships.groups_from_claims(extra_data) == groups


def test_sync_is_idempotent_and_audits_only_changes():
    factories.team("alpha")
    RoleMapping.objects.create(group=PATTERN, is_pattern=True)
    alice = user("alice")
    memberships.sync(alice, ["pipelinehub-alpha-viewer"])
    memberships.sync(alice, ["pipelinehub-alpha-viewer"])
    assert list(AuditEvent.objects.values_list("action", flat=True)) == ["membership.add"]


def test_sync_is_all_or_nothing(monkeypatch):
    """A failure half-way (here: recording the second change) leaves the old memberships."""
    alpha, beta = factories.team("alpha"), factories.team("beta")
    RoleMapping.objects.create(group=PATTERN, is_pattern=True)
    alice = user("alice")
    memberships.sync(alice, ["pipelinehub-alpha-viewer"])
    calls = []

    def failing_record(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise RuntimeError("audit log unavailable")

    monkeypatch.setattr(memberships, "record", failing_record)
    with pytest.raises(RuntimeError):
        memberships.sync(alice, ["pipelinehub-alpha-admin", "pipelinehub-beta-viewer"])
    assert list(Membership.objects.values_list("team", "role")) == [(alpha.pk, "viewer")]
    assert beta.memberships.count() == 0


ROLE_ACTIONS = {
    "viewer": {Action.VIEW},
    "operator": {Action.VIEW, Action.OPERATE},
    "admin": {Action.VIEW, Action.OPERATE, Action.ADMINISTER},
}


@pytest.mark.parametrize("role", ROLE_ACTIONS)
@pytest.mark.parametrize("action", list(Action))
def test_policy_matrix(role, action):
    own = factories.environment(factories.team("alpha"), "dev")
    other = factories.environment(factories.team("beta"), "dev")
    member = user("member")
    Membership.objects.create(user=member, team=own.team, role=role)
    allowed = action in ROLE_ACTIONS[role]
    assert can(member, action, own) is allowed
    assert can(member, action, other) is False
    assert list(environments_for(member, action)) == ([own] if allowed else [])
    assert list(teams_for(member, action)) == ([own.team] if allowed else [])


def test_policy_for_outsiders_staff_inactive_and_superusers():
    environment = factories.environment(factories.team("alpha"), "dev")
    inactive = user("gone", is_active=False)
    Membership.objects.create(user=inactive, team=environment.team, role="admin")
    superuser = get_user_model().objects.create_superuser("root", password="x" * 20)
    for nobody in (user("outsider"), user("staff", is_staff=True), inactive):
        assert not any(can(nobody, action, environment) for action in Action)
    assert all(can(superuser, action, environment) for action in Action)


def test_a_refusal_shows_its_reason_on_the_sites_own_page(client):
    environment = factories.environment(factories.team("alpha"), "dev")
    viewer = user("viewer")
    Membership.objects.create(user=viewer, team=environment.team, role="viewer")
    client.force_login(viewer, backend="pipelinehub.accounts.backends.SingleSignOnBackend")

    response = client.get(reverse("environment_settings", kwargs={"team": "alpha", "env": "dev"}))

    assert response.status_code == 403
    assert "Your role does not allow &#x27;administer&#x27; on alpha/dev" in response.text
    assert "dashboard/dashboard.css" in response.text


@pytest.mark.parametrize(
    ("fields", "error_field"),
    [
        ({"group": "platform-(", "is_pattern": True, "access": "superuser"}, "group"),
        ({"group": "platform-viewers", "access": "staff"}, "permission_group"),
        ({"group": "platform-root", "access": "superuser", "with_group": True}, "permission_group"),
    ],
)
def test_invalid_platform_mappings_are_refused_with_the_field_named(fields, error_field):
    if fields.pop("with_group", False):
        fields["permission_group"] = Group.objects.get(name="platform-admin")
    with pytest.raises(ValidationError) as caught:
        PlatformMapping(**fields).full_clean()
    assert error_field in caught.value.message_dict


def test_platform_mappings_resolve_groups():
    viewer, admin = (Group.objects.get(name=f"platform-{n}") for n in ("viewer", "admin"))
    PlatformMapping.objects.create(group="platform-viewers", permission_group=viewer)
    PlatformMapping.objects.create(
        group=r"platform-admins-\w+", is_pattern=True, permission_group=admin
    )
    PlatformMapping.objects.create(group="platform-root", access="superuser")

    assert platform.resolve(["everyone"]) == (platform.Access(False, False, frozenset()), [])
    assert platform.resolve(["platform-viewers", "platform-admins-eu", "xplatform-root"]) == (
        platform.Access(True, False, frozenset({viewer, admin})),
        ["platform-admins-eu", "platform-viewers"],
    )
    assert platform.resolve(["platform-root"])[0] == platform.Access(True, True, frozenset())


def test_the_platform_permission_groups_cover_the_hubs_models():
    viewer = set(
        Group.objects.get(name="platform-viewer").permissions.values_list("codename", flat=True)
    )
    admin = set(
        Group.objects.get(name="platform-admin").permissions.values_list("codename", flat=True)
    )

    assert all(codename.startswith("view_") for codename in viewer)
    assert {
        "view_environment",
        "view_redistarget",
        "view_prefectworkspace",
        "view_rolemapping",
        "view_platformmapping",
        "view_reconcilereport",
        "view_auditevent",
        "view_periodictask",
    } <= viewer
    assert {
        "add_environment",
        "change_redistarget",
        "delete_prefectworkspace",
        "change_rolemapping",
        "delete_membership",
        "change_periodictask",
    } <= admin
    assert viewer <= admin
    # Whoever could edit platform mappings could make themselves a superuser; the audit log and
    # users, groups and lockouts stay out of reach.
    assert (
        not {
            "add_platformmapping",
            "change_platformmapping",
            "change_auditevent",
            "delete_auditevent",
            "change_user",
            "change_group",
            "delete_accessattempt",
        }
        & admin
    )


def test_audit_rows_name_only_the_groups_that_map():
    """People are in thousands of groups; a login's audit rows stay small all the same."""
    factories.team("alpha")
    RoleMapping.objects.create(group=PATTERN, is_pattern=True)
    PlatformMapping.objects.create(
        group="platform-viewers", permission_group=Group.objects.get(name="platform-viewer")
    )
    groups = [f"everyone-in-region-{n:04}" for n in range(2000)]

    sso.sync_access(user("alice"), [*groups, "pipelinehub-alpha-viewer", "platform-viewers"])

    messages = dict(AuditEvent.objects.values_list("action", "message"))
    assert set(messages) == {"membership.add", "user.grant_platform_access"}
    assert messages["membership.add"].endswith(": pipelinehub-alpha-viewer")
    assert messages["user.grant_platform_access"].endswith(": platform-viewers")
    assert all(len(message) < 200 for message in messages.values())
