from django.apps import AppConfig


class SyncConfig(AppConfig):
    name = "pipelinehub.sync"
    verbose_name = "Prefect sync"
