"""Rename stored audit actions to the `<object>.<verb>` scheme (see `audit.service.action_name`).

Admin and team-admin events ("add", "change", "delete") take their object from the row's
object_type (`app_label.model_name`); the other old names map one to one. Updates go by
object_type, a query each, so a long audit log is renamed without loading its rows.
"""

from django.db import migrations

ADMIN_VERBS = ("add", "change", "delete")
RENAMED = {
    "acl_user": "environment.provision_acl_user",
    "flow_run_retry": "flow_run.retry",
    "flow_run_cancel": "flow_run.cancel",
    "rotate_encryption_keys": "secret.rotate_encryption_keys",
}
# Written by the login sync under these names before this migration (the admin can neither add
# nor change memberships): going back must leave them as they are.
ALREADY_IN_SCHEME = ("membership.add", "membership.change")


def forwards(apps, schema_editor):
    events = apps.get_model("audit", "AuditEvent").objects
    for object_type in _object_types(events.filter(action__in=ADMIN_VERBS)):
        model_name = object_type.rpartition(".")[2]
        for verb in ADMIN_VERBS:
            events.filter(action=verb, object_type=object_type).update(
                action=f"{model_name}.{verb}"
            )
    for old, new in RENAMED.items():
        events.filter(action=old).update(action=new)


def backwards(apps, schema_editor):
    events = apps.get_model("audit", "AuditEvent").objects
    renamed = events.exclude(action__in=ALREADY_IN_SCHEME)
    for object_type in _object_types(renamed):
        model_name = object_type.rpartition(".")[2]
        for verb in ADMIN_VERBS:
            renamed.filter(action=f"{model_name}.{verb}", object_type=object_type).update(
                action=verb
            )
    for old, new in RENAMED.items():
        events.filter(action=new).update(action=old)


def _object_types(events):
    """The `app_label.model_name` object types among `events` (unordered: the model's ordering
    would add its columns to the DISTINCT)."""
    typed = events.filter(object_type__contains=".").order_by()
    return list(typed.values_list("object_type", flat=True).distinct())


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards)]
