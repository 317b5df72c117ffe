"""Secret backends: where the value behind a SecretRef actually lives.

A backend stores and returns the current value of a reference. Callers only ever go through
`SecretRef.reveal()` and `SecretRef.store()`, so a vault-style backend can be added here later
without touching them.
"""

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class SecretUnavailable(Exception):
    """The secret could not be read. The message names the reference, never the value."""


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


class DatabaseBackend:
    """Values encrypted with MultiFernet in the SecretRef row itself."""

    label = "Encrypted in the database"

    def get(self, ref):
        if not ref.ciphertext:
            raise SecretUnavailable(f"Secret {ref.name!r} has no value yet.")
        try:
            return multifernet().decrypt(bytes(ref.ciphertext)).decode()
        except InvalidToken:
            raise SecretUnavailable(
                f"Secret {ref.name!r} cannot be decrypted with the configured keys."
            ) from None

    def put(self, ref, value):
        ref.ciphertext = multifernet().encrypt(value.encode())

    def rotate(self, ref):
        """Re-encrypt under the newest key; True when the row changed."""
        if not ref.ciphertext:
            return False
        try:
            ref.ciphertext = multifernet().rotate(bytes(ref.ciphertext))
        except InvalidToken:
            raise SecretUnavailable(
                f"Secret {ref.name!r} cannot be decrypted with the configured keys."
            ) from None
        return True


BACKENDS = {"database": DatabaseBackend()}


def get_backend(name):
    try:
        return BACKENDS[name]
    except KeyError:
        raise SecretUnavailable(f"Unknown secret backend {name!r}.") from None
