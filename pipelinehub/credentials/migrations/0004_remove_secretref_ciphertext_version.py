from django.db import migrations


class Migration(migrations.Migration):
    """Apart from 0003: PostgreSQL refuses to alter a table in the transaction that wrote rows
    pointing at it."""

    dependencies = [
        ("credentials", "0003_versions_from_refs"),
    ]

    operations = [
        migrations.RemoveField(
            model_name="secretref",
            name="ciphertext",
        ),
        migrations.RemoveField(
            model_name="secretref",
            name="version",
        ),
    ]
