from django.core.management.base import BaseCommand

from ops_console.roles import sync_roles


class Command(BaseCommand):
    help = "Create or update the console's role groups so they match ops_console/roles.py."

    def handle(self, *args, **options):
        for role, (added, removed) in sync_roles().items():
            self.stdout.write(f"{role}: +{added} -{removed} permissions")
