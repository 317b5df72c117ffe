"""Each secret's one ciphertext becomes its current version, numbered as the reference counted
(1 at least), so that the version an admin page showed stays the same. The ciphertext moves as
it is: no key is needed. Going back keeps the current version of each secret."""

from django.db import migrations


def forwards(apps, schema_editor):
    SecretRef = apps.get_model("credentials", "SecretRef")
    SecretVersion = apps.get_model("credentials", "SecretVersion")
    SecretVersion.objects.bulk_create(
        SecretVersion(
            ref=ref, number=max(ref.version, 1), ciphertext=ref.ciphertext, stage="current"
        )
        for ref in SecretRef.objects.all().iterator()
        if ref.ciphertext
    )


def backwards(apps, schema_editor):
    SecretRef = apps.get_model("credentials", "SecretRef")
    SecretVersion = apps.get_model("credentials", "SecretVersion")
    for version in SecretVersion.objects.filter(stage="current"):
        SecretRef.objects.filter(pk=version.ref_id).update(
            ciphertext=version.ciphertext, version=version.number
        )


class Migration(migrations.Migration):
    dependencies = [
        ("credentials", "0002_secretversion"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
