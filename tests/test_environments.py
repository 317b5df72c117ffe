import threading
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from pipelinehub.accounts.models import Membership
from pipelinehub.credentials.models import SecretRef
from pipelinehub.environments.models import Environment, PrefectWorkspace, RedisTarget

from . import factories

pytestmark = pytest.mark.django_db


def target_form(**overrides):
    data = {
        "name": "main",
        "host": "127.0.0.1",
        "port": "6379",
        "db": "0",
        "tls_verify": "required",
        "tls_ca_path": "",
        "username": "",
        "new_password": "",
        "replicas": "",
    }
    data.update(overrides)
    return data


def test_default_prefix_is_the_hash_tagged_team_and_env():
    env = factories.environment(factories.team("data"), slug="prod")
    assert env.key_prefix == "ph:{data.prod}:"


@pytest.mark.parametrize("prefix", ["ph:{data.prod}:", "ph:{data.prod}:x", "ph:"])
def test_prefix_collision_names_the_other_environment(prefix):
    target = factories.redis_target()
    factories.environment(factories.team("data"), slug="prod", target=target)
    # Another target row on the same host, port and db counts as the same Redis.
    same_redis = factories.redis_target(username="other-user")
    clash = Environment(
        team=factories.team("ml"),
        slug="dev",
        workspace=factories.workspace(),
        redis_target=same_redis,
        key_prefix=prefix,
    )
    with pytest.raises(ValidationError) as excinfo:
        clash.full_clean()
    message = " ".join(excinfo.value.message_dict["key_prefix"])
    assert "data/prod" in message and f"on 127.0.0.1:6379/{target.db}" in message


def test_same_prefix_on_another_database_of_the_server_is_refused():
    """Key patterns of ACL users hold in every database: databases do not isolate."""
    factories.environment(factories.team("data"), slug="prod", key_prefix="ph:{x}:")
    with pytest.raises(ValidationError, match="collides with environment data/prod"):
        factories.environment(
            factories.team("ml"),
            slug="prod",
            key_prefix="ph:{x}:",
            target=factories.redis_target(db=1),
        )
    assert Environment.objects.count() == 1


def test_moving_a_target_onto_a_colliding_redis_is_refused():
    factories.environment(factories.team("data"), slug="prod", key_prefix="ph:{x}:")
    other = factories.redis_target(host="10.0.0.7", db=3)
    factories.environment(factories.team("ml"), slug="prod", key_prefix="ph:{x}:", target=other)
    other.host = "LOCALHOST"
    with pytest.raises(ValidationError, match="data/prod"):
        other.full_clean()
    with pytest.raises(ValidationError, match="data/prod"):
        other.save()
    other.refresh_from_db()
    assert other.host == "10.0.0.7"


@pytest.mark.parametrize(
    "first,second",
    [
        ("127.0.0.1", "localhost"),
        ("127.0.0.1", "LOCALHOST"),
        ("127.0.0.1", "::1"),
        ("127.0.0.1", "::ffff:127.0.0.1"),
        ("127.0.0.1", "0.0.0.0"),  # noqa: S104 - a host connected to, not bound
        ("127.0.0.1", "127.0.0.2"),
        ("10.0.0.5", "::ffff:10.0.0.5"),
        ("redis.example.com", "Redis.Example.COM"),
        ("2001:db8::1", "2001:DB8:0:0::1"),
    ],
)
def test_spellings_of_one_host_are_one_server(first, second):
    factories.environment(
        factories.team("data"),
        key_prefix="ph:{x}:",
        target=factories.redis_target(host=first, tls=True),
    )
    with pytest.raises(ValidationError, match="collides with environment data/dev"):
        factories.environment(
            factories.team("ml"),
            key_prefix="ph:{x}:",
            target=factories.redis_target(host=second, tls=True),
        )


def test_targets_sharing_a_replica_are_one_server():
    with_replica = factories.redis_target(host="10.0.0.1", replicas="10.0.0.2:6379")
    factories.environment(factories.team("data"), key_prefix="ph:{x}:", target=with_replica)
    with pytest.raises(ValidationError, match="collides"):
        factories.environment(
            factories.team("ml"),
            key_prefix="ph:{x}:",
            target=factories.redis_target(host="10.0.0.2"),
        )


def test_another_port_is_another_server():
    factories.environment(factories.team("data"), key_prefix="ph:{x}:")
    factories.environment(
        factories.team("ml"), key_prefix="ph:{x}:", target=factories.redis_target(port=6380)
    )


