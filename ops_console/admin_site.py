"""The console: a private AdminSite whose home page is an operations dashboard."""

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, Permission
from django.db.models import Exists, OuterRef, Prefetch, prefetch_related_objects
from django.urls import get_script_prefix, get_urlconf
from django.utils.translation import get_language

from ops_console.models import TotpDevice
from ops_console.roles import ROLES
from ops_console.signin import LockoutAuthenticationForm, do_unlock_sign_in
from ops_console.twofactor.actions import do_reset_totp_device

RECENT_ACTIONS = 10  # as many as Django's dashboard shows
APP_LISTS_KEPT = 256  # app lists kept per process: one per role, language and URL set in practice


class OpsAdminSite(admin.AdminSite):
    site_header = "Ops Console"
    site_title = "Ops Console"
    index_title = "Operations"
    index_template = "admin/ops_index.html"
    site_url = None  # the console is the whole site: no "View site" link
    login_form = LockoutAuthenticationForm  # locks out guessing per username and per address

    def __init__(self, name="admin"):
        super().__init__(name)
        self._app_lists = {}

    def register(self, model_or_iterable, admin_class=None, **options):
        """Register models as Django does; the app lists made before are forgotten."""
        super().register(model_or_iterable, admin_class, **options)
        self._app_lists.clear()

    def unregister(self, model_or_iterable):
        """Unregister models as Django does; the app lists made before are forgotten."""
        super().unregister(model_or_iterable)
        self._app_lists.clear()

    def get_app_list(self, request, app_label=None):
        """Return Django's app list, made once per set of permissions instead of on every page.

        Every console page shows it (the sidebar): Django makes it anew each time, five permission
        checks and two or three ``reverse()`` calls for each of the site's models, about 1 ms of a
        page. What it depends on is in the key: the user's permissions (none for an inactive
        user, all for an active superuser), the language, the URL set and prefix, the app asked
        for. The console's ModelAdmins decide their model-level permissions from those alone
        (``retained``, ``ReadOnlyAdmin``). Each call returns its own copy of the lists and dicts.
        """
        user = request.user
        # An active superuser has every permission: Django reads none of them for one, nor does this.
        perms = "all" if user.is_active and user.is_superuser else frozenset(user.get_all_permissions())
        key = (app_label, perms, get_language(), get_urlconf() or settings.ROOT_URLCONF, get_script_prefix())
        app_list = self._app_lists.get(key)
        if app_list is None:
            if len(self._app_lists) >= APP_LISTS_KEPT:
                self._app_lists.clear()
            app_list = self._app_lists[key] = super().get_app_list(request, app_label)
        return [
            {**app, "models": [{**model, "perms": dict(model["perms"])} for model in app["models"]]} for app in app_list
        ]

    def get_urls(self):
        """Add the console's own pages (live queues, global search) behind the admin's login."""
        from django.urls import path

        from ops_console import views as ops_views
        from ops_console.twofactor import views as two_factor
        from oversight import views
        from search import views as search_views

        own = [
            path("live/", self.admin_view(lambda request: views.live_queues(request, self)), name="live_queues"),
            path("live/data.json", self.admin_view(views.live_queues_data), name="live_queues_data"),
            path("search/", self.admin_view(lambda r: search_views.global_search(r, self)), name="global_search"),
            path("slow-pages/", self.admin_view(lambda r: ops_views.slow_pages(r, self)), name="slow_pages"),
            # Open before the second factor is given (ops_console.twofactor.middleware).
            path("two-factor/setup/", self.admin_view(lambda r: two_factor.setup(r, self)), name="two_factor_setup"),
            path("two-factor/verify/", self.admin_view(lambda r: two_factor.verify(r, self)), name="two_factor_verify"),
        ]
        return own + super().get_urls()

    def each_context(self, request):
        """Add the open alerts banner (from Redis, no query) for users who may view alerts."""
        from oversight.banner import banner_for

        return {**super().each_context(request), "ops_alert_banner": banner_for(request)}

    def autocomplete_view(self, request):
        """Answer a form's autocomplete only for fields the user's pages offer (ops_console.autocomplete)."""
        from ops_console.autocomplete import ConsoleAutocompleteJsonView

        return ConsoleAutocompleteJsonView.as_view(admin_site=self)(request)

    def index(self, request, extra_context=None):
        """Render the app list, the live numbers the user's role may see and the user's recent actions.

        Recent actions name the records the user changed, by their ``__str__``: a patient's name
        and MRN, a visit's id. The page records those it shows in the PHI access log (one row).
        """
        from clinical.selectors import dashboard_summary
        from ops_console.access import record_log_entries
        from support.selectors import open_case_count

        extra_context = dict(extra_context or {})
        if request.user.has_perm("clinical.view_visit"):
            # The site assembles the home page from each app's own numbers.
            extra_context["dashboard"] = {**dashboard_summary(), "open_cases": open_case_count()}
        # Read here, not by the template's {% get_admin_log %}: what is recorded is what is shown.
        recent = list(self.get_log_entries(request).filter(user__pk=request.user.pk)[:RECENT_ACTIONS])
        response = super().index(request, {**extra_context, "recent_actions": recent})
        record_log_entries(request, recent, source="dashboard")
        return response


