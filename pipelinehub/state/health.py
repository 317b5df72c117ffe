"""Health probes of a Redis target: what its nodes say about memory, eviction, replication and
TLS, and how much of it each environment on it takes.

A probe reads, never writes, and never raises for a node that does not answer: an unreachable
node is a result ("unreachable", with the error's class and its socket reason, never the error's
text, which a server may fill with anything). It returns plain JSON-able data, so that the watch
can store it as a snapshot and compare it with the next one:

    {"reachable": bool, "error": str,            # the primary's
     "nodes": [{"address", "role" ("primary" | "replica", as configured), "reachable", "error",
                "run_id", "used_memory", "maxmemory", "policy", "config_policy", "config_error",
                "evicted_keys", "keys", "replication": {...}, "tls": {"not_after", "error"}}],
     "environments": {"<key>": {"keys", "keys_exact", "memory", "inflight_flow",
                                "last_reconcile", "error"}}}

Probes connect afresh with the target's own credentials and no retries: a probe says at once
what a new connection meets, rather than retrying for seconds what it should report.
"""

import socket
import ssl
from datetime import UTC

import redis
from cryptography import x509
from redis.backoff import NoBackoff
from redis.retry import Retry

from .connections import SOCKET_TIMEOUT, target_client
from .keyspace import Keyspace
from .records import TERMINAL_STATES

# Counting an environment's keys walks the whole database with SCAN MATCH: at most SCAN_CALLS
# calls of SCAN_COUNT keys each, then the count is extrapolated from the database's size.
SCAN_COUNT = 1000
SCAN_CALLS = 100
# Keys whose MEMORY USAGE is read besides the environment's own big keys, to scale up by count.
MEMORY_SAMPLE = 50
INFO_SECTIONS = ("server", "memory", "stats", "keyspace", "replication")


def probe_target(target, prefixes):
    """Probe the target's primary and replicas, and each environment's keys on the primary.

    `prefixes` maps a key of the caller's choosing (an environment's id) to its key prefix.
    """
    nodes = [("primary", target.host, target.port)]
    nodes += [("replica", host, port) for host, port in target.replica_nodes]
    results = [_probe_node(target, role, host, port) for role, host, port in nodes]
    primary = results[0]
    result = {"reachable": primary["reachable"], "error": primary["error"], "nodes": results}
    result["environments"] = _environments(target, primary, prefixes)
    return result


def _probe_node(target, role, host, port):
    node = {"address": f"{host}:{port}", "role": role, "reachable": False, "error": ""}
    client = _single_try_client(target, host, port)
    try:
        node.update(_node_facts(client, target.db))
        node["reachable"] = True
    except redis.RedisError as exc:
        node["error"] = error_text(exc)
    finally:
        client.close()
        client.connection_pool.disconnect()
    if target.tls:
        node["tls"] = certificate_expiry(host, port)
    return node


def _single_try_client(target, host, port):
    """A client of its own for one probe: the target's connection settings and credential
    provider (the password never passes through here), without redis-py's retries."""
    pool = target_client(target, host, port).connection_pool
    kwargs = {**pool.connection_kwargs, "retry": Retry(NoBackoff(), 0)}
    kwargs.pop("health_check_interval", None)
    return redis.Redis(
        connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **kwargs)
    )


def _node_facts(client, db):
    with client.pipeline(transaction=False) as pipe:
        for section in INFO_SECTIONS:
            pipe.info(section)
        server, memory, stats, keyspace, replication = pipe.execute()
    return {
        "run_id": server.get("run_id", ""),
        "redis_version": server.get("redis_version", ""),
        "used_memory": memory.get("used_memory", 0),
        "maxmemory": memory.get("maxmemory", 0),
        "policy": memory.get("maxmemory_policy", ""),
        **_configured_policy(client),
        "evicted_keys": stats.get("evicted_keys", 0),
        "keys": keyspace.get(f"db{db}", {}).get("keys", 0),
        "replication": _replication(replication),
    }


def _configured_policy(client):
    """The policy as CONFIG GET reads it. A user without CONFIG (or a managed Redis that renamed
    it) gets "config_error" instead; INFO's policy still stands."""
    try:
        reply = client.config_get("maxmemory-policy")
    except redis.ResponseError as exc:
        return {"config_policy": None, "config_error": type(exc).__name__}
    return {"config_policy": reply.get("maxmemory-policy"), "config_error": ""}


