from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "pipelinehub.accounts"
    verbose_name = "Accounts and roles"

    def ready(self):
        from django.contrib import admin

        from . import signals  # noqa: F401 - connects the login receivers
        from .admin import replace_library_admins

        # Here, not in admin.py: the admin app loads every admin module before this runs.
        replace_library_admins(admin.site)
