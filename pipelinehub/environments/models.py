"""Configuration that platform engineers edit in the admin: who owns which environment, and
where its Prefect runs come from and its Redis state goes.

Model code validates and describes; it never talks to Redis or Prefect.
"""

from datetime import timedelta
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from pipelinehub.credentials.models import SecretRef

from .validators import (
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
    """Why an API key may not be sent to `api_url`, or "" when it may."""
    host = urlsplit(api_url).hostname or ""
    if api_url.startswith("http://") and not is_private_host(host):
        return "Use https: an API key must not travel in clear to a public host."
    return ""


class RedisTarget(models.Model):
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

    @property
    def address(self):
        return f"{self.host}:{self.port}/{self.db}"

    @property
    def replica_nodes(self):
        return [parse_node(line) for line in self.replicas.splitlines() if line.strip()]

    def clean(self):
        errors = {}
        if self.host and not self.tls and not is_private_host(self.host):
            errors["tls"] = (
                f"TLS is required for {self.host}: it is not a loopback or private address. "
                "Turn TLS on (and give a CA bundle if the server's certificate is not from a "
                "public CA)."
            )
        if self.tls_ca_path and not self.tls_ca_path.startswith("/"):
            errors["tls_ca_path"] = "Give an absolute path, e.g. /etc/ssl/certs/redis-ca.pem."
        try:
            self.replica_nodes  # noqa: B018 - parsing is the check
        except ValidationError as exc:
            errors["replicas"] = exc.messages
        if errors:
            raise ValidationError(errors)
        if self.pk:
            for environment in self.environments.select_related("team"):
                environment.redis_target = self
                if message := environment.prefix_collision_message():
                    raise ValidationError(f"Environment {environment} on this target: {message}")


class EnvironmentQuerySet(models.QuerySet):
    def with_connections(self):
        """With everything needed to reach its Prefect and its Redis loaded, so that code
        running in an event loop never queries the database by following a relation."""
        return self.select_related("team", "workspace__api_key", "redis_target")


class Environment(models.Model):
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
        help_text="Leave empty for ph:{<team>.<env>}: . Environments sharing a Redis database "
        "may not have prefixes where one starts with the other.",
    )
    finished_run_ttl = models.DurationField(
        default=timedelta(days=7),
        validators=[MinValueValidator(timedelta(minutes=1))],
        help_text="How long runs in a terminal state stay in Redis, e.g. 7 days or 12:00:00.",
    )
    enabled = models.BooleanField(default=True)
    acl_username = models.CharField(
        "Redis ACL user",
        max_length=100,
        blank=True,
        editable=False,
        help_text="Set by the 'Create or update Redis ACL user' action: a user confined to this "
        "environment's prefix, used for all of its Redis traffic.",
    )
    acl_password = models.ForeignKey(
        SecretRef, null=True, blank=True, editable=False, on_delete=models.PROTECT, related_name="+"
    )

    objects = EnvironmentQuerySet.as_manager()

    class Meta:
        ordering = ["team__slug", "slug"]
        constraints = [
            models.UniqueConstraint(fields=["team", "slug"], name="unique_environment_per_team"),
        ]

    def __str__(self):
        return f"{self.team.slug}/{self.slug}" if self.team_id else self.slug

    def save(self, *args, **kwargs):
        if not self.key_prefix:
            self.key_prefix = self.default_prefix(self.team.slug, self.slug)
        super().save(*args, **kwargs)

    def clean(self):
        if not self.key_prefix and self.team_id and self.slug:
            self.key_prefix = self.default_prefix(self.team.slug, self.slug)
        message = self.redis_target_id and self.key_prefix and self.prefix_collision_message()
        if message:
            raise ValidationError({"key_prefix": message}, code="prefix_collision")

    @staticmethod
    def default_prefix(team_slug, env_slug):
        return f"ph:{{{team_slug}.{env_slug}}}:"

    def prefix_collision_message(self):
        """Why this prefix may not be used on its Redis database, or "" when it may."""
        target = self.redis_target
        neighbours = (
            Environment.objects.filter(
                redis_target__host=target.host,
                redis_target__port=target.port,
                redis_target__db=target.db,
            )
            .exclude(pk=self.pk)
            .select_related("team")
        )
        for other in neighbours:
            if prefixes_collide(self.key_prefix, other.key_prefix):
                return (
                    f"Prefix {self.key_prefix!r} collides with environment {other} "
                    f"(prefix {other.key_prefix!r}) on the same Redis {target.address}: "
                    "neither prefix may start with the other. Choose another prefix."
                )
        return ""
