import logging

from django.apps import AppConfig
from django.core import checks
from django.core.exceptions import ImproperlyConfigured


class CredentialsConfig(AppConfig):
    name = "pipelinehub.credentials"
    verbose_name = "Credentials"

    def ready(self):
        # The backends register themselves when their modules are imported.
        from .backends import aws, database, mounted, vault, vault_static  # noqa: F401

        # botocore logs request and response bodies, secret values included, at DEBUG: never
        # let it, whatever LOG_LEVEL says.
        logging.getLogger("botocore").setLevel(logging.INFO)
        checks.register(check_default_backend)


def check_default_backend(app_configs, **kwargs):
    """A misnamed PIPELINEHUB_SECRET_BACKEND stops the start, not the first new secret."""
    from .models import default_backend

    try:
        default_backend()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="credentials.E001")]
    return []
