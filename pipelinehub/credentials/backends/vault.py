"""HashiCorp Vault (or OpenBao) KV version 2, through hvac.

A version is a KV version number. The current version is the latest, as for everything else
that reads the secret, so a value written by someone else is what the hub uses next. The
previous version is the one before the latest, unless the hub recorded another one (or none)
for that latest version in the secret's custom metadata when it last marked versions. Marking
an older version current writes its data again as a new version (Vault's own rollback), so
that every reader sees it.

The secret is `location`, a path under VAULT_KV_MOUNT optionally followed by `#<field>`, else
PIPELINEHUB_SECRET_NAME_PREFIX followed by the ref's name; the value is the field `value` of
the secret's data unless `#<field>` names another, and storing keeps the other fields.
Authentication is VAULT_TOKEN, or an AppRole login (VAULT_ROLE_ID, VAULT_SECRET_ID) made again
when Vault stops taking its token; the `vault-static-role` backend reads through the same client
(`call_vault`).
"""

import functools
from datetime import UTC, datetime

import hvac
import requests
from django.conf import settings

from . import SecretBackend, SecretUnavailable, Stages, VersionedValue, register_secret_backend

FIELD = "value"
PREVIOUS = "pipelinehub-previous"
PREVIOUS_OF = "pipelinehub-previous-of"
NO_PREVIOUS = "none"  # custom metadata values may not be empty
TIMEOUT_SECONDS = 10


@register_secret_backend("vault")
class VaultBackend(SecretBackend):
    label = "HashiCorp Vault / OpenBao (KV v2)"

    def describe(self, ref):
        path, field = _address(ref)
        return f"the Vault secret {settings.VAULT_KV_MOUNT}/{path}, field {field!r}"

    def location_error(self, location):
        path, hash_sign, field = location.partition("#")
        if hash_sign and not (path and field):
            return "Write the location as <path> or <path>#<field>."
        return ""

    def stages(self, ref):
        metadata = _metadata(ref)
        if not metadata:
            return Stages(None, None)
        latest = metadata["current_version"]
        return Stages(_live(metadata, latest), _live(metadata, _previous_number(metadata, latest)))

    def current(self, ref):
        answer = _kv(ref, "read_secret_version", raise_on_deleted_version=True)
        if answer is None:
            raise SecretUnavailable(f"Secret {ref.name!r} has no value yet.")
        return VersionedValue(str(answer["data"]["metadata"]["version"]), _field(ref, answer))

    def read(self, ref, version_id):
        return _field(ref, _version(ref, version_id))

    def put(self, ref, value):
        metadata = _metadata(ref)
        latest = metadata.get("current_version", 0)
        data = _data(_version(ref, str(latest))) if _live(metadata, latest) else {}
        data[_address(ref)[1]] = value
        return _write(ref, data, latest)

    def mark(self, ref, current, previous):
        metadata = _metadata(ref)
        if previous is not None:
            _version(ref, previous)  # a clear error for an unknown version, before any write
        latest = metadata.get("current_version", 0)
        if current != str(latest):
            current = _write(ref, _data(_version(ref, current)), latest)
        recorded = {PREVIOUS_OF: current, PREVIOUS: previous or NO_PREVIOUS}
        _kv(
            ref,
            "update_metadata",
            custom_metadata={**(metadata.get("custom_metadata") or {}), **recorded},
            # The endpoint resets what it is not given: keep the operator's setting.
            delete_version_after=metadata.get("delete_version_after", "0s"),
        )
        return current


def _address(ref):
    """(path, field) of the ref's secret."""
    path, _, field = (ref.location or settings.SECRET_NAME_PREFIX + ref.name).partition("#")
    return path, field or FIELD


def _kv(ref, operation, **arguments):
    """One KV v2 call on the ref's path; None when the path or the version does not exist or
    is deleted."""
    path = _address(ref)[0]
    return call_vault(
        ref,
        f"{operation} on {path!r}",
        lambda client: getattr(client.secrets.kv.v2, operation)(
            path=path, mount_point=settings.VAULT_KV_MOUNT, **arguments
        ),
    )