@pytest.mark.parametrize("host", ["127.1", "2130706433", "10.0.0.010.1"])
def test_hosts_that_resolvers_read_as_numbers_are_refused(host):
    """`127.1` is 127.0.0.1 to the resolver: a second spelling of a server the checks miss."""
    with pytest.raises(ValidationError) as excinfo:
        RedisTarget(name="t", host=host, tls=True).full_clean()
    assert "host" in excinfo.value.message_dict


def test_a_save_checks_the_server_even_without_full_clean():
    factories.environment(factories.team("data"), key_prefix="ph:{x}:")
    clash = Environment(
        team=factories.team("ml"),
        slug="dev",
        workspace=factories.workspace(),
        redis_target=factories.redis_target(db=4),
        key_prefix="ph:{x}:y",
    )
    with pytest.raises(ValidationError, match="collides"):
        clash.save()
    assert Environment.objects.count() == 1


def test_rows_saved_before_a_rule_tightened_stay_editable():
    """Prefixes that overlap across databases were allowed: such rows keep their other fields
    editable, and only a change of place is checked."""
    first = factories.environment(factories.team("data"), key_prefix="ph:{x}:")
    second = factories.environment(
        factories.team("ml"), key_prefix="ph:{y}:", target=factories.redis_target(db=1)
    )
    Environment.objects.filter(pk=second.pk).update(key_prefix=first.key_prefix)
    second.refresh_from_db()
    second.finished_run_ttl = timedelta(days=1)
    second.full_clean()
    second.save()
    second.key_prefix = "ph:{x}:z"
    with pytest.raises(ValidationError, match="collides"):
        second.save()


def test_two_environments_may_not_share_an_acl_user_on_one_server():
    target = factories.redis_target()
    first = factories.environment(target=target)
    second = factories.environment(target=factories.redis_target(host="localhost", db=2))
    Environment.objects.filter(pk=first.pk).update(acl_username="ph-shared")
    second.acl_username = "ph-shared"
    with pytest.raises(ValidationError, match="ph-shared already belongs to environment"):
        second.save(update_fields=["acl_username"])
    second.refresh_from_db()
    assert second.acl_username == ""


@pytest.mark.django_db(transaction=True)
def test_concurrent_saves_of_colliding_environments_let_exactly_one_through():
    """Both pass their checks before either is saved; then they save at the same moment, each
    in its own thread and database connection. The server's lock lets one through."""
    factories.environment(factories.team("first"))  # its reconcile schedule's interval too
    targets = [factories.redis_target(), factories.redis_target(host="localhost", db=1)]
    for round_ in range(5):
        candidates = [
            Environment(
                team=factories.team(),
                slug="dev",
                workspace=factories.workspace(),
                redis_target=target,
                key_prefix=f"ph:{{race{round_}}}:",
            )
            for target in targets
        ]
        for candidate in candidates:
            candidate.full_clean()
        assert sorted(_save_at_once(candidates)) == ["refused", "saved"]
    assert Environment.objects.count() == 6


def _save_at_once(environments):
    barrier = threading.Barrier(len(environments))
    outcomes = []

    def save(environment):
        try:
            barrier.wait()
            environment.save()
            outcomes.append("saved")
        except ValidationError:
            outcomes.append("refused")
        except Exception as exc:  # noqa: BLE001 - reported in the assertion
            outcomes.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=save, args=(env,)) for env in environments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


def inline_forms(*forms, total_initial=0):
    data = {
        "environments-TOTAL_FORMS": str(len(forms)),
        "environments-INITIAL_FORMS": str(total_initial),
        "environments-MIN_NUM_FORMS": "0",
        "environments-MAX_NUM_FORMS": "1000",
    }
    for index, form in enumerate(forms):
        data.update({f"environments-{index}-{name}": value for name, value in form.items()})
    return data


def test_two_environments_added_in_one_team_form_may_not_collide(admin_client):
    workspace, target = factories.workspace(), factories.redis_target()
    other_db = factories.redis_target(host="LOCALHOST", db=5)
    forms = [
        {"slug": slug, "workspace": workspace.pk, "redis_target": t.pk, "key_prefix": prefix}
        for slug, t, prefix in (("dev", target, "ph:{x}:"), ("prod", other_db, "ph:{x}:a"))
    ]
    for form in forms:
        form["enabled"] = "on"
    blank = {}  # an extra form left empty: skipped
    response = admin_client.post(
        "/admin/environments/team/add/",
        {"slug": "data", "name": "Data", **inline_forms(*forms, blank)},
    )
    assert response.status_code == 200
    assert "Environments dev and prod: prefixes" in response.content.decode()
    assert not Environment.objects.exists()


