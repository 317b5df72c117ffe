"""Bound Environment.finished_run_ttl to 1 minute .. 90 days, in the validators and in a check
constraint. Rows already outside the bounds are clamped first, or adding the constraint would
fail the deploy."""

import datetime

import django.core.validators
from django.db import migrations, models

TTL_MIN = datetime.timedelta(minutes=1)
TTL_MAX = datetime.timedelta(days=90)
MESSAGE = "Keep finished runs between 1 minute and 90 days (e.g. 7 00:00:00 for 7 days)."


def clamp_existing(apps, schema_editor):
    Environment = apps.get_model("environments", "Environment")
    Environment.objects.filter(finished_run_ttl__lt=TTL_MIN).update(finished_run_ttl=TTL_MIN)
    Environment.objects.filter(finished_run_ttl__gt=TTL_MAX).update(finished_run_ttl=TTL_MAX)


class Migration(migrations.Migration):
    dependencies = [
        ("environments", "0002_environment_acl_user"),
    ]

    operations = [
        migrations.AlterField(
            model_name="environment",
            name="finished_run_ttl",
            field=models.DurationField(
                default=datetime.timedelta(days=7),
                help_text="How long runs in a terminal state stay in Redis, between 1 minute and "
                "90 days, e.g. 7 00:00:00 (7 days) or 12:00:00.",
                validators=[
                    django.core.validators.MinValueValidator(TTL_MIN, message=MESSAGE),
                    django.core.validators.MaxValueValidator(TTL_MAX, message=MESSAGE),
                ],
            ),
        ),
        migrations.RunPython(clamp_existing, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="environment",
            constraint=models.CheckConstraint(
                condition=models.Q(finished_run_ttl__gte=TTL_MIN, finished_run_ttl__lte=TTL_MAX),
                name="finished_run_ttl_between_1_minute_and_90_days",
                violation_error_message=MESSAGE,
            ),
        ),
    ]
