from django.apps import AppConfig


class StateConfig(AppConfig):
    name = "pipelinehub.state"
    verbose_name = "Run state in Redis"
