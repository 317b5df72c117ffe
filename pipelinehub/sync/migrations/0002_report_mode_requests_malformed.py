from django.db import migrations, models

MODES = [
    ("changes", "changes: what can have changed since the last reconcile"),
    ("sweep", "sweep: one slice of the finished runs' window"),
    ("full", "full: the whole window"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("sync", "0001_initial"),
    ]

    operations = [
        # Every reconcile before modes read the whole window: existing reports are "full".
        migrations.AddField(
            model_name="reconcilereport",
            name="mode",
            field=models.CharField(choices=MODES, default="full", max_length=10),
        ),
        migrations.AlterField(
            model_name="reconcilereport",
            name="mode",
            field=models.CharField(choices=MODES, default="changes", max_length=10),
        ),
        migrations.AddField(
            model_name="reconcilereport",
            name="requests",
            field=models.PositiveIntegerField(
                default=0, help_text="HTTP requests sent to the Prefect API (retries included)."
            ),
        ),
        migrations.AddField(
            model_name="reconcilereport",
            name="malformed",
            field=models.PositiveIntegerField(
                default=0, help_text="Runs Prefect returned with values out of bounds (skipped)."
            ),
        ),
        migrations.AlterField(
            model_name="reconcilereport",
            name="trigger",
            field=models.CharField(help_text="beat, command, admin or ingest", max_length=20),
        ),
    ]