def test_environments_added_in_one_team_form_with_default_prefixes_are_saved(admin_client):
    workspace, target = factories.workspace(), factories.redis_target()
    forms = [
        {"slug": slug, "workspace": workspace.pk, "redis_target": target.pk, "enabled": "on"}
        for slug in ("dev", "prod")
    ]
    response = admin_client.post(
        "/admin/environments/team/add/", {"slug": "data", "name": "Data", **inline_forms(*forms)}
    )
    assert response.status_code == 302
    prefixes = set(Environment.objects.values_list("key_prefix", flat=True))
    assert prefixes == {"ph:{data.dev}:", "ph:{data.prod}:"}


def test_an_inline_may_not_move_an_environment_with_an_acl_user(admin_client):
    environment = factories.environment(factories.team("data"))
    Environment.objects.filter(pk=environment.pk).update(acl_username="ph-env-1")
    form = {
        "id": environment.pk,
        "team": environment.team.pk,
        "slug": "dev",
        "workspace": environment.workspace.pk,
        "redis_target": environment.redis_target.pk,
        "key_prefix": "ph:{moved}:",
        "enabled": "on",
    }
    response = admin_client.post(
        f"/admin/environments/team/{environment.team.pk}/change/",
        {"slug": "data", "name": "Data", **inline_forms(form, total_initial=1)},
    )
    assert "has its own Redis ACL user: change its prefix or Redis target on" in (
        response.content.decode()
    )
    environment.refresh_from_db()
    assert environment.key_prefix == "ph:{data.dev}:"


def test_a_target_with_acl_users_is_not_repointed_under_them(admin_client):
    environment = factories.environment(factories.team("data"))
    Environment.objects.filter(pk=environment.pk).update(acl_username="ph-env-1")
    target = environment.redis_target
    response = admin_client.post(
        f"/admin/environments/redistarget/{target.pk}/change/",
        target_form(name=target.name, host="10.0.0.9"),
    )
    assert "Environments data/dev have Redis ACL users on this target" in response.content.decode()
    target.refresh_from_db()
    assert target.host == "127.0.0.1"


@pytest.mark.parametrize("prefix", ["ph:data:", "ph:{}:", "ph:{a}{b}:", "has space{x}"])
def test_prefix_needs_exactly_one_hash_tag_and_safe_characters(prefix):
    env = Environment(
        team=factories.team(),
        slug="dev",
        workspace=factories.workspace(),
        redis_target=factories.redis_target(),
        key_prefix=prefix,
    )
    with pytest.raises(ValidationError) as excinfo:
        env.full_clean()
    assert "key_prefix" in excinfo.value.message_dict


@pytest.mark.parametrize("host", ["10.1.2.3", "192.168.0.9", "localhost", "::1", "127.0.0.1"])
def test_private_hosts_may_go_without_tls(host):
    RedisTarget(name="t", host=host).full_clean()


@pytest.mark.parametrize("host", ["redis.example.com", "8.8.8.8", "2001:4860::1"])
def test_public_hosts_need_tls(host):
    with pytest.raises(ValidationError) as excinfo:
        RedisTarget(name="t", host=host).full_clean()
    assert "TLS is required" in excinfo.value.message_dict["tls"][0]
    RedisTarget(name="t", host=host, tls=True).full_clean()


@pytest.mark.parametrize("replicas", ["redis-2.example.com:6379", "10.0.0.2:6379\n8.8.4.4:6379"])
def test_public_replicas_need_tls_too(replicas):
    """A replica gets the same password as the primary: in clear to a public host it leaks."""
    with pytest.raises(ValidationError) as excinfo:
        RedisTarget(name="t", host="10.0.0.1", replicas=replicas).full_clean()
    assert "TLS is required for" in excinfo.value.message_dict["tls"][0]
    RedisTarget(name="t", host="10.0.0.1", replicas=replicas, tls=True).full_clean()


