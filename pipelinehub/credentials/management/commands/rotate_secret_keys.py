from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from pipelinehub.audit.service import record
from pipelinehub.credentials.backends import SecretUnavailable
from pipelinehub.credentials.models import SecretVersion


class Command(BaseCommand):
    help = (
        "Re-encrypt every version of every secret held in the database under the first key of "
        "PIPELINEHUB_SECRET_KEYS. Run it after prepending a new key; then the old key can be "
        "removed. Secrets held by other backends are not touched."
    )

    def handle(self, *args, **options):
        try:
            with transaction.atomic():
                count = self._reencrypt_all()
                record(
                    "secret.rotate_encryption_keys",
                    object_type="credentials.secretref",
                    after={"secret_versions_reencrypted": count},
                )
        except SecretUnavailable as exc:
            raise CommandError(f"Nothing was re-encrypted: {exc}") from None
        self.stdout.write(f"Re-encrypted {count} secret version(s) under the newest key.")

    def _reencrypt_all(self):
        """All or nothing: one version no key decrypts leaves every one as it was."""
        versions = SecretVersion.objects.select_for_update().select_related("ref")
        for version in versions:
            version.reencrypt()
            version.save(update_fields=["ciphertext"])
        return len(versions)
