from django.apps import AppConfig


class CredentialsConfig(AppConfig):
    name = "pipelinehub.credentials"
    verbose_name = "Credentials"
