import os
import secrets

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from pipelinehub.accounts.identity import break_glass_superusers, check_username


class Command(BaseCommand):
    help = (
        "Create the local break-glass admin login unless a break-glass superuser exists (an "
        "active local superuser with a password; superusers through Okta do not count). The "
        "username and password come from DJANGO_SUPERUSER_USERNAME / DJANGO_SUPERUSER_PASSWORD, "
        "or a password is generated and printed this once."
    )

    def handle(self, *args, **options):
        existing = break_glass_superusers().order_by("pk").first()
        if existing is not None:
            name = existing.get_username()
            self.stdout.write(f"Admin login: {name} (exists; password unchanged)")
            return
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin")
        self._check_free(username)
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD") or secrets.token_urlsafe(12)
        get_user_model().objects.create_superuser(username=username, email="", password=password)
        if os.environ.get("DJANGO_SUPERUSER_PASSWORD"):
            self.stdout.write(f"Admin login created: {username} (password from the environment)")
        else:
            self.stdout.write(f"Admin login created: {username} / {password}  (shown only now)")

    def _check_free(self, username):
        try:
            check_username(username)
        except ValidationError as exc:
            raise CommandError(exc.messages[0]) from exc
        if get_user_model().objects.filter(username=username).exists():
            raise CommandError(
                f"{username} exists but cannot log in with a password as a superuser; set "
                "DJANGO_SUPERUSER_USERNAME to another name."
            )
