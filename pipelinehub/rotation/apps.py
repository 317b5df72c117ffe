from django.apps import AppConfig


class RotationConfig(AppConfig):
    name = "pipelinehub.rotation"
    verbose_name = "Password rotation"

    def ready(self):
        from . import schedules  # noqa: F401 - connects the schedule signals
