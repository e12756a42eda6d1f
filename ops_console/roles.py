"""Console roles as code: each role is a group whose permissions are exactly what is listed here.

``python manage.py sync_roles`` (and every ``migrate``) makes the database match this file:
missing groups are created, missing permissions granted and extra ones removed.
Retention rules that no role can override (no deleting visits, patients, visit events or
history) live in the ModelAdmin classes as well, so a superuser cannot break them either.
"""

from django.apps import apps
from django.contrib.auth.models import Group, Permission
from django.db import transaction

SUPPORT_AGENT = "Support agent"
CLINICAL_OPS = "Clinical ops"
ENGINEER = "Engineer"
OPS_LEAD = "Ops lead"

CLINICAL_MODELS = ("provider", "providerlicense", "patient", "visit", "visitevent")


def _perms(app_label: str, models: tuple[str, ...], *actions: str) -> set[str]:
    return {f"{app_label}.{action}_{model}" for model in models for action in actions}


VIEW_CLINICAL = _perms("clinical", CLINICAL_MODELS, "view")
VIEW_SUPPORT = _perms("support", ("supportcase", "casenote"), "view")
# The roles that act when the queues go wrong: they see the alerts banner and acknowledge alerts.
ACT_ON_ALERTS = {"oversight.view_alert", "oversight.acknowledge_alert"}

ROLES: dict[str, set[str]] = {
    # Finds any patient, visit or provider; reads timelines and history; works support cases.
    SUPPORT_AGENT: VIEW_CLINICAL | _perms("support", ("supportcase", "casenote"), "view", "add", "change"),
    # Keeps providers and their licenses current, including spreadsheet import and audit export.
    CLINICAL_OPS: VIEW_CLINICAL
    | VIEW_SUPPORT
    | _perms("clinical", ("provider", "providerlicense"), "add", "change", "import", "export")
    | ACT_ON_ALERTS,
    # Reads everything clinical to debug; profiles slow pages; acknowledges alerts (on call for the router).
    ENGINEER: VIEW_CLINICAL
    | VIEW_SUPPORT
    | {"ops_console.use_profiling", "ops_console.use_debug_toolbar"}
    | ACT_ON_ALERTS,
    # Everything except deleting clinical or audit records.
    OPS_LEAD: VIEW_CLINICAL
    | _perms("clinical", ("provider", "providerlicense", "patient", "visit"), "add", "change")
    | _perms("clinical", ("provider", "providerlicense"), "import", "export")
    | {"clinical.cancel_visit"}
    | _perms("clinical", ("apiclient",), "view", "add", "change")
    | _perms("support", ("supportcase",), "view", "add", "change", "delete")
    | _perms("support", ("casenote",), "view", "add")
    | {"core.view_securityevent", "core.view_accesslog"}
    | _perms("auth", ("user",), "view", "add", "change")
    | {"auth.view_group", "ops_console.use_profiling"}
    | ACT_ON_ALERTS,
}


def resolve(permission_names: set[str]) -> list[Permission]:
    """Return the Permission rows for ``app_label.codename`` names; raise if any is missing."""
    wanted = {tuple(name.split(".", 1)) for name in permission_names}
    found = Permission.objects.filter(
        content_type__app_label__in={app for app, _ in wanted}, codename__in={code for _, code in wanted}
    ).select_related("content_type")
    by_name = {(p.content_type.app_label, p.codename): p for p in found}
    missing = sorted(f"{app}.{code}" for app, code in wanted - by_name.keys())
    if missing:
        raise LookupError(f"roles.py names permissions that do not exist: {', '.join(missing)}")
    return [by_name[key] for key in wanted]


@transaction.atomic
def sync_roles() -> dict[str, tuple[int, int]]:
    """Make each role's group hold exactly its permissions; return (added, removed) per role."""
    changes = {}
    for role, names in ROLES.items():
        group, _ = Group.objects.get_or_create(name=role)
        wanted = set(resolve(names))
        current = set(group.permissions.all())
        group.permissions.add(*(wanted - current))
        group.permissions.remove(*(current - wanted))
        changes[role] = (len(wanted - current), len(current - wanted))
    return changes


def sync_roles_after_migrate(sender, **kwargs) -> None:
    """Sync roles once per ``migrate``, after the last app has created its permissions."""
    with_models = [config for config in apps.get_app_configs() if config.models_module is not None]
    if sender.label == with_models[-1].label:
        sync_roles()


def role_of(user) -> str | None:
    """Return the name of the user's console role, if they have one."""
    names = [group.name for group in user.groups.all() if group.name in ROLES]
    return names[0] if names else None
