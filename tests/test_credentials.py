import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection

from pipelinehub.audit.models import AuditEvent
from pipelinehub.credentials.backends import SecretUnavailable
from pipelinehub.credentials.models import SecretRef

pytestmark = pytest.mark.django_db

PLAINTEXT = "s3cr3t-redis-password-ü"


def stored_column(ref):
    with connection.cursor() as cursor:
        cursor.execute("SELECT ciphertext FROM credentials_secretref WHERE id = %s", [ref.pk])
        return bytes(cursor.fetchone()[0])


def test_round_trip_stores_no_plaintext(fernet_keys):
    ref = SecretRef.objects.create(name="redis/main")
    ref.store(PLAINTEXT)

    assert SecretRef.objects.get(pk=ref.pk).reveal() == PLAINTEXT
    raw = stored_column(ref)
    assert raw and PLAINTEXT.encode() not in raw
    assert Fernet(fernet_keys[0]).decrypt(raw).decode() == PLAINTEXT


def test_each_store_is_a_new_version(fernet_keys):
    ref = SecretRef.objects.create(name="redis/main")
    ref.store("one")
    ref.store("two")
    ref.refresh_from_db()
    assert (ref.version, ref.reveal()) == (2, "two")


def test_repr_and_str_never_show_the_value(fernet_keys):
    ref = SecretRef.objects.create(name="redis/main")
    ref.store(PLAINTEXT)
    assert PLAINTEXT not in repr(ref) and PLAINTEXT not in str(ref)


def test_empty_value_is_refused_and_nothing_changes(fernet_keys):
    ref = SecretRef.objects.create(name="redis/main")
    with pytest.raises(ValueError):
        ref.store("")
    ref.refresh_from_db()
    assert (ref.version, ref.has_value) == (0, False)


def test_encryption_key_rotation(settings, fernet_keys):
    old_key = fernet_keys[0]
    ref = SecretRef.objects.create(name="redis/main")
    ref.store(PLAINTEXT)

    new_key = Fernet.generate_key().decode()
    settings.SECRET_ENCRYPTION_KEYS = [new_key, old_key]
    assert SecretRef.objects.get(pk=ref.pk).reveal() == PLAINTEXT  # old key still reads

    call_command("rotate_secret_keys", stdout=open("/dev/null", "w"))  # noqa: SIM115
    settings.SECRET_ENCRYPTION_KEYS = [new_key]
    assert SecretRef.objects.get(pk=ref.pk).reveal() == PLAINTEXT
    assert AuditEvent.objects.filter(action="rotate_encryption_keys").exists()

    settings.SECRET_ENCRYPTION_KEYS = [old_key]
    with pytest.raises(SecretUnavailable) as excinfo:
        SecretRef.objects.get(pk=ref.pk).reveal()
    assert PLAINTEXT not in str(excinfo.value)


def test_admin_never_renders_the_value(admin_client, fernet_keys):
    response = admin_client.post(
        "/admin/credentials/secretref/add/",
        {"name": "api/key", "backend": "database", "value": PLAINTEXT},
    )
    assert response.status_code == 302
    ref = SecretRef.objects.get(name="api/key")
    assert ref.reveal() == PLAINTEXT

    page = admin_client.get(f"/admin/credentials/secretref/{ref.pk}/change/").content.decode()
    assert PLAINTEXT not in page

    # Saving the form with the value left empty keeps the secret.
    admin_client.post(
        f"/admin/credentials/secretref/{ref.pk}/change/",
        {"name": "api/key", "backend": "database", "value": ""},
    )
    ref.refresh_from_db()
    assert ref.reveal() == PLAINTEXT
    assert ref.version == 1
