"""References to secrets (Redis passwords, Prefect API keys).

The model holds a name and where the value lives; the value itself is only ever handed to a
connection factory or the password rotation, through `reveal()`.
"""

from django.db import models, transaction

from .backends import BACKENDS, get_backend


class SecretRef(models.Model):
    name = models.CharField(max_length=200, unique=True)
    backend = models.CharField(
        max_length=32,
        choices=[(key, backend.label) for key, backend in BACKENDS.items()],
        default="database",
    )
    ciphertext = models.BinaryField(default=b"", editable=False)
    version = models.PositiveIntegerField(
        default=0, editable=False, help_text="Incremented each time a new value is stored."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "secret"

    def __str__(self):
        return self.name

    def __repr__(self):
        return f"<SecretRef {self.name!r} v{self.version}>"

    @property
    def has_value(self):
        return bool(self.ciphertext)

    def reveal(self):
        """The current value. Only connection factories and the rotation may call this."""
        return get_backend(self.backend).get(self)

    def store(self, value):
        """Store `value` as the new current version and save."""
        if not value:
            raise ValueError("A secret value may not be empty.")
        with transaction.atomic():
            get_backend(self.backend).put(self, value)
            self.version += 1
            self.save()

    def rotate_encryption(self):
        """Re-encrypt under the newest encryption key; True when something changed."""
        if get_backend(self.backend).rotate(self):
            self.save(update_fields=["ciphertext", "updated_at"])
            return True
        return False
