import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create the local break-glass admin login if it does not exist. The username and password "
        "come from DJANGO_SUPERUSER_USERNAME / DJANGO_SUPERUSER_PASSWORD, or a password is "
        "generated and printed this once."
    )

    def handle(self, *args, **options):
        User = get_user_model()
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin")
        if User.objects.filter(username=username).exists():
            self.stdout.write(f"Admin login: {username} (exists; password unchanged)")
            return
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD") or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        if os.environ.get("DJANGO_SUPERUSER_PASSWORD"):
            self.stdout.write(f"Admin login created: {username} (password from the environment)")
        else:
            self.stdout.write(f"Admin login created: {username} / {password}  (shown only now)")
