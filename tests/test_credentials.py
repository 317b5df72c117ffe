"""SecretRef and the database backend: versions, encryption and its keys, the registry of
backends, the migration of the secrets stored before versions, and the admin's write-only
inputs. The other backends, against real secret managers: test_secret_backends.py."""

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.core.management.base import SystemCheckError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from pipelinehub.audit.models import AuditEvent
from pipelinehub.audit.service import REDACTED, snapshot
from pipelinehub.credentials import backends
from pipelinehub.credentials.backends import (
    SecretBackend,
    SecretUnavailable,
    Stages,
    VersionedValue,
    register_secret_backend,
)
from pipelinehub.credentials.models import SecretRef, SecretVersion
from pipelinehub.environments.models import RedisTarget

pytestmark = pytest.mark.django_db

PLAINTEXT = "s3cr3t-redis-password-ü"
BEFORE_VERSIONS = ("credentials", "0001_initial")
VERSIONED = ("credentials", "0004_remove_secretref_ciphertext_version")


def stored_ciphertexts(ref):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT number, ciphertext FROM credentials_secretversion WHERE ref_id = %s",
            [ref.pk],
        )
        return {number: bytes(ciphertext) for number, ciphertext in cursor.fetchall()}


def test_round_trip_stores_no_plaintext(fernet_keys):
    ref = SecretRef.objects.create(name="redis/main")
    version = ref.store(PLAINTEXT)

    assert SecretRef.objects.get(pk=ref.pk).reveal() == PLAINTEXT
    raw = stored_ciphertexts(ref)[int(version)]
    assert raw and PLAINTEXT.encode() not in raw
    assert Fernet(fernet_keys[0]).decrypt(raw).decode() == PLAINTEXT


def test_each_store_is_a_new_version_and_the_last_one_previous(fernet_keys):
    ref = SecretRef.objects.create(name="redis/main")
    first, second, third = (ref.store(value) for value in ("one", "two", "three"))

    ref = SecretRef.objects.get(pk=ref.pk)
    assert (first, second, third) == ("1", "2", "3")
    assert (ref.version, ref.reveal()) == ("3", "three")
    assert ref.current() == VersionedValue("3", "three")
    assert ref.previous() == VersionedValue("2", "two")
    assert [ref.reveal_version(number) for number in (1, "2", "3")] == ["one", "two", "three"]
    stages = dict(ref.versions.values_list("number", "stage"))
    assert stages == {1: "none", 2: "previous", 3: "current"}


def test_a_first_value_has_no_previous_and_unknown_versions_are_named(fernet_keys):
    ref = SecretRef.objects.create(name="redis/main")
    ref.store("one")
    assert ref.previous() is None
    for unknown in ("7", "0", "x"):
        with pytest.raises(SecretUnavailable, match=f"'redis/main' has no version '{unknown}'"):
            ref.reveal_version(unknown)


def test_marking_versions_rolls_back_and_ends_a_grace_period(fernet_keys):
    ref = SecretRef.objects.create(name="redis/main")
    for value in ("one", "two", "three"):
        ref.store(value)

    assert ref.mark_versions("2", previous="3") == "2"  # a rotation to "three" rolled back
    assert (ref.current(), ref.previous()) == (
        VersionedValue("2", "two"),
        VersionedValue("3", "three"),
    )
    ref.mark_versions("2")  # the grace period is over: no previous
    assert (ref.reveal(), ref.previous()) == ("two", None)
    assert ref.store("four") == "4"
    assert ref.previous() == VersionedValue("2", "two")

    with pytest.raises(SecretUnavailable, match="no version '9'"):
        ref.mark_versions("9", previous="2")
    with pytest.raises(ValueError):
        ref.mark_versions("4", previous="4")
    assert (ref.version, ref.previous().version_id) == ("4", "2")  # refused: nothing moved


def test_repr_and_str_never_show_the_value(fernet_keys):
    ref = SecretRef.objects.create(name="redis/main")
    ref.store(PLAINTEXT)
    ref.store("other-" + PLAINTEXT)
    shown = [repr(ref), str(ref), repr(ref.current()), str(ref.previous())]
    shown += [text for version in ref.versions.all() for text in (repr(version), str(version))]
    assert all(PLAINTEXT not in text for text in shown), shown