def call_vault(ref, what, call):
    """`call(client)` with the hub's Vault client (VAULT_ADDR, its token or AppRole login), for
    every backend that reads Vault; None when Vault answers that the path does not exist. Other
    failures become SecretUnavailable naming the secret and `what` was asked, never a value."""
    if not settings.VAULT_ADDR:
        raise SecretUnavailable(f"Secret {ref.name!r}: VAULT_ADDR is not set.")
    try:
        return _with_login(call)
    except hvac.exceptions.InvalidPath:
        return None
    except hvac.exceptions.VaultError as exc:
        reasons = "; ".join(error for error in exc.errors or [] if isinstance(error, str))
        raise SecretUnavailable(
            f"Secret {ref.name!r}: Vault refused {what} "
            f"({type(exc).__name__}: {reasons or 'no reason given'})."
        ) from None
    except requests.RequestException as exc:
        raise SecretUnavailable(
            f"Secret {ref.name!r}: Vault at {settings.VAULT_ADDR} cannot be reached "
            f"({type(exc).__name__})."
        ) from None


def _with_login(call):
    """`call(client)`, and once more after a new AppRole login when Vault no longer takes the
    token (it expired)."""
    try:
        return call(_client())
    except hvac.exceptions.Forbidden:
        if not settings.VAULT_ROLE_ID:
            raise
        _client_for.cache_clear()
        return call(_client())


def _client():
    return _client_for(
        settings.VAULT_ADDR,
        settings.VAULT_TOKEN,
        settings.VAULT_ROLE_ID,
        settings.VAULT_SECRET_ID,
        settings.VAULT_CACERT,
    )


@functools.cache
def _client_for(address, token, role_id, secret_id, cacert):
    """One logged-in client per configuration for the process."""
    client = hvac.Client(
        url=address, token=token or None, verify=cacert or True, timeout=TIMEOUT_SECONDS
    )
    if role_id:
        client.auth.approle.login(role_id=role_id, secret_id=secret_id or None)
    return client


def _metadata(ref):
    """The secret's metadata (versions, custom metadata), {} when it does not exist."""
    answer = _kv(ref, "read_secret_metadata")
    return answer["data"] if answer else {}


def _version(ref, version_id):
    """The answer for one version (data and metadata); SecretUnavailable when it is gone."""
    answer = None
    if version_id.isdigit() and int(version_id) > 0:  # 0 would read the latest
        answer = _kv(
            ref, "read_secret_version", version=int(version_id), raise_on_deleted_version=True
        )
    if answer is None:
        raise SecretUnavailable(f"Secret {ref.name!r} has no version {version_id!r}.")
    return answer


def _write(ref, data, latest):
    """A new version of `data`; check-and-set on `latest`, so a concurrent writer's version is
    never overwritten unseen (Vault refuses, and the caller may try again)."""
    answer = _kv(ref, "create_or_update_secret", secret=data, cas=latest)
    return str(answer["data"]["version"])


def _data(answer):
    return dict(answer["data"]["data"] or {})


def _field(ref, answer):
    path, field = _address(ref)
    value = _data(answer).get(field)
    if not isinstance(value, str) or not value:
        raise SecretUnavailable(f"Secret {ref.name!r}: {path!r} has no field {field!r}.")
    return value


def _previous_number(metadata, latest):
    custom = metadata["custom_metadata"] or {}
    if custom.get(PREVIOUS_OF) == str(latest):
        recorded = custom.get(PREVIOUS, NO_PREVIOUS)
        return int(recorded) if recorded.isdigit() else None
    return latest - 1


def _live(metadata, number):
    """`number` as a version id when that version can be read, else None."""
    if number is None:
        return None
    version = metadata.get("versions", {}).get(str(number))
    if not version or version["destroyed"]:
        return None
    deletion = version["deletion_time"]
    if deletion and datetime.fromisoformat(deletion) <= datetime.now(UTC):
        return None
    return str(number)
