"""Group-to-role mappings, membership sync and the access policy, below the HTTP layer."""

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from pipelinehub.accounts import memberships
from pipelinehub.accounts.models import Membership, RoleMapping
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
