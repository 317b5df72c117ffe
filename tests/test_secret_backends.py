"""Every secret backend against the real thing: moto's Secrets Manager server and an OpenBao
server (tests/secret_servers.py), files in a directory of the test's own, the process's
environment. What all writable backends share is one parametrized contract; each backend's
own rules follow it."""

import logging
import os
import time

import pytest
from django.core.exceptions import ValidationError

from pipelinehub.credentials.backends import SecretReadOnly, SecretUnavailable, VersionedValue
from pipelinehub.credentials.backends.aws import secret_id
from pipelinehub.credentials.models import SecretRef
from pipelinehub.state import connections

from .prefect.server import free_port
from .secret_servers import unique_name

pytestmark = pytest.mark.django_db

PLAINTEXT = "s3cr3t-backend-password-ü"
WRITABLE = {"database": "fernet_keys", "aws": "aws_secrets", "vault": "vault_secrets"}


@pytest.fixture(params=list(WRITABLE))
def ref(request):
    """A new secret on each backend the hub writes to, that backend's server running."""
    request.getfixturevalue(WRITABLE[request.param])
    return SecretRef.objects.create(name=unique_name(), backend=request.param)


# The contract of every writable backend.


def test_a_new_secret_has_no_value(ref):
    assert (ref.has_value, ref.version, ref.previous()) == (False, None, None)
    with pytest.raises(SecretUnavailable, match="has no value yet"):
        ref.reveal()


def test_store_makes_a_current_version_and_keeps_the_previous(ref):
    ids = [ref.store(value) for value in ("one", "two", "three")]

    ref = SecretRef.objects.get(pk=ref.pk)
    assert len(set(ids)) == 3 and ref.version == ids[2]
    assert (ref.reveal(), ref.current()) == ("three", VersionedValue(ids[2], "three"))
    assert ref.previous() == VersionedValue(ids[1], "two")
    assert [ref.reveal_version(version_id) for version_id in ids] == ["one", "two", "three"]


def test_marking_versions_rolls_back_and_ends_the_grace_period(ref):
    first, second = ref.store("one"), ref.store("two")

    current = ref.mark_versions(first, previous=second)
    assert (ref.reveal(), ref.previous()) == ("one", VersionedValue(second, "two"))
    ref.mark_versions(current)
    assert (ref.version, ref.previous()) == (current, None)


def test_a_store_after_marking_makes_the_marked_version_previous(ref, request):
    if ref.backend == "aws":
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason="moto 5.2.5 does not follow update_secret_version_stage in its own "
                "record of the current version: its next put_secret_value labels the wrong "
                "version AWSPREVIOUS and leaves two AWSCURRENT",
            )
        )
    first = ref.store("one")
    ref.store("two")
    current = ref.mark_versions(first)

    third = ref.store("three")
    assert (ref.current(), ref.previous()) == (
        VersionedValue(third, "three"),
        VersionedValue(current, "one"),
    )


def test_an_unknown_version_is_named(ref):
    ref.store("one")
    for unknown in ("424242", "0c1f6a4e-0000-4000-8000-000000000000"):
        with pytest.raises(SecretUnavailable, match=f"has no version '{unknown}'"):
            ref.reveal_version(unknown)
        with pytest.raises(SecretUnavailable, match=f"has no version '{unknown}'"):
            ref.mark_versions(unknown)
    assert ref.reveal() == "one"


def test_no_value_reaches_logs_reprs_or_errors(ref, caplog):
    caplog.set_level(logging.DEBUG)
    value = "s3cr3t-ascii-only"  # as it would appear in a JSON body that a client logs
    ref.store("old-" + value)
    ref.store(value)
    shown = [repr(ref), str(ref), repr(ref.current()), str(ref.previous())]
    with pytest.raises(SecretUnavailable) as error:
        ref.reveal_version("424242")
    shown.append(str(error.value))

    assert ref.reveal() == value
    assert value not in caplog.text
    assert all(value not in text for text in shown), shown


# AWS Secrets Manager


def test_aws_follows_a_value_put_by_someone_else(aws_secrets):
    ref = SecretRef.objects.create(name=unique_name(), backend="aws")
    ours = ref.store("ours")

    theirs = aws_secrets.put_secret_value(SecretId=secret_id(ref), SecretString="theirs")
    assert ref.current() == VersionedValue(theirs["VersionId"], "theirs")
    assert ref.previous() == VersionedValue(ours, "ours")


def test_aws_creates_the_secret_under_the_prefix_and_moves_aws_labels(aws_secrets, settings):
    ref = SecretRef.objects.create(name=unique_name(), backend="aws")
    first, second = ref.store("one"), ref.store("two")

    described = aws_secrets.describe_secret(SecretId=settings.SECRET_NAME_PREFIX + ref.name)
    assert described["VersionIdsToStages"] == {first: ["AWSPREVIOUS"], second: ["AWSCURRENT"]}
    ref.mark_versions(first)
    described = aws_secrets.describe_secret(SecretId=secret_id(ref))
    assert described["VersionIdsToStages"][first] == ["AWSCURRENT"]
    assert "AWSPREVIOUS" not in described["VersionIdsToStages"].get(second, [])


