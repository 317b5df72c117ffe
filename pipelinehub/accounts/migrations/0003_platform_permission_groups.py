"""The permission groups that platform mappings give, on the hub's own models and on Celery beat's
schedules (the hub's reconciles run from them):

- platform-viewer: view.
- platform-admin: add, change, delete and view; but only view for platform mappings (whoever may
  edit them may make themselves a superuser) and for the audit log (a record is never edited).

Users, groups and lockouts (auth, axes) stay with superusers. Models added by later migrations
are not added here: superusers extend the groups in the admin site.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations
from django.db.models import Q

HUB_APPS = ["accounts", "audit", "credentials", "environments", "sync", "django_celery_beat"]
VIEW_ONLY = Q(content_type__app_label="accounts", content_type__model="platformmapping") | Q(
    content_type__app_label="audit", content_type__model="auditevent"
)


def forwards(apps, schema_editor):
    _create_permissions(apps)
    Group = apps.get_model("auth", "Group")
    hub = apps.get_model("auth", "Permission").objects.filter(content_type__app_label__in=HUB_APPS)
    viewer = Group.objects.get_or_create(name="platform-viewer")[0]
    viewer.permissions.set(hub.filter(codename__startswith="view_"))
    admin = Group.objects.get_or_create(name="platform-admin")[0]
    admin.permissions.set(hub.exclude(VIEW_ONLY & ~Q(codename__startswith="view_")))


def _create_permissions(apps):
    """Django makes permissions after the last migration (post_migrate); these groups need the
    hub's ones now, on a fresh database too."""
    for label in HUB_APPS:
        app_config = apps.get_app_config(label)
        app_config.models_module = True
        create_permissions(app_config, verbosity=0, apps=apps)
        app_config.models_module = None


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_platformmapping"),
        ("audit", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("credentials", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
        ("environments", "0002_environment_acl_user"),
        ("sync", "0001_initial"),
    ]

    # Going back keeps the groups: users may be in them.
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
