"""References to secrets (Redis passwords, Prefect API keys), and the versions of the secrets
held in the database.

A SecretRef names a secret, the backend that holds it and where there (`location`); the value
itself is only ever handed to a connection factory or the password rotation, through
`reveal()`, `current()`, `previous()` and `reveal_version()`.
"""

from cryptography.fernet import InvalidToken
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import models, transaction

from .backends import SecretUnavailable, VersionedValue, get_backend
from .encryption import multifernet


def default_backend():
    """The backend of new secrets (PIPELINEHUB_SECRET_BACKEND). It must be one the hub writes
    to: the admin stores there the values typed for the secrets it creates."""
    name = settings.SECRET_DEFAULT_BACKEND
    try:
        backend = get_backend(name)
    except SecretUnavailable as exc:
        raise ImproperlyConfigured(f"PIPELINEHUB_SECRET_BACKEND: {exc}") from None
    if backend.read_only:
        raise ImproperlyConfigured(
            f"PIPELINEHUB_SECRET_BACKEND: {name!r} is read-only; new secrets need a backend "
            "the hub can store values in."
        )
    return name


class SecretRef(models.Model):
    name = models.CharField(max_length=200, unique=True)
    backend = models.CharField(max_length=32, default=default_backend)
    location = models.CharField(
        max_length=500,
        blank=True,
        help_text=(
            "Where the backend finds the secret: a path under PIPELINEHUB_SECRET_FILES_DIR "
            "(file), a variable name (env), a secret name or ARN (aws), a path under the KV "
            "mount, optionally with #field (vault). Empty for aws and vault: "
            "PIPELINEHUB_SECRET_NAME_PREFIX followed by the name."
        ),
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "secret"

    def __str__(self):
        return self.name

    def __repr__(self):
        return f"<SecretRef {self.name!r} ({self.backend})>"

    def clean(self):
        try:
            backend = self.secret_backend
        except SecretUnavailable as exc:
            raise ValidationError({"backend": str(exc)}) from None
        if message := backend.location_error(self.location):
            raise ValidationError({"location": message})

    @property
    def secret_backend(self):
        """The registered backend; SecretUnavailable for a name no backend has."""
        return get_backend(self.backend)

    @property
    def read_only(self):
        return self.secret_backend.read_only

    @property
    def version(self):
        """The current version's id, or None when the secret has no value."""
        return self.secret_backend.stages(self).current

    @property
    def has_value(self):
        return self.version is not None

    def reveal(self):
        """The current value. Only connection factories and the rotation may call this."""
        return self.current().value

    def current(self):
        """The current version and its value (a `VersionedValue`)."""
        return self.secret_backend.current(self)

    def previous(self):
        """The previous version and its value, or None: during a password rotation's grace
        period both it and the current one must work."""
        version_id = self.secret_backend.stages(self).previous
        if version_id is None:
            return None
        return VersionedValue(version_id, self.reveal_version(version_id))

    def reveal_version(self, version_id):
        """The value of one version, by its id (`version`, `VersionedValue.version_id`)."""
        return self.secret_backend.read(self, str(version_id))

    def store(self, value):
        """Store `value` as the new current version, the current one becoming the previous;
        the new version's id. The reference is saved first: a new one needs its row."""
        if not value:
            raise ValueError("A secret value may not be empty.")
        backend = self.secret_backend
        with transaction.atomic():
            self.save()
            return backend.put(self, value)

    def mark_versions(self, current, previous=None):
        """Make version `current` the current one and `previous` the previous one (None: no
        previous), as a rotation does to roll back or to end its grace period; the id of the
        version now current."""
        if previous is not None and str(previous) == str(current):
            raise ValueError("One version cannot be both current and previous.")
        previous = None if previous is None else str(previous)
        with transaction.atomic():
            self.save(update_fields=["updated_at"])
            return self.secret_backend.mark(self, str(current), previous)


class SecretVersion(models.Model):
    """A version of a secret of the `database` backend, encrypted with the first key of
    PIPELINEHUB_SECRET_KEYS (`rotate_secret_keys` re-encrypts them under a new one)."""

    class Stage(models.TextChoices):
        CURRENT = "current"
        PREVIOUS = "previous"
        NONE = "none"

    ref = models.ForeignKey(SecretRef, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    ciphertext = models.BinaryField(editable=False)
    stage = models.CharField(max_length=8, choices=Stage.choices, default=Stage.NONE)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["ref", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["ref", "number"], name="secretversion_number_unique"),
            models.UniqueConstraint(
                fields=["ref"],
                condition=models.Q(stage="current"),
                name="secretversion_one_current",
            ),
            models.UniqueConstraint(
                fields=["ref"],
                condition=models.Q(stage="previous"),
                name="secretversion_one_previous",
            ),
        ]

    def __str__(self):
        return f"version {self.number} ({self.stage})"

    def __repr__(self):
        return f"<SecretVersion ref={self.ref_id} number={self.number} stage={self.stage}>"

    def reveal(self):
        try:
            return multifernet().decrypt(bytes(self.ciphertext)).decode()
        except InvalidToken:
            raise self._undecryptable() from None

    def reencrypt(self):
        """Encrypt again under the newest key (the caller saves)."""
        try:
            self.ciphertext = multifernet().rotate(bytes(self.ciphertext))
        except InvalidToken:
            raise self._undecryptable() from None

    def _undecryptable(self):
        return SecretUnavailable(
            f"Secret {self.ref.name!r} version {self.number} cannot be decrypted with the "
            "configured keys."
        )
