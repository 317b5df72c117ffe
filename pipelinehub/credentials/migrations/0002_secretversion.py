import django.db.models.deletion
from django.db import migrations, models

import pipelinehub.credentials.models


class Migration(migrations.Migration):
    dependencies = [
        ("credentials", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="secretref",
            name="location",
            field=models.CharField(
                blank=True,
                help_text=(
                    "Where the backend finds the secret: a path under "
                    "PIPELINEHUB_SECRET_FILES_DIR (file), a variable name (env), a secret name or "
                    "ARN (aws), a path under the KV mount, optionally with #field (vault). Empty "
                    "for aws and vault: PIPELINEHUB_SECRET_NAME_PREFIX followed by the name."
                ),
                max_length=500,
            ),
        ),
        migrations.AlterField(
            model_name="secretref",
            name="backend",
            field=models.CharField(
                default=pipelinehub.credentials.models.default_backend, max_length=32
            ),
        ),
        migrations.CreateModel(
            name="SecretVersion",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("number", models.PositiveIntegerField()),
                ("ciphertext", models.BinaryField()),
                (
                    "stage",
                    models.CharField(
                        choices=[
                            ("current", "Current"),
                            ("previous", "Previous"),
                            ("none", "None"),
                        ],
                        default="none",
                        max_length=8,
                    ),
                ),
                ("created", models.DateTimeField(auto_now_add=True)),
                (
                    "ref",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="versions",
                        to="credentials.secretref",
                    ),
                ),
            ],
            options={
                "ordering": ["ref", "-number"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("ref", "number"), name="secretversion_number_unique"
                    ),
                    models.UniqueConstraint(
                        condition=models.Q(("stage", "current")),
                        fields=("ref",),
                        name="secretversion_one_current",
                    ),
                    models.UniqueConstraint(
                        condition=models.Q(("stage", "previous")),
                        fields=("ref",),
                        name="secretversion_one_previous",
                    ),
                ],
            },
        ),
    ]
