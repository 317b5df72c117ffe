"""Per-environment ACL users: Redis itself refuses one environment's keys to another's user."""

import pytest
import redis

from pipelinehub.audit.models import AuditEvent
from pipelinehub.state.connections import environment_client, reset_pools
from pipelinehub.state.records import RunChange
from pipelinehub.state.store import EnvironmentState

from . import factories
from .conftest import delete_prefix

pytestmark = pytest.mark.django_db

T0 = 1_764_000_000_000_000


@pytest.fixture
def two_environments(redis_client, fernet_keys):
    target = factories.redis_target()
    suffix = factories.team().slug
    envs = [
        factories.environment(factories.team(f"acl{suffix}{name}"), slug="dev", target=target)
        for name in ("a", "b")
    ]
    yield envs
    reset_pools()
    for env in envs:
        env.refresh_from_db()
        if env.acl_username:
            redis_client.execute_command("ACL", "DELUSER", env.acl_username)
        delete_prefix(redis_client, env.key_prefix)


def test_an_environments_user_is_refused_on_anothers_keys(two_environments):
    from pipelinehub.state.acl import ensure_acl_user

    env_a, env_b = two_environments
    for env in two_environments:
        ensure_acl_user(env)
        env.refresh_from_db()
    assert env_a.acl_username == f"ph-{env_a.team.slug}-dev"

    state_a = EnvironmentState.for_environment(env_a)
    assert state_a.apply(RunChange("flow", "r1", T0, "RUNNING", "Running"))
    assert [run.id for run in state_a.board().runs] == ["r1"]

    client_a = environment_client(env_a)
    for command in (
        ("GET", f"{env_b.key_prefix}run:r1"),
        ("SET", f"{env_b.key_prefix}x", "1"),
        ("GET", "unprefixed"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            client_a.execute_command(*command)
    state_a_on_b = EnvironmentState(client_a, env_b.key_prefix, 60)
    with pytest.raises(redis.exceptions.NoPermissionError):
        state_a_on_b.apply(RunChange("flow", "r1", T0, "RUNNING", "Running"))
    for command in (("KEYS", "*"), ("SCAN", "0"), ("FLUSHALL",), ("FUNCTION", "FLUSH")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            client_a.execute_command(*command)


def test_running_it_again_keeps_the_password_and_reapplies_the_rules(two_environments):
    from pipelinehub.state.acl import ensure_acl_user

    env = two_environments[0]
    ensure_acl_user(env)
    secret_id, version = env.acl_password_id, env.acl_password.version
    ensure_acl_user(env)
    env.refresh_from_db()
    assert (env.acl_password_id, env.acl_password.version) == (secret_id, version)
    assert environment_client(env).ping()


def test_admin_action_sets_the_user_and_audits_it(two_environments, admin_client, redis_client):
    env = two_environments[0]
    response = admin_client.post(
        "/admin/environments/environment/",
        {"action": "create_or_update_acl_user", "_selected_action": [env.pk]},
        follow=True,
    )
    env.refresh_from_db()
    assert f"ACL user {env.acl_username} confined to {env.key_prefix}*" in response.content.decode()
    assert redis_client.execute_command("ACL", "GETUSER", env.acl_username) is not None
    event = AuditEvent.objects.get(action="acl_user", object_id=str(env.pk))
    assert event.after == {"acl_username": env.acl_username, "key_pattern": f"{env.key_prefix}*"}
    assert env.acl_password.reveal() not in str(event.after)


def test_admin_action_reports_an_unreachable_redis(two_environments, admin_client):
    env = two_environments[0]
    target = env.redis_target
    target.port = 1
    target.save()
    response = admin_client.post(
        "/admin/environments/environment/",
        {"action": "create_or_update_acl_user", "_selected_action": [env.pk]},
        follow=True,
    )
    assert "ACL user not set" in response.content.decode()
    env.refresh_from_db()
    assert env.acl_username == ""

    target.port = 6379  # back up: the next attempt succeeds
    target.save()
    admin_client.post(
        "/admin/environments/environment/",
        {"action": "create_or_update_acl_user", "_selected_action": [env.pk]},
    )
    env.refresh_from_db()
    assert env.acl_username and environment_client(env).ping()
