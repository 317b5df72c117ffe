from django.apps import AppConfig


class SyncConfig(AppConfig):
    name = "pipelinehub.sync"
    verbose_name = "Prefect sync"

    def ready(self):
        from . import schedules  # noqa: F401 - connects the schedule signals
