"""Delete access log rows older than a duration (``--older-than 6y``): the only way rows leave."""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from core import actions


class Command(BaseCommand):
    help = "Delete access log rows older than --older-than (e.g. 6y, 90d); HIPAA keeps them six years."

    def add_arguments(self, parser):
        parser.add_argument("--older-than", required=True, help="Age such as 6y (years) or 90d (days).")

    def handle(self, *args, older_than: str, **options):
        try:
            cutoff = actions.access_log_cutoff(older_than, now=timezone.now())
            self.stdout.write(f"Deleting access log rows from before {cutoff:%Y-%m-%d %H:%M %Z}…")
            deleted = actions.prune_access_log(before=cutoff, progress=lambda n: self.stdout.write(f"  {n} deleted"))
        except ValueError as error:
            raise CommandError(f"--older-than: {error}") from None
        self.stdout.write(self.style.SUCCESS(f"Deleted {deleted} access log rows."))
