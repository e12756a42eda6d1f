from django.core.management.base import BaseCommand, CommandError

from clinical import actions
from clinical.models import ApiScope, Provider
from ops_console.audit import Actor
from ops_console.errors import ActionError


class Command(BaseCommand):
    help = "Create an API client for the patient or provider app and print its bearer token (shown once)."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--scope", required=True, choices=ApiScope.values)
        parser.add_argument("--provider", metavar="NPI", help="required for --scope provider: who the token acts for")

    def handle(self, *args, name, scope, provider, **options):
        bound = None
        if scope == ApiScope.PROVIDER:
            if not provider:
                raise CommandError("--provider NPI is required for --scope provider.")
            bound = Provider.objects.filter(npi=provider).first()
            if bound is None:
                raise CommandError(f"--provider: no provider with NPI {provider}.")
        elif provider:
            raise CommandError("--provider is only for --scope provider.")
        try:
            _, token = actions.create_api_client(name=name, scope=scope, provider=bound, actor=Actor.system("cli"))
        except ActionError as error:
            raise CommandError(f"--{error.field or 'name'}: {error}") from None
        self.stdout.write(token)
