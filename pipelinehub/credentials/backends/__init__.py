"""Secret backends: where the value behind a SecretRef lives, with its versions.

A secret has versions; one is *current* (what connections use) and at most one is *previous*
(the one before, which a password rotation keeps valid until every client has moved on).
Every backend answers the same protocol (`SecretBackend`), with version ids as strings (AWS's
are UUIDs, Vault's and the database's are numbers). Callers never use a backend directly: they
go through `SecretRef` (`reveal`, `store`, `previous`, `reveal_version`, `mark_versions`).

Backends register themselves with `@register_secret_backend(name)` (NetBox's data backends do
the same); a SecretRef stores the name. The app's `ready()` imports the modules of this package,
so another app may register a backend of its own the same way.

No message raised here or by a backend may hold a value: they name the reference instead.
"""

from dataclasses import dataclass, field
from typing import NamedTuple

from django.core.exceptions import ImproperlyConfigured


class SecretUnavailable(Exception):
    """The secret could not be read or written. The message names the reference, never the
    value."""


class SecretReadOnly(SecretUnavailable):
    """The backend only reads: the secret is managed where it is mounted or injected."""


@dataclass(frozen=True)
class VersionedValue:
    """One version of a secret. The value stays out of `repr`, and so out of logs and
    tracebacks that print locals."""

    version_id: str
    value: str = field(repr=False)


class Stages(NamedTuple):
    """Ids of the current and the previous version; None where there is none."""

    current: str | None
    previous: str | None


class SecretBackend:
    """The protocol. Subclasses implement `stages`, `read`, `put` and `mark`."""

    name = ""  # set by register_secret_backend
    label = ""
    read_only = False

    def describe(self, ref):
        """Where the secret is, for messages and pages; asks nothing of the backend's service."""
        return f"{self.label}: {ref.location or ref.name}"

    def location_error(self, location):
        """Why `location` (SecretRef.location) cannot name a secret here, or ""."""
        return ""

    def stages(self, ref):
        """`Stages` of the secret, read without its values where the backend allows."""
        raise NotImplementedError

    def read(self, ref, version_id):
        """The value of one version; SecretUnavailable when it is gone."""
        raise NotImplementedError

    def current(self, ref):
        """The current `VersionedValue`; SecretUnavailable when there is none."""
        version_id = self.stages(ref).current
        if version_id is None:
            raise SecretUnavailable(f"Secret {ref.name!r} has no value yet.")
        return VersionedValue(version_id, self.read(ref, version_id))

    def put(self, ref, value):
        """Store `value` as a new version that becomes current, the current one becoming
        previous; the new version's id."""
        raise NotImplementedError

    def mark(self, ref, current, previous):
        """Make version `current` current and `previous` (or none, when None) previous; the id
        of the version that is now current (Vault's is a new one, see its backend)."""
        raise NotImplementedError


_registry = {}


def register_secret_backend(name):
    """Class decorator: one instance of the class serves every SecretRef of `name`."""

    def register(cls):
        if name in _registry:
            raise ImproperlyConfigured(f"Two secret backends are named {name!r}.")
        cls.name = name
        _registry[name] = cls()
        return cls

    return register


def get_backend(name):
    try:
        return _registry[name]
    except KeyError:
        known = ", ".join(sorted(_registry))
        raise SecretUnavailable(f"Unknown secret backend {name!r} (known: {known}).") from None


def backend_choices():
    return [(name, backend.label) for name, backend in sorted(_registry.items())]