def test_audit_snapshots_redact_ciphertext(fernet_keys):
    ref = SecretRef.objects.create(name="redis/main")
    ref.store(PLAINTEXT)
    assert snapshot(ref.versions.get())["ciphertext"] == REDACTED


def test_empty_value_is_refused_and_nothing_changes(fernet_keys):
    ref = SecretRef.objects.create(name="redis/main")
    with pytest.raises(ValueError):
        ref.store("")
    ref.refresh_from_db()
    assert (ref.version, ref.has_value) == (None, False)
    with pytest.raises(SecretUnavailable, match="'redis/main' has no value yet"):
        ref.reveal()


def test_encryption_key_rotation_reencrypts_every_version(settings, fernet_keys):
    old_key = fernet_keys[0]
    ref = SecretRef.objects.create(name="redis/main")
    ref.store("old-" + PLAINTEXT)
    ref.store(PLAINTEXT)

    new_key = Fernet.generate_key().decode()
    settings.SECRET_ENCRYPTION_KEYS = [new_key, old_key]
    assert SecretRef.objects.get(pk=ref.pk).reveal() == PLAINTEXT  # old key still reads

    call_command("rotate_secret_keys", stdout=open("/dev/null", "w"))  # noqa: SIM115
    settings.SECRET_ENCRYPTION_KEYS = [new_key]
    ref = SecretRef.objects.get(pk=ref.pk)
    assert (ref.reveal(), ref.previous().value) == (PLAINTEXT, "old-" + PLAINTEXT)
    event = AuditEvent.objects.get(action="secret.rotate_encryption_keys")
    assert event.after == {"secret_versions_reencrypted": 2}

    settings.SECRET_ENCRYPTION_KEYS = [old_key]
    with pytest.raises(SecretUnavailable) as excinfo:
        SecretRef.objects.get(pk=ref.pk).reveal()
    assert "cannot be decrypted" in str(excinfo.value) and PLAINTEXT not in str(excinfo.value)


