"""Per-environment ACL users: Redis itself refuses one environment's keys to another's user."""

import hashlib

import pytest
import redis
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from pipelinehub.audit.models import AuditEvent
from pipelinehub.state.acl import ensure_acl_user
from pipelinehub.state.connections import environment_client, reset_pools
from pipelinehub.state.records import RunChange
from pipelinehub.state.store import EnvironmentState

from . import factories
from .conftest import delete_prefix
from .redis_server import PrivateRedis

pytestmark = pytest.mark.django_db

RUN = "6f3c5a3e-8d0e-4b7e-9f43-2d1c7a9b0e11"
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
    assert env_a.acl_username == f"ph-env-{env_a.pk}"

    state_a = EnvironmentState.for_environment(env_a)
    assert state_a.apply(RunChange("flow", RUN, T0, "RUNNING", "Running"))
    assert [run.id for run in state_a.board().runs] == [RUN]

    client_a = environment_client(env_a)
    for command in (
        ("GET", f"{env_b.key_prefix}run:{RUN}:tasks"),
        ("SET", f"{env_b.key_prefix}x", "1"),
        ("GET", "unprefixed"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            client_a.execute_command(*command)
    state_a_on_b = EnvironmentState(client_a, env_b.key_prefix, 60)
    with pytest.raises(redis.exceptions.NoPermissionError):
        state_a_on_b.apply(RunChange("flow", RUN, T0, "RUNNING", "Running"))
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
    event = AuditEvent.objects.get(action="environment.provision_acl_user", object_id=str(env.pk))
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


def test_an_environments_user_may_do_everything_the_hub_does(two_environments):
    """Every store operation, as the confined user: a command missing from HUB_COMMANDS fails
    here rather than in production."""
    from pipelinehub.state.acl import ensure_acl_user

    env = two_environments[0]
    ensure_acl_user(env)
    env.refresh_from_db()
    state = EnvironmentState.for_environment(env)
    task = "7a1c5a3e-8d0e-4b7e-9f43-2d1c7a9b0e12"
    assert state.apply_batch(
        [
            RunChange("flow", RUN, T0, "RUNNING", "Running"),
            RunChange("task", task, T0, "RUNNING", "Running", flow_run_id=RUN),
        ]
    ) == [True, True]
    cursor = state.board().cursor
    assert state.flow_run(RUN)[1][0].id == task
    assert state.inflight("flow") == [RUN] and state.task_ids_of([RUN]) == {task}
    assert state.counts(T0).in_flight == {"RUNNING": 1}
    state.set_meta(last_reconcile="now")
    assert state.meta() == {"last_reconcile": "now"}
    lock = state.lock("reconcile", 10)
    assert lock.acquire()
    lock.release()
    state.remove("task", [task])
    state.apply(RunChange("flow", RUN, T0 + 1, "COMPLETED", "Completed"))
    assert state.prune_finished(T0 + 10**12) == 1
    assert len(state.changes_since(cursor).entries) == 3
    assert state.cursor() != cursor


def test_an_environments_user_may_do_everything_detection_does(two_environments):
    """Baselines, heartbeats, flags, the newly failed set and the detection read, as the
    confined user."""
    from pipelinehub.state.acl import ensure_acl_user
    from pipelinehub.state.flags import RUNAWAY, RunFlag

    env = two_environments[0]
    ensure_acl_user(env)
    env.refresh_from_db()
    state = EnvironmentState.for_environment(env)
    done = "7a1c5a3e-8d0e-4b7e-9f43-2d1c7a9b0e13"
    state.apply(
        RunChange("flow", done, T0 + 9, "COMPLETED", "Done", flow="etl", start=T0, end=T0 + 9)
    )
    state.apply(RunChange("flow", done, T0 + 10, "FAILED", "Failed", flow="etl"))  # rerun: LREM
    state.apply(RunChange("flow", RUN, T0, "RUNNING", "Running", flow="etl", start=T0))
    assert state.record_heartbeats([(RUN, T0 + 1)]) == 1
    assert state.set_flags([(RunFlag(RUN, RUNAWAY, "r", T0), "RUNNING")]) == 1
    unfinished = state.unfinished()
    assert unfinished.heartbeats == {RUN: T0 + 1}
    assert state.newly_failed() == ([], None)  # failed long ago
    state.forget_failed(T0)  # ZREMRANGEBYSCORE is allowed
    assert state.flags() == {RUN: {"kind": RUNAWAY, "reason": "r", "since": T0}}
    assert {run.id: run.flag for run in state.board().runs}[RUN]["kind"] == RUNAWAY


# Hostile tester's findings, each on a Redis server of the test's own, since ACLs change.


@pytest.fixture
def servers(tmp_path, fernet_keys):
    """Two private Redis servers; connection pools are dropped after."""
    started = [PrivateRedis(tmp_path / name) for name in ("one", "two")]
    for server in started:
        server.workdir.mkdir()
        server.start()
    yield started
    reset_pools()
    for server in started:
        server.stop()


def on(server, **fields):
    return factories.redis_target(port=server.port, **fields)


def provisioned(team, slug, target, **fields):
    environment = factories.environment(factories.team(team), slug=slug, target=target, **fields)
    ensure_acl_user(environment)
    environment.refresh_from_db()
    return environment


def acl_user(server, name):
    """ACL GETUSER as a dict, or None when there is no such user."""
    return server.client.acl_getuser(name)


def test_environments_whose_names_join_alike_get_users_of_their_own(servers):
    """Team x-y/env z and team x/env y-z were both user ph-x-y-z: one user with both passwords
    and the second prefix, through which x-y's client read x's runs."""
    target = on(servers[0])
    first = provisioned("x-y", "z", target)
    second = provisioned("x", "y-z", target)
    assert first.acl_username != second.acl_username
    EnvironmentState.for_environment(second).apply(RunChange("flow", RUN, T0, "RUNNING", "Run"))
    client = environment_client(first)
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.execute_command("HGETALL", f"{second.key_prefix}flowruns")
    assert EnvironmentState.for_environment(first).apply(
        RunChange("flow", RUN, T0, "RUNNING", "Running")
    )


def test_provisioning_resets_what_an_earlier_user_of_the_name_had(servers):
    environment = factories.environment(target=on(servers[0]))
    name = f"ph-env-{environment.pk}"
    servers[0].client.execute_command(
        "ACL", "SETUSER", name, "on", ">planted", "~*", "&*", "+@all", "(~other:* +get)"
    )
    ensure_acl_user(environment)
    environment.refresh_from_db()
    user = acl_user(servers[0], name)
    own = hashlib.sha256(environment.acl_password.reveal().encode()).hexdigest()
    assert user["passwords"] == [own]
    assert user["keys"] == [f"~{environment.key_prefix}*"]
    assert user["channels"] == [f"&{environment.key_prefix}*"]
    assert user["selectors"] == []
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(port=servers[0].port, username=name, password="planted").ping()


def test_a_user_may_not_select_another_database(servers):
    environment = provisioned("data", "dev", on(servers[0], db=2))
    client = environment_client(environment)
    assert client.ping()  # redis-py selected database 2 when it connected
    for other in ("0", "3"):
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command("SELECT", other)


def test_renaming_an_older_user_deletes_it(servers):
    environment = provisioned("data", "dev", on(servers[0]))
    servers[0].client.execute_command("ACL", "SETUSER", "ph-data-dev", "on", ">old")
    environment.acl_username = "ph-data-dev"
    environment.save(update_fields=["acl_username"])
    ensure_acl_user(environment)
    assert acl_user(servers[0], "ph-data-dev") is None
    assert acl_user(servers[0], f"ph-env-{environment.pk}") is not None


def change_form(environment, **overrides):
    data = {
        "team": environment.team.pk,
        "slug": environment.slug,
        "workspace": environment.workspace.pk,
        "redis_target": environment.redis_target.pk,
        "key_prefix": environment.key_prefix,
        "finished_run_ttl": "7 00:00:00",
        "enabled": "on",
    }
    return {**data, **overrides}


def change(client, environment, **overrides):
    return client.post(
        f"/admin/environments/environment/{environment.pk}/change/",
        change_form(environment, **overrides),
        follow=True,
    )


def assert_works(environment):
    environment.refresh_from_db()
    reset_pools()
    state = EnvironmentState.for_environment(environment)
    assert state.apply(RunChange("flow", RUN, T0, "RUNNING", "Running"))


def test_a_new_prefix_moves_the_user_along(servers, admin_client):
    environment = provisioned("data", "dev", on(servers[0]))
    response = change(admin_client, environment, key_prefix="ph:{data.moved}:")
    assert "confined to ph:{data.moved}:*" in response.content.decode()
    user = acl_user(servers[0], environment.acl_username)
    assert user["keys"] == ["~ph:{data.moved}:*"]
    assert_works(environment)
    event = AuditEvent.objects.get(action="environment.move_acl_user")
    assert event.after["key_pattern"] == "ph:{data.moved}:*"


def test_a_new_target_moves_the_user_and_deletes_the_old_one(servers, admin_client):
    environment = provisioned("data", "dev", on(servers[0]))
    response = change(admin_client, environment, redis_target=on(servers[1]).pk)
    assert response.status_code == 200
    assert acl_user(servers[1], environment.acl_username) is not None
    assert acl_user(servers[0], environment.acl_username) is None
    assert_works(environment)


def test_a_move_that_redis_cannot_carry_out_is_refused(servers, admin_client):
    environment = provisioned("data", "dev", on(servers[0]))
    servers[1].stop()
    response = change(admin_client, environment, redis_target=on(servers[1]).pk)
    assert "Redis does not answer" in response.content.decode()
    assert "Nothing was changed" in response.content.decode()
    environment.refresh_from_db()
    assert environment.redis_target.port == servers[0].port
    assert acl_user(servers[0], environment.acl_username) is not None


def test_orphaned_users_are_removed_and_others_kept(servers, admin_client):
    target = on(servers[0])
    environment = provisioned("data", "dev", target)
    for name in ("ph-env-999999", "someone-else"):
        servers[0].client.execute_command("ACL", "SETUSER", name, "on", ">pw")
    response = admin_client.post(
        "/admin/environments/redistarget/",
        {"action": "remove_orphaned_acl_users", "_selected_action": [target.pk]},
        follow=True,
    )
    assert "orphaned ACL users removed: 127.0.0.1:" in response.content.decode()
    names = {n.decode() for n in servers[0].client.execute_command("ACL", "USERS")}
    assert names == {"default", "someone-else", environment.acl_username}
    event = AuditEvent.objects.get(action="redistarget.remove_orphan_acl_users")
    assert event.after == {"removed": [f"127.0.0.1:{servers[0].port}: ph-env-999999"]}


def test_staff_who_may_only_view_cannot_provision(servers, client):
    environment = factories.environment(target=on(servers[0]))
    staff = get_user_model().objects.create_user(username="viewer", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_environment"))
    client.force_login(staff, backend="pipelinehub.accounts.backends.SingleSignOnBackend")
    page = client.get("/admin/environments/environment/").content.decode()
    assert "create_or_update_acl_user" not in page
    client.post(
        "/admin/environments/environment/",
        {"action": "create_or_update_acl_user", "_selected_action": [environment.pk]},
    )
    environment.refresh_from_db()
    assert environment.acl_username == ""
    assert acl_user(servers[0], f"ph-env-{environment.pk}") is None


def test_an_environments_user_runs_only_the_hubs_scripts_even_after_a_restart(
    private_acl_redis, fernet_keys
):
    """EVAL and SCRIPT LOAD (any Lua: a loop blocks the server) are refused; the hub's scripts
    still run after a restart emptied the script cache, loaded through the target's own user."""
    from pipelinehub.state.acl import ensure_acl_user

    redis_server = private_acl_redis
    env = factories.environment(target=factories.redis_target(port=redis_server.port))
    ensure_acl_user(env)
    env.refresh_from_db()
    client = environment_client(env)
    for command in (
        ("EVAL", "while true do end", "0"),
        ("SCRIPT", "LOAD", "while true do end"),
        ("EVAL", "return 1", "0"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command(*command)

    redis_server.stop()
    redis_server.start()  # ACL users come back from the aclfile, scripts do not
    reset_pools()
    state = EnvironmentState.for_environment(env)
    assert state.apply(RunChange("flow", RUN, T0, "RUNNING", "Running"))
    assert [run.id for run in state.board().runs] == [RUN]
    with pytest.raises(redis.exceptions.NoPermissionError):
        environment_client(env).execute_command("EVAL", "return 1", "0")


@pytest.fixture
def private_acl_redis(tmp_path):
    server = PrivateRedis(tmp_path, aclfile=True)
    server.start()
    yield server
    server.stop()
    reset_pools()
