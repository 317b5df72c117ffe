import pytest
from django.core.exceptions import ValidationError

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
    assert "data/prod" in message and "127.0.0.1:6379/0" in message


def test_same_prefix_on_another_database_is_fine():
    factories.environment(factories.team("data"), slug="prod", key_prefix="ph:{x}:")
    factories.environment(
        factories.team("ml"), slug="prod", key_prefix="ph:{x}:", target=factories.redis_target(db=1)
    )
    assert Environment.objects.count() == 2


def test_moving_a_target_onto_a_colliding_redis_is_refused():
    factories.environment(factories.team("data"), slug="prod", key_prefix="ph:{x}:")
    other = factories.redis_target(db=3)
    factories.environment(factories.team("ml"), slug="prod", key_prefix="ph:{x}:", target=other)
    other.db = 0
    with pytest.raises(ValidationError, match="data/prod"):
        other.full_clean()


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
    from pipelinehub.credentials.models import SecretRef

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