@pytest.mark.parametrize(
    "field,value",
    [
        ("port", 0),
        ("port", 65536),
        ("host", "bad host!"),
        ("replicas", "10.0.0.2"),
        ("replicas", "10.0.0.2:99999"),
        ("tls_ca_path", "relative/ca.pem"),
    ],
)
def test_bad_target_fields_are_refused(field, value):
    target = RedisTarget(**{"name": "t", "host": "10.0.0.1", "tls": True, field: value})
    with pytest.raises(ValidationError) as excinfo:
        target.full_clean()
    assert field in excinfo.value.message_dict


def test_replicas_parse():
    target = RedisTarget(name="t", host="10.0.0.1", replicas="10.0.0.2:6379\n[::1]:6380\n")
    target.full_clean()
    assert target.replica_nodes == [("10.0.0.2", 6379), ("::1", 6380)]


@pytest.mark.parametrize("url", ["ftp://x/api", "not a url", "http://127.0.0.1:4200/"])
def test_bad_prefect_urls_are_refused(url):
    with pytest.raises(ValidationError) as excinfo:
        PrefectWorkspace(name="w", api_url=url).full_clean()
    assert "api_url" in excinfo.value.message_dict


@pytest.mark.parametrize(
    "url", ["HTTP://api.prefect.cloud/api", "Http://8.8.8.8/api", "http://Prefect.Example.com/api"]
)
def test_an_api_key_is_never_sent_over_plain_http_to_a_public_host(url, fernet_keys):
    key = SecretRef.objects.create(name="key")
    with pytest.raises(ValidationError) as excinfo:
        PrefectWorkspace(name="w", api_url=url, api_key=key).full_clean()
    assert "Use https" in excinfo.value.message_dict["api_url"][0]


@pytest.mark.parametrize("url", ["HTTP://LOCALHOST:4200/api", "http://10.0.0.3:4200/api"])
def test_an_api_key_may_go_over_http_to_a_private_host(url, fernet_keys):
    key = SecretRef.objects.create(name="key")
    PrefectWorkspace(name="w", api_url=url, api_key=key).full_clean()


def workspace_form(**overrides):
    return {"name": "cloud", "api_url": CLOUD_URL, "new_api_key": "", **overrides}


CLOUD_URL = "https://api.prefect.cloud/api/accounts/a/workspaces/b"


def test_a_new_api_url_needs_the_key_again(admin_client, fernet_keys):
    admin_client.post(
        "/admin/environments/prefectworkspace/add/", workspace_form(new_api_key="pnu_one")
    )
    workspace = PrefectWorkspace.objects.get()
    url = f"/admin/environments/prefectworkspace/{workspace.pk}/change/"
    moved = "https://attacker.example.com/api"
    response = admin_client.post(url, workspace_form(api_url=moved))
    assert response.status_code == 200
    assert "The API URL changed: enter the API key again" in response.content.decode()
    workspace.refresh_from_db()
    assert workspace.api_url == CLOUD_URL

    assert admin_client.post(url, workspace_form(name="renamed")).status_code == 302
    response = admin_client.post(url, workspace_form(api_url=moved, new_api_key="pnu_two"))
    assert response.status_code == 302
    workspace.refresh_from_db()
    assert (workspace.api_url, workspace.api_key.reveal()) == (moved, "pnu_two")


def test_prefect_cloud_url_is_accepted():
    PrefectWorkspace(
        name="cloud", api_url="https://api.prefect.cloud/api/accounts/abc/workspaces/def"
    ).full_clean()


def test_admin_refuses_public_host_without_tls_and_saves_nothing(admin_client):
    response = admin_client.post(
        "/admin/environments/redistarget/add/",
        target_form(host="redis.example.com", new_password="pw"),
    )
    assert response.status_code == 200
    assert "TLS is required for redis.example.com" in response.content.decode()
    assert not RedisTarget.objects.exists()
    assert not SecretRef.objects.exists()


def test_admin_stores_the_password_as_a_secret_and_never_shows_it(admin_client):
    response = admin_client.post(
        "/admin/environments/redistarget/add/", target_form(new_password="hunter2-redis")
    )
    assert response.status_code == 302
    target = RedisTarget.objects.get()
    assert target.password.reveal() == "hunter2-redis"
    page = admin_client.get(f"/admin/environments/redistarget/{target.pk}/change/")
    assert "hunter2-redis" not in page.content.decode()
    assert "version 1" in page.content.decode()


