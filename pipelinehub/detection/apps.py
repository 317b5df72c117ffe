from django.apps import AppConfig


class DetectionConfig(AppConfig):
    name = "pipelinehub.detection"
    verbose_name = "Run detection"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import schedules  # noqa: F401 - connects the schedule and settings signals
