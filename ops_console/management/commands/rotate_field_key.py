"""Re-encrypt every secret kept at rest with the current OPS_FIELD_KEY (see ops_console/fieldcrypt.py)."""

from django.core.management.base import BaseCommand
from django.db import transaction

from ops_console import fieldcrypt
from ops_console.models import PendingTotpSecret, TotpDevice


class Command(BaseCommand):
    help = (
        "Re-encrypt the two-factor secrets with OPS_FIELD_KEY. Rotate a key: set the new key as OPS_FIELD_KEY and "
        "the old one in OPS_FIELD_OLD_KEYS, run this, then remove the old key."
    )

    @transaction.atomic
    def handle(self, *args, **options):
        count = 0
        for model in (TotpDevice, PendingTotpSecret):
            for row in model.objects.select_for_update().only("id", "secret"):
                row.secret = fieldcrypt.rotate(row.secret)
                row.save(update_fields=["secret"])
                count += 1
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {count} secrets with the current OPS_FIELD_KEY."))
