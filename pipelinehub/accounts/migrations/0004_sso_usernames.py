"""SSO users made before usernames were derived from the IdP subject took their
`preferred_username` (`admin` included): they get their derived username now rather than at
their next login, so that no local name stays taken by one of them."""

from django.conf import settings
from django.db import migrations

from pipelinehub.accounts.identity import sso_username
from pipelinehub.accounts.oidc import PROVIDER_ID


def forwards(apps, schema_editor):
    User = apps.get_model(settings.AUTH_USER_MODEL)
    accounts = apps.get_model("socialaccount", "SocialAccount").objects.filter(provider=PROVIDER_ID)
    for user_id, uid in accounts.values_list("user_id", "uid"):
        User.objects.filter(pk=user_id).update(username=sso_username(uid))


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_platform_permission_groups"),
        ("socialaccount", "0006_alter_socialaccount_extra_data"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    # Going back keeps the derived names: the chosen ones are not stored anywhere.
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
