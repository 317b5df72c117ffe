from django.apps import AppConfig


class EnvironmentsConfig(AppConfig):
    name = "pipelinehub.environments"
    verbose_name = "Teams and environments"

    def ready(self):
        from axes.models import AccessAttempt
        from django.contrib import admin
        from django_celery_beat.models import PeriodicTask

        from .admin import require_permission

        # Here, not in admin.py: the admin app has loaded every admin module before this runs.
        # Enabling, disabling or running schedules changes what runs: it needs "change";
        # cleaning up lockout records deletes them.
        require_permission(admin.site, PeriodicTask, "change")
        require_permission(admin.site, AccessAttempt, "delete")
