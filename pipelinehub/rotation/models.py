"""The history of password rotations: one row per Redis user rotated, which is also the state
that lets a rotation stopped after any step finish when it runs again."""

from django.conf import settings
from django.db import models

from pipelinehub.credentials.encryption import multifernet
from pipelinehub.credentials.models import SecretRef
from pipelinehub.environments.models import Environment, RedisTarget


class PasswordRotation(models.Model):
    class Step(models.TextChoices):
        # In order; each names the last step done.
        PENDING = "pending", "Started"
        ADDED = "added", "New password added on every node"
        STORED = "stored", "New password stored as the current version"
        VERIFIED = "verified", "New password logs in on every node"
        REMOVED = "removed", "Old password removed on every node"
        PERSISTED = "persisted", "ACL persisted on every node"

    class Status(models.TextChoices):
        RUNNING = "running"
        WAITING = "waiting", "Waiting for the grace period"
        FAILED = "failed"
        FINISHED = "finished"

    target = models.ForeignKey(RedisTarget, on_delete=models.CASCADE, related_name="rotations")
    environment = models.ForeignKey(
        Environment,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        help_text="The environment whose ACL user this is; empty for the target's own user.",
    )
    username = models.CharField("Redis user", max_length=100)
    secret = models.ForeignKey(SecretRef, null=True, on_delete=models.SET_NULL, related_name="+")
    step = models.CharField(max_length=16, choices=Step.choices, default=Step.PENDING)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    old_version = models.CharField(max_length=100, blank=True)
    new_version = models.CharField(max_length=100, blank=True)
    # The new password, encrypted like the database backend's versions, from the moment it is
    # generated until it is stored in the secret's backend: a rotation stopped in between goes
    # on with the very password it may already have added to some nodes.
    pending_ciphertext = models.BinaryField(null=True, editable=False)
    error = models.TextField(blank=True)
    notes = models.TextField(blank=True)
    trigger = models.CharField(max_length=16, default="beat")
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    started_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-pk"]
        indexes = [models.Index(fields=["target", "status"])]

    def __str__(self):
        return f"{self.username} on {self.target} ({self.started_at:%Y-%m-%d %H:%M})"

    def __repr__(self):
        return f"<PasswordRotation {self.pk} {self.username} {self.step} {self.status}>"

    @property
    def user_label(self):
        return f"{self.environment}'s ACL user" if self.environment_id else "the target's user"

    def hold_pending(self, password):
        self.pending_ciphertext = multifernet().encrypt(password.encode())

    def pending_password(self):
        return multifernet().decrypt(bytes(self.pending_ciphertext)).decode()

    def reached(self, step):
        return _ORDER.index(self.step) >= _ORDER.index(step)


_ORDER = list(PasswordRotation.Step)
