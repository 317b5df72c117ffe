"""The Fernet keys that encrypt secrets held in the database (the `database` backend)."""

import base64
import hashlib

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def _fernet_keys():
    keys = list(settings.SECRET_ENCRYPTION_KEYS)
    if keys:
        return keys
    if getattr(settings, "PRODUCTION", False):
        raise ImproperlyConfigured("PIPELINEHUB_SECRET_KEYS must be set in production.")
    # Development only: a key derived from SECRET_KEY so that a fresh checkout works.
    digest = hashlib.sha256(("pipelinehub-secrets:" + settings.SECRET_KEY).encode()).digest()
    return [base64.urlsafe_b64encode(digest).decode()]


def multifernet():
    """The configured keys, newest first: encrypts with the first, decrypts with any."""
    try:
        return MultiFernet([Fernet(key) for key in _fernet_keys()])
    except ValueError as exc:
        raise ImproperlyConfigured(
            "PIPELINEHUB_SECRET_KEYS holds a value that is not a Fernet key "
            "(32 url-safe base64-encoded bytes)."
        ) from exc
