from django.apps import AppConfig


class LiveConfig(AppConfig):
    name = "pipelinehub.live"
    verbose_name = "Live board"
