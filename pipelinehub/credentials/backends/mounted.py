"""Read-only backends for secrets that the platform hands to the process: a file mounted under
PIPELINEHUB_SECRET_FILES_DIR (a Kubernetes secret volume, a Docker secret) or an environment
variable named with PIPELINEHUB_SECRET_ENV_PREFIX.

Each read reads again (the connections' provider caches for a few seconds), so a secret
remounted by Kubernetes is picked up without a restart. Both places are confined: a secret
naming any file or variable could send the hub's own keys (DJANGO_SECRET_KEY) as a password to
a Redis server of an admin's choosing. There is only a current version, named by a keyed digest
of the value; storing a new one or rotating is refused, as it belongs to whoever manages the
mount.
"""

import hashlib
import hmac
import os
import re
from pathlib import Path

from django.conf import settings

from . import (
    SecretBackend,
    SecretReadOnly,
    SecretUnavailable,
    Stages,
    VersionedValue,
    register_secret_backend,
)

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class MountedBackend(SecretBackend):
    """Subclasses read the value (`_value`) and say where it comes from (`describe`); one whose
    value something else rotates says where to rotate it (`_refusal`)."""

    read_only = True

    def _value(self, ref):
        raise NotImplementedError

    def stages(self, ref):
        value = self._checked_value(ref)
        return Stages(_version_id(value) if value else None, None)

    def current(self, ref):
        value = self._checked_value(ref)
        if not value:
            raise SecretUnavailable(
                f"Secret {ref.name!r}: {self.describe(ref)} is missing or empty."
            )
        return VersionedValue(_version_id(value), value)

    def read(self, ref, version_id):
        current = self.current(ref)
        if current.version_id != version_id:
            raise SecretUnavailable(
                f"Secret {ref.name!r} has no version {version_id!r}: {self.describe(ref)} "
                "holds only its current value."
            )
        return current.value

    def put(self, ref, value):
        raise self._refusal(ref)

    def mark(self, ref, current, previous):
        raise self._refusal(ref)

    def _checked_value(self, ref):
        if message := self.location_error(ref.location):
            raise SecretUnavailable(f"Secret {ref.name!r}: {message}")
        return self._value(ref)

    def _refusal(self, ref):
        return SecretReadOnly(
            f"Secret {ref.name!r} is read from {self.describe(ref)}, which PipelineHub does not "
            "write: store a new value or rotate it where it is managed (the Kubernetes secret, "
            "the platform's configuration), or give the secret a backend PipelineHub writes to."
        )


def _version_id(value):
    """Names the value without giving it away: keyed, so an id is no test for guesses."""
    digest = hmac.new(settings.SECRET_KEY.encode(), value.encode(), hashlib.sha256)
    return digest.hexdigest()[:16]


@register_secret_backend("file")
class FileBackend(MountedBackend):
    label = "File under PIPELINEHUB_SECRET_FILES_DIR (read-only)"

    def location_error(self, location):
        if not settings.SECRET_FILES_DIR:
            return "PIPELINEHUB_SECRET_FILES_DIR is not set, so no file may be read."
        if not location:
            return "Name the file: a path under PIPELINEHUB_SECRET_FILES_DIR."
        if not _path(location).is_relative_to(_root()):
            return f"The file {location!r} is outside PIPELINEHUB_SECRET_FILES_DIR."
        return ""

    def describe(self, ref):
        return f"the file {ref.location!r}"

    def _value(self, ref):
        """The file's text without the line end that `echo` and editors leave."""
        try:
            return _path(ref.location).read_text(encoding="utf-8").rstrip("\r\n")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise SecretUnavailable(
                f"Secret {ref.name!r}: {self.describe(ref)} cannot be read ({reason})."
            ) from None


def _root():
    return Path(settings.SECRET_FILES_DIR).resolve()


def _path(location):
    """Symbolic links resolved (Kubernetes mounts through `..data` links): what is checked to
    be under the directory is what is read."""
    return (_root() / location).resolve()


@register_secret_backend("env")
class EnvironmentBackend(MountedBackend):
    label = "Environment variable (read-only)"

    def location_error(self, location):
        prefix = settings.SECRET_ENV_PREFIX
        if not prefix:
            return "PIPELINEHUB_SECRET_ENV_PREFIX is empty, so no variable may be read."
        if not (ENV_NAME.fullmatch(location) and location.startswith(prefix)):
            return f"Name an environment variable whose name starts with {prefix!r}."
        return ""

    def describe(self, ref):
        return f"the environment variable {ref.location}"

    def _value(self, ref):
        return os.environ.get(ref.location)