def _replication(info):
    """What a primary says of its replicas, or a replica of its link to its primary."""
    facts = {"role": info.get("role", ""), "master_repl_offset": info.get("master_repl_offset", 0)}
    if facts["role"] == "slave":
        facts["master_link_status"] = info.get("master_link_status", "")
        facts["slave_repl_offset"] = info.get("slave_repl_offset", 0)
    else:
        facts["replicas"] = [
            {
                "address": f"{value.get('ip')}:{value.get('port')}",
                "state": value.get("state", ""),
                "offset": value.get("offset", 0),
                "lag": value.get("lag", 0),
            }
            for name, value in info.items()
            if name.startswith("slave") and isinstance(value, dict)
        ]
    return facts


def certificate_expiry(host, port, timeout=SOCKET_TIMEOUT):
    """{"not_after": ISO time, "error": ""} of the certificate the server presents.

    Read without verifying it, and nothing is sent over that connection: an expired or
    otherwise refused certificate is what this must be able to report (the verified connections
    of the probe report the refusal itself).
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except OSError as exc:  # ssl.SSLError included
        return {"not_after": None, "error": error_text(exc)}
    expiry = x509.load_der_x509_certificate(der).not_valid_after_utc
    return {"not_after": expiry.astimezone(UTC).isoformat(), "error": ""}


def _environments(target, primary, prefixes):
    if not primary["reachable"]:
        return {key: {"error": primary["error"]} for key in prefixes}
    client = _single_try_client(target, target.host, target.port)
    try:
        return {
            key: _environment_usage(client, prefix, primary["keys"])
            for key, prefix in prefixes.items()
        }
    finally:
        client.close()
        client.connection_pool.disconnect()


def _environment_usage(client, prefix, db_keys):
    keyspace = Keyspace(prefix)
    try:
        keys, exact, sample = _count_keys(client, keyspace.pattern, db_keys)
        memory = _memory(client, keyspace, keys, sample)
        with client.pipeline(transaction=False) as pipe:
            pipe.zcard(keyspace.inflight("flow"))
            pipe.hget(keyspace.meta, "last_reconcile")
            inflight, last_reconcile = pipe.execute()
    except redis.RedisError as exc:
        return {"error": error_text(exc)}
    return {
        "keys": keys,
        "keys_exact": exact,
        "memory": memory,
        "inflight_flow": inflight,
        "last_reconcile": last_reconcile.decode() if last_reconcile else None,
        "error": "",
    }


def _count_keys(client, pattern, db_keys):
    """(count, exact, first MEMORY_SAMPLE keys). Past SCAN_CALLS calls the count is scaled to
    the database's size from the share of the keys examined that matched."""
    cursor, matched, sample = 0, 0, []
    for _ in range(SCAN_CALLS):
        cursor, keys = client.scan(cursor, match=pattern, count=SCAN_COUNT)
        matched += len(keys)
        sample += keys[: MEMORY_SAMPLE - len(sample)]
        if cursor == 0:
            return matched, True, sample
    examined = min(db_keys, SCAN_CALLS * SCAN_COUNT) or 1
    return max(matched, round(matched * db_keys / examined)), False, sample


def _big_keys(keyspace):
    """The environment's keys that hold most of its state, measured one by one."""
    names = [keyspace.flow_runs, keyspace.runs, keyspace.changes, keyspace.counts, keyspace.meta]
    names += [keyspace.inflight("flow"), keyspace.inflight("task")]
    names += [keyspace.finished(state) for state in sorted(TERMINAL_STATES)]
    return [name.encode() for name in names]


def _memory(client, keyspace, count, sample):
    """Bytes: the big keys measured, the others estimated from the sample's mean."""
    big = _big_keys(keyspace)
    others = [key for key in sample if key not in big]
    with client.pipeline(transaction=False) as pipe:
        for key in big + others:
            pipe.memory_usage(key)
        sizes = pipe.execute()
    big_sizes = [size for size in sizes[: len(big)] if size is not None]
    other_sizes = [size for size in sizes[len(big) :] if size is not None]
    rest = max(count - len(big_sizes), 0)
    mean = sum(other_sizes) / len(other_sizes) if other_sizes else 0
    return sum(big_sizes) + round(mean * rest)


def error_text(exc):
    """The error's class and, for a socket error, its reason ("ConnectionError: Connection
    refused"). Not the error's message: it names what the caller asked for, and must not carry
    anything a page may not show."""
    cause = exc if isinstance(exc, OSError) else (exc.__cause__ or exc.__context__)
    if not isinstance(cause, OSError):
        return type(exc).__name__
    reason = getattr(cause, "reason", None) or cause.strerror or type(cause).__name__
    return f"{type(exc).__name__}: {reason}"