def test_aws_reads_a_secret_made_elsewhere_by_name_or_arn(aws_secrets):
    name = unique_name("platform")
    made = aws_secrets.create_secret(Name=name, SecretString="made-elsewhere")
    for location in (name, made["ARN"]):
        ref = SecretRef(name=unique_name(), backend="aws", location=location)
        assert (ref.has_value, ref.reveal()) == (True, "made-elsewhere")


def test_aws_refuses_binary_secrets_and_names_an_unreachable_endpoint(aws_secrets, settings):
    name = unique_name("platform")
    aws_secrets.create_secret(Name=name, SecretBinary=b"\x00\x01")
    ref = SecretRef(name="binary", backend="aws", location=name)
    with pytest.raises(SecretUnavailable, match="holds binary data, not a string"):
        ref.reveal()

    settings.AWS_SECRETS_ENDPOINT_URL = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SecretUnavailable, match="'binary': AWS Secrets Manager cannot be used"):
        ref.reveal()


# HashiCorp Vault / OpenBao, KV v2


def kv(client):
    return client.secrets.kv.v2


def test_vault_follows_a_value_written_by_someone_else(vault_secrets, settings):
    ref = SecretRef.objects.create(name=unique_name(), backend="vault")
    ours = ref.store("ours")
    path = settings.SECRET_NAME_PREFIX + ref.name

    theirs = kv(vault_secrets).create_or_update_secret(path, secret={"value": "theirs"})
    assert ref.current() == VersionedValue(str(theirs["data"]["version"]), "theirs")
    assert ref.previous() == VersionedValue(ours, "ours")


def test_vault_marks_an_older_version_current_for_every_reader(vault_secrets, settings):
    ref = SecretRef.objects.create(name=unique_name(), backend="vault")
    first, second = ref.store("one"), ref.store("two")

    current = ref.mark_versions(first)
    assert (current, ref.previous()) == (
        "3",
        None,
    )  # a copy of version 1, recorded without previous
    latest = kv(vault_secrets).read_secret_version(
        settings.SECRET_NAME_PREFIX + ref.name, raise_on_deleted_version=True
    )
    assert latest["data"]["data"] == {"value": "one"}
    assert second == "2"


def test_vault_keeps_the_other_fields_of_a_secret(vault_secrets):
    path = unique_name("platform")
    kv(vault_secrets).create_or_update_secret(path, secret={"username": "hub", "password": "p1"})
    ref = SecretRef.objects.create(name=unique_name(), backend="vault", location=f"{path}#password")

    assert ref.reveal() == "p1"
    ref.store("p2")
    data = kv(vault_secrets).read_secret_version(path, raise_on_deleted_version=True)["data"]
    assert data["data"] == {"username": "hub", "password": "p2"}
    assert ref.previous().value == "p1"

    other = SecretRef(name="other", backend="vault", location=f"{path}#token")
    with pytest.raises(SecretUnavailable, match=f"'{path}' has no field 'token'"):
        other.reveal()
    with pytest.raises(ValidationError):
        SecretRef(name="bad", backend="vault", location=f"{path}#").clean()


def test_vault_previous_is_none_once_deleted(vault_secrets, settings):
    ref = SecretRef.objects.create(name=unique_name(), backend="vault")
    first = ref.store("one")
    ref.store("two")
    kv(vault_secrets).delete_secret_versions(
        settings.SECRET_NAME_PREFIX + ref.name, versions=[int(first)]
    )
    assert (ref.reveal(), ref.previous()) == ("two", None)


def test_vault_logs_in_with_approle_and_again_when_the_token_expires(
    vault_secrets, openbao_server, settings
):
    if "approle/" not in vault_secrets.sys.list_auth_methods()["data"]:
        vault_secrets.sys.enable_auth_method("approle")
    vault_secrets.sys.create_or_update_policy(
        "pipelinehub", 'path "secret/*" { capabilities = ["create", "read", "update"] }'
    )
    role = unique_name("role").replace("/", "-")
    vault_secrets.auth.approle.create_or_update_approle(
        role, token_policies=["pipelinehub"], token_ttl="2s", token_max_ttl="2s"
    )
    settings.VAULT_TOKEN = ""
    settings.VAULT_ROLE_ID = vault_secrets.auth.approle.read_role_id(role)["data"]["role_id"]
    settings.VAULT_SECRET_ID = vault_secrets.auth.approle.generate_secret_id(role)["data"][
        "secret_id"
    ]

    ref = SecretRef.objects.create(name=unique_name(), backend="vault")
    ref.store("by-approle")
    time.sleep(3)  # the token the login gave has expired
    assert ref.reveal() == "by-approle"


