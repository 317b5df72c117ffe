"""Redis targets made before password rotation get their rotation schedule (new targets get it
from the post_save hook in rotation.schedules)."""

from django.db import migrations
from django.utils import timezone


def add_rotation_schedules(apps, schema_editor):
    from pipelinehub.rotation.schedules import ensure_schedule

    periodic_task = apps.get_model("django_celery_beat", "PeriodicTask")
    interval = apps.get_model("django_celery_beat", "IntervalSchedule")
    for target in apps.get_model("environments", "RedisTarget").objects.all():
        ensure_schedule(target, periodic_task, interval)
    # Historical models skip PeriodicTask.save(), which tells a running beat to reload.
    apps.get_model("django_celery_beat", "PeriodicTasks").objects.update_or_create(
        ident=1, defaults={"last_update": timezone.now()}
    )


def remove_rotation_schedules(apps, schema_editor):
    from pipelinehub.rotation.schedules import TASK

    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task=TASK).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("rotation", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(add_rotation_schedules, remove_rotation_schedules)]
