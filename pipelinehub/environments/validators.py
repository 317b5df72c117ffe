"""Checks on configuration that the admin and the models share.

They are pure functions of their input: no Redis, no Prefect, no DNS, so that what the admin
accepts does not depend on the network at the moment of saving.
"""

import ipaddress
import re
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_PREFIX_CHARS = re.compile(r"^[A-Za-z0-9:{}._-]+$")
_HASH_TAG = re.compile(r"\{[^{}]+\}")


_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})
LOOPBACK = "127.0.0.1"  # the canonical spelling of every loopback address


def validate_host(value):
    """A hostname or an IP address (IPv6 without brackets).

    A name ending in a number is refused: resolvers read `127.1` or `2130706433` as 127.0.0.1,
    so such a spelling would be one server under two names to the checks below.
    """
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not _HOSTNAME.match(value) or value.rpartition(".")[2].isdigit():
            raise ValidationError(
                f"{value!r} is neither a hostname nor an IP address (IPv4 written in full, "
                "e.g. 127.0.0.1).",
                code="invalid_host",
            ) from None


def _address(host):
    """`host` as an IP address (IPv4-mapped IPv6 as IPv4), or None for a name."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return (address.ipv4_mapped or address) if address.version == 6 else address


def canonical_host(host):
    """One spelling per machine, so that two spellings of a server count as one server.

    Without DNS (see the module's docstring): case and a trailing dot are dropped, IP
    addresses take their compressed form, and every loopback or unspecified address (0.0.0.0
    reaches the local machine too) and the localhost names become LOOPBACK. Two different names
    of one machine in DNS stay two names.
    """
    name = host.strip().rstrip(".").lower()
    if name in _LOOPBACK_NAMES:
        return LOOPBACK
    address = _address(name)
    if address is None:
        return name
    return LOOPBACK if address.is_loopback or address.is_unspecified else address.compressed


def is_private_host(host):
    """True for loopback and private-network addresses, where TLS may be left off.

    Any other hostname counts as public: we do not resolve names at validation time.
    """
    address = _address(canonical_host(host))
    return address is not None and (
        address.is_loopback or address.is_private or address.is_link_local
    )


def parse_node(value):
    """`host:port` (or `[v6]:port`) into (host, port), or a ValidationError saying what is wrong."""
    value = value.strip()
    match = re.match(
        r"^\[(?P<v6>[0-9A-Fa-f:.]+)\]:(?P<port>\d+)$|^(?P<host>[^:\s]+):(?P<p>\d+)$", value
    )
    if not match:
        raise ValidationError(
            f"Replica {value!r} must be written host:port (or [IPv6]:port).", code="invalid_node"
        )
    host = match.group("v6") or match.group("host")
    port = int(match.group("port") or match.group("p"))
    validate_host(host)
    if not 1 <= port <= 65535:
        raise ValidationError(f"Replica {value!r}: port must be 1-65535.", code="invalid_port")
    return host, port


def validate_key_prefix(value):
    if not _PREFIX_CHARS.match(value):
        raise ValidationError(
            "A key prefix may contain only letters, digits and : { } . _ -", code="prefix_chars"
        )
    if len(_HASH_TAG.findall(value)) != 1 or value.count("{") != 1:
        raise ValidationError(
            "A key prefix must contain exactly one non-empty {hash tag}, e.g. ph:{team.env}: ,"
            " so that all keys of an environment share one Redis Cluster slot.",
            code="prefix_hash_tag",
        )


def prefixes_collide(a, b):
    """Two environments on one Redis must not be able to touch each other's keys."""
    return a.startswith(b) or b.startswith(a)


def validate_prefect_url(value):
    URLValidator(schemes=["http", "https"])(value)
    path = urlsplit(value).path.rstrip("/")
    if not path.endswith("/api") and "/api/accounts/" not in path:
        raise ValidationError(
            "The Prefect API URL ends in /api (a Prefect server, e.g. http://127.0.0.1:4200/api) or"
            " is a Prefect Cloud workspace URL (https://api.prefect.cloud/api/accounts/<account>"
            "/workspaces/<workspace>).",
            code="prefect_url",
        )
