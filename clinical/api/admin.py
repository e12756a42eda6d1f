"""Console pages for the API clients: tokens of the patient and provider apps, bound to their owners."""

from django.contrib import admin
from django.http import HttpResponseRedirect
from django.urls import reverse

from clinical.actions import api_clients as api_client_actions
from clinical.models import ApiClient
from core.redis import get_redis
from ops_console.admin_base import ChangeReasonForm, OpsModelAdmin
from ops_console.admin_site import ops_site


class ApiClientForm(ChangeReasonForm):
    class Meta:
        model = ApiClient
        fields = ["name", "scope", "provider", "patient", "is_active"]


# Redis, for minutes: a new token, shown once on the next page, never kept in the session table.
NEW_TOKEN_KEY = "ops:new-api-token:{session}:{client}"  # noqa: S105 (a key name, not a secret)
NEW_TOKEN_SECONDS = 300


@admin.register(ApiClient, site=ops_site)
class ApiClientAdmin(OpsModelAdmin):
    """Tokens of the patient and provider apps, each bound to its owner; shown once, right after
    creation; revoking one is final.
    """

    form = ApiClientForm
    retained = True  # revoke instead: the history keeps who used which client
    phi_access = True  # a patient token names its patient
    list_display = ["name", "scope", "provider", "patient", "token_prefix", "is_active", "expires_at", "last_used_at"]
    list_filter = ["scope", "is_active"]
    search_fields = ["name", "=token_prefix", "=provider__npi", "=patient__mrn"]
    list_select_related = ["provider", "patient"]
    autocomplete_fields = ["provider", "patient"]
    ordering = ["name", "id"]
    actions = ["revoke"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["name", "scope", "provider", "patient"]
        return ["name", "scope", "provider", "patient", "token_prefix", "is_active", "created_by", "created_at",
                "expires_at", "last_used_at", "change_reason"]  # fmt: skip

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        fixed = [
            "scope",
            "provider",
            "patient",
            "token_prefix",
            "created_by",
            "created_at",
            "expires_at",
            "last_used_at",
        ]
        return fixed if obj.is_active else [*fixed, "is_active"]  # revoking is final

    def revert_disabled(self, request, obj=None):
        """Never bring a token back (or change its owner) from an old version."""
        return True

    def save_model(self, request, obj, form, change):
        if change:
            api_client_actions.update_api_client(obj, actor=self.actor(request), reason=self.reason_given(form, ""))
            return
        created, token = api_client_actions.create_api_client(
            name=obj.name, scope=obj.scope, provider=obj.provider, patient=obj.patient, actor=self.actor(request)
        )
        obj.pk = created.pk
        # Kept in Redis (memory only) for the next page to show once: never in the session table.
        request.session.save()
        get_redis().set(_new_token_key(request, created.pk), token, ex=NEW_TOKEN_SECONDS)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        fresh = get_redis().getdel(_new_token_key(request, object_id)) if request.method == "GET" else None
        if fresh:
            extra_context = {**(extra_context or {}), "new_api_token": fresh}
        return super().change_view(request, object_id, form_url, extra_context)

    def response_add(self, request, obj, post_url_continue=None):
        return HttpResponseRedirect(reverse(f"{ops_site.name}:clinical_apiclient_change", args=[obj.pk]))

    @admin.action(description="Revoke selected clients (their tokens stop working at once)", permissions=["change"])
    def revoke(self, request, queryset):
        for client in queryset:
            api_client_actions.revoke_api_client(client, actor=self.actor(request), reason="revoked in the console")
        self.message_user(request, f"{queryset.count()} client(s) revoked.")


def _new_token_key(request, client_id) -> str:
    return NEW_TOKEN_KEY.format(session=request.session.session_key, client=client_id)