def test_key_rotation_changes_nothing_when_a_version_cannot_be_decrypted(settings, fernet_keys):
    readable = SecretRef.objects.create(name="a/readable")
    readable.store(PLAINTEXT)
    settings.SECRET_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    SecretRef.objects.create(name="b/lost").store("lost")
    before = stored_ciphertexts(readable)

    settings.SECRET_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), fernet_keys[0]]
    with pytest.raises(CommandError, match="'b/lost' version 1 cannot be decrypted"):
        call_command("rotate_secret_keys", stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert stored_ciphertexts(readable) == before
    assert not AuditEvent.objects.filter(action="secret.rotate_encryption_keys").exists()


def test_an_unknown_backend_is_named(fernet_keys):
    ref = SecretRef.objects.create(name="redis/main", backend="keyring")
    with pytest.raises(SecretUnavailable, match=r"Unknown secret backend 'keyring' \(known: "):
        ref.reveal()
    with pytest.raises(SecretUnavailable, match="'keyring'"):
        ref.store("value")
    assert not ref.versions.exists()


class MemoryBackend(SecretBackend):
    """A backend of a test's own: registering one is all that another backend needs."""

    label = "In memory"

    def __init__(self):
        self.values = {}

    def stages(self, ref):
        versions = self.values.get(ref.name, [])
        return Stages(str(len(versions)) if versions else None, None)

    def read(self, ref, version_id):
        return self.values[ref.name][int(version_id) - 1]

    def put(self, ref, value):
        self.values.setdefault(ref.name, []).append(value)
        return str(len(self.values[ref.name]))


def test_backends_register_themselves_under_a_unique_name(monkeypatch, fernet_keys):
    monkeypatch.setattr(backends, "_registry", dict(backends._registry))
    register_secret_backend("memory")(MemoryBackend)

    ref = SecretRef.objects.create(name="redis/main", backend="memory")
    assert ref.store("one") == "1"
    assert (ref.reveal(), ref.has_value) == ("one", True)
    assert ("memory", "In memory") in backends.backend_choices()
    with pytest.raises(ImproperlyConfigured, match="'memory'"):
        register_secret_backend("memory")(MemoryBackend)


def test_new_secrets_go_to_the_configured_backend(settings):
    settings.SECRET_DEFAULT_BACKEND = "vault"
    assert SecretRef.objects.create(name="redis/main").backend == "vault"
    settings.SECRET_DEFAULT_BACKEND = "file"
    with pytest.raises(ImproperlyConfigured, match="'file' is read-only"):
        SecretRef(name="redis/other")
    with pytest.raises(SystemCheckError, match=r"credentials.E001.*'file' is read-only"):
        call_command("check")
    settings.SECRET_DEFAULT_BACKEND = "keyring"
    with pytest.raises(ImproperlyConfigured, match="Unknown secret backend 'keyring'"):
        SecretRef(name="redis/other")


@pytest.mark.django_db(transaction=True)
def test_migration_makes_each_stored_secret_its_current_version(fernet_keys):
    """Secrets stored before versions existed (one ciphertext and a counter on the row) read
    the same afterwards, and going back restores the row."""
    old_ciphertext = Fernet(fernet_keys[0]).encrypt(PLAINTEXT.encode())
    try:
        old_apps = migrate(BEFORE_VERSIONS)
        OldRef = old_apps.get_model("credentials", "SecretRef")
        OldRef.objects.create(name="redis/main", ciphertext=old_ciphertext, version=3)
        OldRef.objects.create(name="redis/empty")

        migrate(VERSIONED)
        stored, empty = (
            SecretRef.objects.get(name="redis/main"),
            SecretRef.objects.get(name="redis/empty"),
        )
        assert (stored.reveal(), stored.version, stored.previous()) == (PLAINTEXT, "3", None)
        assert (empty.has_value, SecretVersion.objects.count()) == (False, 1)

        old_apps = migrate(BEFORE_VERSIONS)
        restored = old_apps.get_model("credentials", "SecretRef").objects.get(name="redis/main")
        assert (bytes(restored.ciphertext), restored.version) == (old_ciphertext, 3)
    finally:
        migrate()


def migrate(target=None):
    """Migrate the credentials app to `target`; the models as they were there. Without a
    target, every app to its latest migration: going back also unapplied the apps that depend
    on credentials, and the tests after this one need their tables."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    targets = [target] if target else executor.loader.graph.leaf_nodes()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_admin_never_renders_the_value(admin_client, fernet_keys):
    response = admin_client.post(
        "/admin/credentials/secretref/add/",
        {"name": "api/key", "backend": "database", "location": "", "value": PLAINTEXT},
    )
    assert response.status_code == 302
    ref = SecretRef.objects.get(name="api/key")
    assert ref.reveal() == PLAINTEXT

    page = admin_client.get(f"/admin/credentials/secretref/{ref.pk}/change/").content.decode()
    assert PLAINTEXT not in page

    # Saving the form with the value left empty keeps the secret.
    admin_client.post(
        f"/admin/credentials/secretref/{ref.pk}/change/",
        {"name": "api/key", "backend": "database", "location": "", "value": ""},
    )
    ref.refresh_from_db()
    assert (ref.reveal(), ref.version) == (PLAINTEXT, "1")

    admin_client.post(
        f"/admin/credentials/secretref/{ref.pk}/change/",
        {"name": "api/key", "backend": "database", "location": "", "value": "second"},
    )
    assert (ref.reveal(), ref.previous().value) == ("second", PLAINTEXT)
    listing = admin_client.get("/admin/credentials/secretref/").content.decode()
    assert "version 2" in listing and PLAINTEXT not in listing


def test_admin_refuses_a_new_secret_without_a_value(admin_client, fernet_keys):
    response = admin_client.post(
        "/admin/credentials/secretref/add/",
        {"name": "api/key", "backend": "database", "location": "", "value": ""},
    )
    assert response.status_code == 200
    assert "This secret has no value there yet" in response.content.decode()
    assert not SecretRef.objects.exists()


def test_admin_refuses_a_value_for_a_read_only_backend(admin_client, settings, tmp_path):
    settings.SECRET_FILES_DIR = str(tmp_path)
    (tmp_path / "redis-password").write_text("mounted-pw\n")
    add = "/admin/credentials/secretref/add/"
    form = {"name": "redis/main", "backend": "file", "location": "redis-password"}

    response = admin_client.post(add, {**form, "value": "typed-pw"})
    assert "only reads" in response.content.decode()
    assert not SecretRef.objects.exists()

    assert admin_client.post(add, {**form, "value": ""}).status_code == 302
    assert SecretRef.objects.get().reveal() == "mounted-pw"
    response = admin_client.post(add, {**form, "name": "redis/x", "location": "../etc/passwd"})
    assert "outside PIPELINEHUB_SECRET_FILES_DIR" in response.content.decode()


def test_a_target_whose_password_is_mounted_gets_no_password_input(
    admin_client, settings, tmp_path
):
    settings.SECRET_FILES_DIR = str(tmp_path)
    (tmp_path / "redis-password").write_text("mounted-pw")
    ref = SecretRef.objects.create(name="redis/main", backend="file", location="redis-password")
    target = RedisTarget.objects.create(name="main", host="127.0.0.1", port=6379, password=ref)
    change = f"/admin/environments/redistarget/{target.pk}/change/"

    page = admin_client.get(change).content.decode()
    assert "is read from the file &#x27;redis-password&#x27;" in page
    assert 'name="new_password"' in page and "disabled" in page.split('name="new_password"')[1][:80]
    assert admin_client.post(change, target_form("main", "typed-pw")).status_code == 302
    assert (tmp_path / "redis-password").read_text() == "mounted-pw"
    assert RedisTarget.objects.get().password.reveal() == "mounted-pw"


def test_a_list_shows_each_secret_without_asking_its_backend(admin_client, fernet_keys):
    RedisTarget.objects.create(
        name="vaulted",
        host="127.0.0.1",
        port=6379,
        password=SecretRef.objects.create(name="redis/vaulted", backend="vault"),
    )
    admin_client.post("/admin/environments/redistarget/add/", target_form("stored", "pw"))
    listing = admin_client.get("/admin/environments/redistarget/").content.decode()
    assert "redis-target/stored: version 1, updated" in listing
    assert "redis/vaulted: in the Vault secret secret/pipelinehub/redis/vaulted" in listing


def target_form(name, password):
    return {
        "name": name,
        "host": "127.0.0.1",
        "port": "6379",
        "db": "0",
        "tls_verify": "required",
        "new_password": password,
    }


def test_a_secret_name_taken_by_another_object_is_not_reused(admin_client, fernet_keys):
    """A target renamed keeps its secret's name; a new target of the old name, or a name some
    secret already has, gets a free name of its own rather than a server error or the other's
    secret."""
    add = "/admin/environments/redistarget/add/"
    assert admin_client.post(add, target_form("main", "first-pw")).status_code == 302
    first = RedisTarget.objects.get(name="main")
    change = f"/admin/environments/redistarget/{first.pk}/change/"
    assert admin_client.post(change, target_form("old-main", "")).status_code == 302
    SecretRef.objects.create(name="redis-target/main-2")

    assert admin_client.post(add, target_form("main", "second-pw")).status_code == 302
    second = RedisTarget.objects.get(name="main")
    first.refresh_from_db()
    assert first.password.name == "redis-target/main"
    assert second.password.name == "redis-target/main-3"
    assert (first.password.reveal(), second.password.reveal()) == ("first-pw", "second-pw")


def test_a_name_too_long_for_a_secret_name_is_cut(admin_client, fernet_keys):
    name = "n" * 200
    response = admin_client.post("/admin/environments/redistarget/add/", target_form(name, "pw"))
    assert response.status_code == 302
    secret = RedisTarget.objects.get(name=name).password
    assert secret.name.startswith("redis-target/nnn") and len(secret.name) <= 200