def test_admin_refuses_api_key_over_plain_http_to_a_public_host(admin_client):
    response = admin_client.post(
        "/admin/environments/prefectworkspace/add/",
        {
            "name": "cloud",
            "api_url": "http://api.prefect.cloud/api/accounts/a/workspaces/b",
            "new_api_key": "pnu_secret",
        },
    )
    assert response.status_code == 200
    assert "Use https" in response.content.decode()
    assert not PrefectWorkspace.objects.exists()


def test_admin_prefix_collision_message(admin_client):
    first = factories.environment(factories.team("data"), slug="prod")
    response = admin_client.post(
        "/admin/environments/environment/add/",
        {
            "team": factories.team("ml").pk,
            "slug": "dev",
            "workspace": first.workspace.pk,
            "redis_target": first.redis_target.pk,
            "key_prefix": "ph:{data.prod}:",
            "finished_run_ttl": "7 00:00:00",
            "enabled": "on",
        },
    )
    assert response.status_code == 200
    assert "collides with environment data/prod" in response.content.decode()
    assert Environment.objects.count() == 1


TTL_MESSAGE = "Keep finished runs between 1 minute and 90 days (e.g. 7 00:00:00 for 7 days)."
HUGE_TTL = timedelta(days=99_999_999)


@pytest.mark.parametrize("ttl", [timedelta(seconds=59), timedelta(days=90, seconds=1), HUGE_TTL])
def test_finished_run_ttl_outside_1_minute_to_90_days_is_refused(ttl):
    environment = factories.environment()
    environment.finished_run_ttl = ttl
    with pytest.raises(ValidationError) as excinfo:
        environment.full_clean()
    assert excinfo.value.message_dict == {"finished_run_ttl": [TTL_MESSAGE]}
    environment.refresh_from_db()
    assert environment.finished_run_ttl == timedelta(days=7)


@pytest.mark.parametrize("ttl", [timedelta(minutes=1), timedelta(days=90)])
def test_finished_run_ttl_bounds_are_accepted(ttl):
    environment = factories.environment(finished_run_ttl=ttl)
    environment.refresh_from_db()
    assert environment.finished_run_ttl == ttl


def test_database_refuses_a_finished_run_ttl_past_90_days():
    """The check constraint holds for writes that skip validation (update(), raw SQL)."""
    environment = factories.environment()
    refused = pytest.raises(IntegrityError, match="finished_run_ttl_between_1_minute_and_90_days")
    with refused, transaction.atomic():
        Environment.objects.filter(pk=environment.pk).update(finished_run_ttl=HUGE_TTL)
    environment.refresh_from_db()
    assert environment.finished_run_ttl == timedelta(days=7)


def _team_admin(client, environment):
    user = get_user_model().objects.create_user(username="team-admin")
    Membership.objects.create(user=user, team=environment.team, role="admin")
    client.force_login(user, backend="pipelinehub.accounts.backends.SingleSignOnBackend")
    return f"/environments/{environment.team.slug}/{environment.slug}/settings/"


def test_team_admin_form_refuses_a_huge_ttl_and_changes_nothing(client):
    environment = factories.environment()
    response = client.post(
        _team_admin(client, environment), {"finished_run_ttl": "99999999 00:00:00"}
    )
    assert response.status_code == 200
    assert TTL_MESSAGE in response.content.decode()
    environment.refresh_from_db()
    assert environment.finished_run_ttl == timedelta(days=7) and environment.enabled


def test_team_admin_form_accepts_90_days(client):
    environment = factories.environment()
    response = client.post(
        _team_admin(client, environment), {"enabled": "on", "finished_run_ttl": "90 00:00:00"}
    )
    assert response.status_code == 302
    environment.refresh_from_db()
    assert environment.finished_run_ttl == timedelta(days=90)


@pytest.mark.parametrize(("ttl", "saved"), [("99999999 00:00:00", False), ("90 00:00:00", True)])
def test_admin_form_bounds_the_ttl(admin_client, ttl, saved):
    environment = factories.environment()
    response = admin_client.post(
        f"/admin/environments/environment/{environment.pk}/change/",
        {
            "team": environment.team.pk,
            "slug": environment.slug,
            "workspace": environment.workspace.pk,
            "redis_target": environment.redis_target.pk,
            "key_prefix": environment.key_prefix,
            "finished_run_ttl": ttl,
            "enabled": "on",
        },
    )
    assert response.status_code == (302 if saved else 200)
    assert (TTL_MESSAGE in response.content.decode()) is not saved
    environment.refresh_from_db()
    assert environment.finished_run_ttl == timedelta(days=90 if saved else 7)
