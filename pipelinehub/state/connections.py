"""Redis clients for the environments' Redis targets.

Passwords are read from the secret store by a credential provider at each new connection, so a
rotated password is used by new connections without a restart, and the password never sits in
a URL, a setting or a log line. Pools are kept per (target, user) for the life of the process.
"""

import threading

import redis
from redis.credentials import CredentialProvider

_pools = {}
_pools_lock = threading.Lock()

SOCKET_TIMEOUT = 5.0


class SecretCredentialProvider(CredentialProvider):
    """Username and the current password of a SecretRef, read when a connection opens."""

    def __init__(self, username, secret_ref_id):
        self.username = username
        self.secret_ref_id = secret_ref_id

    def get_credentials(self):
        from pipelinehub.credentials.models import SecretRef

        password = SecretRef.objects.get(pk=self.secret_ref_id).reveal()
        return (self.username, password) if self.username else (password,)


def _connection_kwargs(target, host, port, username, secret_ref_id):
    kwargs = {
        "host": host,
        "port": port,
        "db": target.db,
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": SOCKET_TIMEOUT,
        "health_check_interval": 30,
    }
    if secret_ref_id:
        kwargs["credential_provider"] = SecretCredentialProvider(username, secret_ref_id)
    elif username:
        kwargs["username"] = username
    if target.tls:
        kwargs.update(
            connection_class=redis.SSLConnection,
            ssl_cert_reqs=target.tls_verify,
            ssl_check_hostname=target.tls_verify == "required",
            ssl_ca_certs=target.tls_ca_path or None,
        )
    return kwargs


def _client(target, host, port, username, secret_ref_id):
    # The key holds everything that shapes a connection: an edited target gets a new pool.
    key = (
        target.pk,
        host,
        port,
        target.db,
        target.tls,
        target.tls_verify,
        target.tls_ca_path,
        username,
        secret_ref_id,
    )
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            kwargs = _connection_kwargs(target, host, port, username, secret_ref_id)
            connection_class = kwargs.pop("connection_class", redis.Connection)
            pool = redis.ConnectionPool(connection_class=connection_class, **kwargs)
            _pools[key] = pool
    return redis.Redis(connection_pool=pool)


def target_client(target, host=None, port=None):
    """A client with the target's own credentials (used for administration, e.g. ACL users)."""
    return _client(
        target, host or target.host, port or target.port, target.username, target.password_id
    )


def target_node_clients(target):
    """Clients for the primary and every replica: ACL users must be set on each node."""
    nodes = [(target.host, target.port), *target.replica_nodes]
    return [target_client(target, host, port) for host, port in nodes]


def environment_client(environment):
    """A client for one environment: its own confined ACL user when it has one."""
    target = environment.redis_target
    if environment.acl_password_id:
        return _client(
            target, target.host, target.port, environment.acl_username, environment.acl_password_id
        )
    return target_client(target)


def reset_pools():
    """Disconnect every pool (tests, and after a fork)."""
    with _pools_lock:
        for pool in _pools.values():
            pool.disconnect()
        _pools.clear()
