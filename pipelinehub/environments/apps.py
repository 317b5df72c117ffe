from django.apps import AppConfig


class EnvironmentsConfig(AppConfig):
    name = "pipelinehub.environments"
    verbose_name = "Teams and environments"
