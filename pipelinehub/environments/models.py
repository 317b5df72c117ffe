"""Configuration that platform engineers edit in the admin: who owns which environment, and
where its Prefect runs come from and its Redis state goes.

Model code validates and describes; it never talks to Redis or Prefect.
"""

import hashlib
from datetime import timedelta
from urllib.parse import urlsplit

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import connection, models, transaction

from pipelinehub.credentials.models import SecretRef

from .selection import sharing_errors, workspace_identity
from .validators import (
    canonical_host,
    is_private_host,
    parse_node,
    prefixes_collide,
    validate_host,
    validate_key_prefix,
    validate_prefect_url,
)


class Team(models.Model):
    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=200)

    class Meta:
        ordering = ["slug"]

    def __str__(self):
        return self.name or self.slug


class PrefectWorkspace(models.Model):
    name = models.CharField(max_length=200, unique=True)
    api_url = models.CharField(
        "API URL",
        max_length=500,
        validators=[validate_prefect_url],
        help_text="A Prefect server's http(s)://host:4200/api, or a Prefect Cloud workspace URL.",
    )
    api_key = models.ForeignKey(
        SecretRef,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Needed for Prefect Cloud and servers with auth; leave empty otherwise.",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean(self):
        if self.api_key_id and (message := insecure_key_transport(self.api_url)):
            raise ValidationError({"api_url": message})


def insecure_key_transport(api_url):
    """Why an API key may not be sent to `api_url`, or "" when it may.

    The URL is parsed (scheme and host lowercased), so `HTTP://` counts as plain http.
    """
    parts = urlsplit(api_url)
    if parts.scheme != "https" and not is_private_host(parts.hostname or ""):
        return "Use https: an API key must not travel in clear to a public host."
    return ""


class StoredValuesMixin:
    """Remembers the field values a row was loaded with (the pattern of Django's "customizing
    model loading"), so that a save can tell what it changes."""

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._loaded_values = dict(zip(field_names, values, strict=True))
        return instance

    def changes_any(self, *attnames):
        """True when adding, or when one of `attnames` differs from the stored row."""
        loaded = getattr(self, "_loaded_values", None)
        if self._state.adding or loaded is None:
            return True
        return any(loaded.get(name) != getattr(self, name) for name in attnames)

    def refresh_from_db(self, *args, **kwargs):
        super().refresh_from_db(*args, **kwargs)
        self.forget_loaded_values()

    def forget_loaded_values(self):
        """After a save or a refresh, what is stored is what the instance holds (a deferred
        field, absent here, counts as changed)."""
        held = self.__dict__
        self._loaded_values = {
            f.attname: held[f.attname] for f in self._meta.concrete_fields if f.attname in held
        }


# pg_advisory_xact_lock(namespace, key): the namespace keeps our keys apart from other users of
# advisory locks in the same database.
SERVER_LOCK_NAMESPACE = 0x70680001


def lock_server(target):
    """Hold, until the transaction ends, one lock per node of `target`'s Redis server.

    Collision checks run after taking it and saves follow them in the same transaction, so two
    saves on one server run one after the other and the second sees the first: they cannot both
    pass. PostgreSQL only; SQLite, the single-user development default, has no such lock.
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for key in sorted(_lock_key(node) for node in target.server_nodes):
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [SERVER_LOCK_NAMESPACE, key])


def _lock_key(node):
    digest = hashlib.sha256(f"{node[0]}:{node[1]}".encode()).digest()
    return int.from_bytes(digest[:4], "big", signed=True)


class RedisTarget(StoredValuesMixin, models.Model):
    class Verify(models.TextChoices):
        REQUIRED = "required", "Verify the certificate and host name"
        OPTIONAL = "optional", "Verify the certificate if one is presented"
        NONE = "none", "Do not verify (testing only)"

    name = models.CharField(max_length=200, unique=True)
    host = models.CharField(max_length=253, validators=[validate_host])
    port = models.PositiveIntegerField(
        default=6379, validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    db = models.PositiveIntegerField("database", default=0, validators=[MaxValueValidator(15)])
    tls = models.BooleanField("TLS", default=False)
    tls_ca_path = models.CharField(
        "CA bundle path",
        max_length=500,
        blank=True,
        help_text="Absolute path on the PipelineHub hosts; empty uses the system's CAs.",
    )
    tls_verify = models.CharField(
        "certificate verification", max_length=16, choices=Verify.choices, default=Verify.REQUIRED
    )
    username = models.CharField(
        "ACL username", max_length=100, blank=True, help_text="Empty uses Redis's default user."
    )
    password = models.ForeignKey(
        SecretRef, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    replicas = models.TextField(
        blank=True, help_text="Replica nodes, one host:port per line (ACL users are set on each)."
    )

    class Meta:
        ordering = ["name"]
        verbose_name = "Redis target"

    def __str__(self):
        return self.name

    def save(self, *args, **kwargs):
        with transaction.atomic():
            self.validate_environments()
            super().save(*args, **kwargs)
        self.forget_loaded_values()

    @property
    def address(self):
        return f"{self.host}:{self.port}/{self.db}"

    @property
    def replica_nodes(self):
        return [parse_node(line) for line in self.replicas.splitlines() if line.strip()]

    @property
    def server_nodes(self):
        """The primary and the replicas, each host in its canonical spelling.

        Targets sharing a node are one Redis server, whatever their database numbers: ACL users
        live per server and key patterns hold in every database.
        """
        nodes = [(self.host, self.port), *self.replica_nodes]
        return frozenset((canonical_host(host), port) for host, port in nodes)

    def same_server_targets(self):
        """This target and every saved one sharing a node with it."""
        nodes = self.server_nodes
        others = [t for t in RedisTarget.objects.exclude(pk=self.pk) if t.server_nodes & nodes]
        return [self, *others]

    def clean(self):
        errors = {}
        if messages := self._transport_errors():
            errors["tls"] = messages
        if self.tls_ca_path and not self.tls_ca_path.startswith("/"):
            errors["tls_ca_path"] = "Give an absolute path, e.g. /etc/ssl/certs/redis-ca.pem."
        try:
            self.replica_nodes  # noqa: B018 - parsing is the check
        except ValidationError as exc:
            errors["replicas"] = exc.messages
        if errors:
            raise ValidationError(errors)
        self.validate_environments()

    def _transport_errors(self):
        """Replicas get the password as the primary does: each public node needs TLS."""
        if self.tls or not self.host:
            return []
        replicas = [host for host, _ in self._parsed_replicas()]
        return [
            f"TLS is required for {host}: it is not a loopback or private address. Turn TLS on "
            "(and give a CA bundle if the server's certificate is not from a public CA)."
            for host in dict.fromkeys([self.host, *replicas])
            if not is_private_host(host)
        ]

    def _parsed_replicas(self):
        try:
            return self.replica_nodes
        except ValidationError:
            return []  # reported on the replicas field

    def validate_environments(self):
        """A target moved onto another server takes its environments along: none of them may
        collide there. Checked under the server's lock, like an environment's save."""
        if self._state.adding or not self.changes_any("host", "port", "replicas"):
            return
        for environment in self.environments.all():
            environment.redis_target = self
            if errors := environment.server_errors():
                message = " ".join(str(m) for m in errors.values())
                raise ValidationError(f"Environment {environment} on this target: {message}")


class EnvironmentQuerySet(models.QuerySet):
    def with_connections(self):
        """With everything needed to reach its Prefect and its Redis loaded, so that code
        running in an event loop never queries the database by following a relation."""
        return self.select_related("team", "workspace__api_key", "redis_target")


class EnvironmentManager(models.Manager.from_queryset(EnvironmentQuerySet)):
    def get_queryset(self):
        return super().get_queryset().select_related("team")


# Bounds of the finished runs' TTL. Reconcile reads every run of the TTL window from the Prefect
# API every few minutes, so a long TTL makes each reconcile page through months of runs, and a huge
# one (99,999,999 days) overflows the window's start date; under a minute runs vanish as they end.
TTL_MIN = timedelta(minutes=1)
TTL_MAX = timedelta(days=90)
TTL_MESSAGE = "Keep finished runs between 1 minute and 90 days (e.g. 7 00:00:00 for 7 days)."


# What places an environment on a Redis server: a change to any of them is checked there.
PLACEMENT_FIELDS = ("key_prefix", "redis_target", "acl_username")


class Environment(StoredValuesMixin, models.Model):
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="environments")
    slug = models.SlugField(max_length=50, help_text="dev, staging, prod, ...")
    workspace = models.ForeignKey(
        PrefectWorkspace,
        on_delete=models.PROTECT,
        related_name="environments",
        verbose_name="Prefect workspace",
    )
    redis_target = models.ForeignKey(
        RedisTarget, on_delete=models.PROTECT, related_name="environments"
    )
    key_prefix = models.CharField(
        max_length=200,
        blank=True,
        validators=[validate_key_prefix],
        help_text="Leave empty for ph:{<team>.<env>}: . Environments on one Redis server (in any "
        "of its databases) may not have prefixes where one starts with the other.",
    )
    finished_run_ttl = models.DurationField(
        default=timedelta(days=7),
        validators=[
            MinValueValidator(TTL_MIN, message=TTL_MESSAGE),
            MaxValueValidator(TTL_MAX, message=TTL_MESSAGE),
        ],
        help_text="How long runs in a terminal state stay in Redis, between 1 minute and 90 "
        "days, e.g. 7 00:00:00 (7 days) or 12:00:00.",
    )
    work_pools = models.CharField(
        max_length=500,
        blank=True,
        help_text="Only runs from these Prefect work pools (names, comma-separated); empty: every "
        "run of the workspace. Required when teams share the workspace, with pools of their own.",
    )
    tags = models.CharField(
        max_length=500,
        blank=True,
        help_text="Only flow runs carrying all of these tags (comma-separated); empty: no filter.",
    )
    enabled = models.BooleanField(default=True)
    acl_username = models.CharField(
        "Redis ACL user",
        max_length=100,
        blank=True,
        editable=False,
        help_text="Set by the 'Create or update Redis ACL user' action: ph-env-<id>, a user "
        "confined to this environment's prefix and database, used for all of its Redis traffic.",
    )
    acl_password = models.ForeignKey(
        SecretRef, null=True, blank=True, editable=False, on_delete=models.PROTECT, related_name="+"
    )

    # An environment's name is its team's slug and its own: its team comes with it, so that a list
    # of environments (an admin filter, a select box) is one query, not one per row.
    objects = EnvironmentManager()

    class Meta:
        ordering = ["team__slug", "slug"]
        constraints = [
            models.UniqueConstraint(fields=["team", "slug"], name="unique_environment_per_team"),
            models.CheckConstraint(
                condition=models.Q(finished_run_ttl__gte=TTL_MIN, finished_run_ttl__lte=TTL_MAX),
                name="finished_run_ttl_between_1_minute_and_90_days",
                violation_error_message=TTL_MESSAGE,
            ),
        ]

    def __str__(self):
        return f"{self.team.slug}/{self.slug}" if self.team_id else self.slug

    def save(self, *args, **kwargs):
        if not self.key_prefix:
            self.key_prefix = self.default_prefix(self.team.slug, self.slug)
        with transaction.atomic():
            if self.moves(kwargs.get("update_fields")) and (errors := self.server_errors()):
                raise ValidationError(errors)
            super().save(*args, **kwargs)
        self.forget_loaded_values()

    def clean(self):
        if not self.key_prefix and self.slug and Environment.team.is_cached(self):
            self.key_prefix = self.default_prefix(self.team.slug, self.slug)
        placed = self.redis_target_id and self.key_prefix and self.moves()
        if placed and (errors := self.server_errors()):
            raise ValidationError(errors, code="server_collision")
        if self.workspace_id and self.team_id and (message := self.workspace_sharing_message()):
            raise ValidationError({"work_pools": message}, code="shared_workspace")

    def workspace_sharing_message(self):
        """Why this environment may not take runs from its Prefect workspace, or "" (see
        `selection.sharing_errors`). Workspaces are compared by URL, not by row."""
        identity = workspace_identity(self.workspace.api_url)
        others = Environment.objects.exclude(pk=self.pk).select_related("workspace")
        same = [
            other for other in others if workspace_identity(other.workspace.api_url) == identity
        ]
        return sharing_errors(self, same)

    def moves(self, update_fields=None):
        """Whether saving (these fields) puts the environment somewhere new on a Redis server.

        Rows that stay where they are are not checked again, so that a row saved before a rule
        tightened stays editable (its TTL, say) rather than failing every save.
        """
        fields = [self._meta.get_field(name) for name in PLACEMENT_FIELDS]
        saved = set(update_fields or ())
        attnames = [
            f.attname for f in fields if update_fields is None or {f.name, f.attname} & saved
        ]
        return bool(attnames) and self.changes_any(*attnames)

    @staticmethod
    def default_prefix(team_slug, env_slug):
        return f"ph:{{{team_slug}.{env_slug}}}:"

    def server_errors(self):
        """What this environment would collide with on its Redis server, by field ({} when
        nothing). Takes the server's lock first: see `lock_server`."""
        lock_server(self.redis_target)
        neighbours = list(self.neighbours())
        errors = {}
        if message := self.prefix_collision_message(neighbours):
            errors["key_prefix"] = message
        if message := self.acl_user_collision_message(neighbours):
            errors[NON_FIELD_ERRORS] = message
        return errors

    def neighbours(self):
        """The other environments on this environment's Redis server, in any of its databases."""
        targets = [target.pk for target in self.redis_target.same_server_targets() if target.pk]
        others = Environment.objects.filter(redis_target__in=targets).exclude(pk=self.pk)
        return others.select_related("redis_target")

    def prefix_collision_message(self, neighbours):
        """Why this prefix may not be used on its Redis server, or "" when it may.

        Every database counts: an ACL user's key patterns hold in all of them.
        """
        for other in neighbours:
            if prefixes_collide(self.key_prefix, other.key_prefix):
                return (
                    f"Prefix {self.key_prefix!r} collides with environment {other} "
                    f"(prefix {other.key_prefix!r}, on {other.redis_target.address}): on one "
                    "Redis server neither prefix may start with the other, in any database. "
                    "Choose another prefix."
                )
        return ""

    def acl_user_collision_message(self, neighbours):
        """Why this environment's ACL user may not be used on its Redis server, or "": one user
        for two environments would hold both passwords and one prefix."""
        if not self.acl_username:
            return ""
        for other in neighbours:
            if other.acl_username == self.acl_username:
                return (
                    f"Redis ACL user {self.acl_username} already belongs to environment {other} "
                    "on the same Redis server. Run 'Create or update the Redis ACL user' on this "
                    "environment to give it its own."
                )
        return ""