def test_vault_names_a_refusal_and_an_unreachable_server(vault_secrets, settings):
    ref = SecretRef.objects.create(name=unique_name(), backend="vault")
    settings.VAULT_TOKEN = "not-a-token"
    with pytest.raises(SecretUnavailable, match="Vault refused .*Forbidden: permission denied"):
        ref.reveal()
    settings.VAULT_ADDR = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SecretUnavailable, match="cannot be reached"):
        ref.reveal()
    settings.VAULT_ADDR = ""
    with pytest.raises(SecretUnavailable, match="VAULT_ADDR is not set"):
        ref.reveal()


# Read-only: mounted files and environment variables


@pytest.fixture
def secret_files(settings, tmp_path):
    directory = tmp_path / "secrets"
    directory.mkdir()
    settings.SECRET_FILES_DIR = str(directory)
    return directory


def test_a_mounted_file_is_read_again_at_each_read(secret_files):
    (secret_files / "redis-password").write_text(PLAINTEXT + "\n")
    ref = SecretRef.objects.create(name="redis/main", backend="file", location="redis-password")
    first = ref.current()
    assert first.value == PLAINTEXT and PLAINTEXT not in first.version_id

    (secret_files / "redis-password").write_text("remounted")
    assert ref.current().value == "remounted" and ref.version != first.version_id
    assert ref.reveal_version(ref.version) == "remounted"
    assert ref.previous() is None
    with pytest.raises(SecretUnavailable, match="holds only its current value"):
        ref.reveal_version(first.version_id)

    (secret_files / "redis-password").unlink()
    assert ref.has_value is False
    with pytest.raises(SecretUnavailable, match="the file 'redis-password' is missing or empty"):
        ref.reveal()


def test_a_mounted_file_refuses_new_versions_with_where_to_change_it(secret_files):
    (secret_files / "redis-password").write_text("mounted")
    ref = SecretRef.objects.create(name="redis/main", backend="file", location="redis-password")

    with pytest.raises(SecretReadOnly, match="read from the file 'redis-password', which Pipe"):
        ref.store("new")
    with pytest.raises(SecretReadOnly, match="the Kubernetes secret"):
        ref.mark_versions(ref.version)
    assert ref.reveal() == "mounted"


def test_only_files_under_the_directory_are_read(secret_files, settings, tmp_path):
    (tmp_path / "outside").write_text("not for the hub")
    (secret_files / "link").symlink_to(tmp_path / "outside")
    for location in ("../outside", str(tmp_path / "outside"), "link", ""):
        ref = SecretRef(name="redis/main", backend="file", location=location)
        with pytest.raises(ValidationError):
            ref.clean()
        with pytest.raises(SecretUnavailable):
            ref.reveal()
    settings.SECRET_FILES_DIR = ""
    with pytest.raises(SecretUnavailable, match="PIPELINEHUB_SECRET_FILES_DIR is not set"):
        SecretRef(name="redis/main", backend="file", location="link").reveal()


def test_an_environment_variable_is_read_at_each_read_and_never_written(monkeypatch):
    monkeypatch.setenv("PH_SECRET_REDIS_MAIN", PLAINTEXT)
    ref = SecretRef.objects.create(
        name="redis/main", backend="env", location="PH_SECRET_REDIS_MAIN"
    )
    assert ref.reveal() == PLAINTEXT

    monkeypatch.setenv("PH_SECRET_REDIS_MAIN", "injected-again")
    assert ref.reveal() == "injected-again"
    with pytest.raises(SecretReadOnly, match="environment variable PH_SECRET_REDIS_MAIN"):
        ref.store("new")
    assert os.environ["PH_SECRET_REDIS_MAIN"] == "injected-again"


def test_only_variables_of_the_prefix_are_read(settings):
    for location in ("DJANGO_SECRET_KEY", "PIPELINEHUB_SECRET_KEYS", "PH_SECRET_A-B", ""):
        ref = SecretRef(name="redis/main", backend="env", location=location)
        with pytest.raises(SecretUnavailable, match="starts with 'PH_SECRET_'"):
            ref.reveal()
    settings.SECRET_ENV_PREFIX = ""
    with pytest.raises(ValidationError):
        SecretRef(name="redis/main", backend="env", location="PH_SECRET_A").clean()


# The caller: Redis connections' credential provider


def test_connections_use_a_value_rotated_in_vault_after_their_cache(
    vault_secrets, settings, monkeypatch
):
    ref = SecretRef.objects.create(name=unique_name(), backend="vault")
    ref.store("first")
    provider = connections.CachedSecretProvider("hub", ref.pk)
    assert provider.get_credentials() == ("hub", "first")

    kv(vault_secrets).create_or_update_secret(
        settings.SECRET_NAME_PREFIX + ref.name, secret={"value": "rotated-in-vault"}
    )
    assert provider.get_credentials() == ("hub", "first")  # cached
    monkeypatch.setattr(connections, "SECRET_CACHE_SECONDS", 0.0)
    assert provider.get_credentials() == ("hub", "rotated-in-vault")
