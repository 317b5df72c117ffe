"""The default backend: versions encrypted (Fernet) in the hub's own database."""

from django.db import transaction
from django.db.models import Max

from ..encryption import multifernet
from ..models import SecretRef, SecretVersion
from . import SecretBackend, SecretUnavailable, Stages, register_secret_backend

Stage = SecretVersion.Stage


@register_secret_backend("database")
class DatabaseBackend(SecretBackend):
    label = "Encrypted in the database"

    def describe(self, ref):
        return "the hub's database"

    def stages(self, ref):
        if ref.pk is None:
            return Stages(None, None)  # a new reference has no versions yet
        staged = dict(
            ref.versions.filter(stage__in=[Stage.CURRENT, Stage.PREVIOUS]).values_list(
                "stage", "number"
            )
        )
        return Stages(*(_id(staged.get(stage)) for stage in (Stage.CURRENT, Stage.PREVIOUS)))

    def read(self, ref, version_id):
        return self._version(ref, version_id).reveal()

    def put(self, ref, value):
        with transaction.atomic():
            _lock(ref)
            last = ref.versions.aggregate(last=Max("number"))["last"] or 0
            ref.versions.filter(stage=Stage.PREVIOUS).update(stage=Stage.NONE)
            ref.versions.filter(stage=Stage.CURRENT).update(stage=Stage.PREVIOUS)
            version = ref.versions.create(
                number=last + 1,
                ciphertext=multifernet().encrypt(value.encode()),
                stage=Stage.CURRENT,
            )
        return _id(version.number)

    def mark(self, ref, current, previous):
        with transaction.atomic():
            _lock(ref)
            staged = [(self._version(ref, current), Stage.CURRENT)]
            if previous is not None:
                staged.append((self._version(ref, previous), Stage.PREVIOUS))
            # Unstage all first: the constraints allow one current and one previous at every
            # moment of the update.
            ref.versions.exclude(stage=Stage.NONE).update(stage=Stage.NONE)
            for version, stage in staged:
                ref.versions.filter(pk=version.pk).update(stage=stage)
        return current

    def _version(self, ref, version_id):
        version = None
        if version_id.isdigit():
            version = ref.versions.filter(number=int(version_id)).first()
        if version is None:
            raise SecretUnavailable(f"Secret {ref.name!r} has no version {version_id!r}.")
        return version


def _lock(ref):
    """Serialise writers of one secret: each numbers its version after the last one."""
    SecretRef.objects.select_for_update().only("pk").get(pk=ref.pk)


def _id(number):
    return None if number is None else str(number)
