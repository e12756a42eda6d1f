from django.core.management.base import BaseCommand, CommandError

from clinical.actions import api_clients as api_client_actions
from clinical.models import ApiScope, Patient, Provider
from core.audit import Actor
from core.errors import ActionError


class Command(BaseCommand):
    help = (
        "Create an API client for one patient (the patient app) or one provider (the provider app) and print "
        "its bearer token (shown once; it expires after OPS_API_TOKEN_DAYS)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--scope", required=True, choices=ApiScope.values)
        parser.add_argument("--provider", metavar="NPI", help="for --scope provider: who the token acts for")
        parser.add_argument("--patient", metavar="MRN", help="for --scope patient: who the token acts for")

    def handle(self, *args, name, scope, provider, patient, **options):
        owner = {"provider": None, "patient": None}
        wanted = {ApiScope.PROVIDER: ("provider", provider, Provider, "npi"),
                  ApiScope.PATIENT: ("patient", patient, Patient, "mrn")}[scope]  # fmt: skip
        field, value, model, key = wanted
        other = "patient" if field == "provider" else "provider"
        if not value:
            raise CommandError(f"--{field} is required for --scope {scope}.")
        if provider if other == "provider" else patient:
            raise CommandError(f"--{other} is only for --scope {other}.")
        owner[field] = model.objects.filter(**{key: value}).first()
        if owner[field] is None:
            raise CommandError(f"--{field}: no {field} with {key.upper()} {value}.")
        try:
            _, token = api_client_actions.create_api_client(name=name, scope=scope, actor=Actor.system("cli"), **owner)
        except ActionError as error:
            raise CommandError(f"--{error.field or 'name'}: {error}") from None
        self.stdout.write(token)
