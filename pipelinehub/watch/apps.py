from django.apps import AppConfig


class WatchConfig(AppConfig):
    name = "pipelinehub.watch"
    verbose_name = "Redis health"

    def ready(self):
        from . import schedules  # noqa: F401 - connects the schedule signals