ops_site = OpsAdminSite(name="ops")


@admin.register(get_user_model(), site=ops_site)
class StaffUserAdmin(UserAdmin):
    list_display = ["username", "email", "first_name", "last_name", "is_active", "two_factor", "last_login"]
    list_filter = ["is_active", "groups"]
    show_full_result_count = False
    ordering = ["username"]
    actions = ["reset_two_factor", "unlock_sign_in"]

    def get_queryset(self, request):
        """Return the users with whether each has set up two-factor sign-in (one subquery, no extra query)."""
        has_device = Exists(TotpDevice.objects.filter(user=OuterRef("pk")))
        return super().get_queryset(request).annotate(has_two_factor=has_device)

    @admin.display(boolean=True, description="Two-factor", ordering="has_two_factor")
    def two_factor(self, user) -> bool:
        return user.has_two_factor

    @admin.action(permissions=["change"], description="Reset two-factor device (lost phone)")
    def reset_two_factor(self, request, queryset):
        """Remove the selected users' authenticators: each sets up a new one at the next sign-in."""
        allowed = [user for user in queryset if self.has_change_permission(request, user)]
        reset = [user.get_username() for user in allowed if do_reset_totp_device(request, user=user)]
        if reset:
            self.message_user(request, f"Two-factor device reset for {', '.join(reset)}.", messages.SUCCESS)
        if len(allowed) < len(queryset):
            self.message_user(request, "Only a superuser resets a superuser's device.", messages.WARNING)
        if not reset and len(allowed) == len(queryset):
            self.message_user(request, "None of them had set up two-factor sign-in.", messages.INFO)

    @admin.action(permissions=["change"], description="Unlock sign-in (after too many failures)")
    def unlock_sign_in(self, request, queryset):
        """Lift the selected users' sign-in lockout, and that of the addresses their failures came from."""
        allowed = [user for user in queryset if self.has_change_permission(request, user)]
        for user in allowed:
            do_unlock_sign_in(request, user=user)
        if allowed:
            names = ", ".join(user.get_username() for user in allowed)
            self.message_user(request, f"Sign-in unlocked for {names}.", messages.SUCCESS)
        if len(allowed) < len(queryset):
            self.message_user(request, "Only a superuser unlocks a superuser.", messages.WARNING)

    def has_delete_permission(self, request, obj=None):
        # Users appear in audit records: deactivate them instead.
        return False

    def has_change_permission(self, request, obj=None):
        """Only a superuser changes a superuser's account."""
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    def get_fieldsets(self, request, obj=None):
        """Give staff who are not superusers a role picker, not superuser or per-user permissions."""
        if request.user.is_superuser:
            return super().get_fieldsets(request, obj)
        if obj is None:
            return [(None, {"fields": ["username", "password1", "password2"]}), ("Role", {"fields": ["groups"]})]
        return [
            (None, {"fields": ["username", "password"]}),
            ("Personal info", {"fields": ["first_name", "last_name", "email"]}),
            ("Access", {"fields": ["is_active", "is_staff", "groups"]}),
            ("Dates", {"fields": ["last_login", "date_joined"]}),
        ]

    def get_readonly_fields(self, request, obj=None):
        return ["last_login", "date_joined"] if obj is not None else []

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        """Offer only the console's role groups (roles are code: ops_console/roles.py)."""
        if db_field.name == "groups":
            kwargs["queryset"] = Group.objects.filter(name__in=ROLES).order_by("name")
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        """New accounts made in the console are staff accounts."""
        if not change:
            obj.is_staff = True
        super().save_model(request, obj, form, change)


@admin.register(Group, site=ops_site)
class RoleGroupAdmin(GroupAdmin):
    """Roles are defined in ops_console/roles.py; the console only shows them."""

    def get_object(self, request, object_id, from_field=None):
        """Return the group with its permissions and their apps, listed read-only on its page."""
        group = super().get_object(request, object_id, from_field)
        if group is not None:
            permissions = Permission.objects.select_related("content_type")
            prefetch_related_objects([group], Prefetch("permissions", queryset=permissions))
        return group

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
