"""A static role of OpenBao's (or Vault's) database secrets engine, read-only.

With a static role (`redis-database-plugin` for a Redis ACL user) the engine owns an existing
user's password: it rotates it on its own schedule (`rotation_period`, or `rotate-role` by
hand) and publishes the current one at `<mount>/static-creds/<role>`. The hub reads it there at
each read, through the Vault client of the `vault` backend (same VAULT_ADDR, token or AppRole),
and follows a rotation at its next connection (the connections' provider re-reads the secret as
soon as Redis refuses the cached one). Storing a value or rotating is refused: the engine
rotates, and a password set by the hub would be overwritten by its next rotation.

The location is `<role>`, under the mount VAULT_DATABASE_MOUNT, or `<mount>/<role>`. As for
the other read-only backends, there is only a current version, named by a keyed digest.
"""

import re

from django.conf import settings

from . import SecretReadOnly, register_secret_backend
from .mounted import MountedBackend
from .vault import call_vault

ROLE_NAME = re.compile(r"\w(?:[\w.@-]*\w)?")  # the engine's own pattern for role names


@register_secret_backend("vault-static-role")
class VaultStaticRoleBackend(MountedBackend):
    label = "OpenBao / Vault database static role (read-only)"

    def location_error(self, location):
        if not ROLE_NAME.fullmatch(_address(location)[1]):
            return "Name the static role: <role> (under VAULT_DATABASE_MOUNT) or <mount>/<role>."
        return ""

    def describe(self, ref):
        mount, role = _address(ref.location)
        return f"the static role {role!r} of the database engine at {mount}/"

    def _value(self, ref):
        mount, role = _address(ref.location)
        answer = call_vault(
            ref,
            f"reading {mount}/static-creds/{role}",
            lambda client: client.secrets.database.get_static_credentials(role, mount_point=mount),
        )
        return answer["data"]["password"] if answer else None

    def _refusal(self, ref):
        mount, role = _address(ref.location)
        return SecretReadOnly(
            f"Secret {ref.name!r} is the password of {self.describe(ref)}: it is rotated by "
            f"OpenBao's database engine; rotate there (`bao write -f {mount}/rotate-role/{role}`), "
            "and the hub follows at its next connection."
        )


def _address(location):
    """(mount, role) of a location."""
    mount, _, role = location.rpartition("/")
    return mount or settings.VAULT_DATABASE_MOUNT, role
