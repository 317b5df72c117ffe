from django.core.management.base import BaseCommand
from django.db import transaction

from pipelinehub.audit.service import record
from pipelinehub.credentials.models import SecretRef


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret under the first key of PIPELINEHUB_SECRET_KEYS. "
        "Run it after prepending a new key; then the old key can be removed."
    )

    def handle(self, *args, **options):
        with transaction.atomic():
            rotated = [
                ref for ref in SecretRef.objects.select_for_update() if ref.rotate_encryption()
            ]
            record(
                "rotate_encryption_keys",
                object_type="credentials.secretref",
                after={"secrets_reencrypted": len(rotated)},
            )
        self.stdout.write(f"Re-encrypted {len(rotated)} secret(s) under the newest key.")
