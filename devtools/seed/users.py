"""The demo users, one per role."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import models

from ops_console import roles

DEMO_USERS = {
    "support": roles.SUPPORT_AGENT,
    "clinops": roles.CLINICAL_OPS,
    "engineer": roles.ENGINEER,
    "lead": roles.OPS_LEAD,
}


def ensure_demo_users() -> tuple[dict[str, models.Model], int]:
    """Create the one-per-role demo users that are missing; leave existing ones untouched."""
    roles.sync_roles()
    groups = {group.name: group for group in Group.objects.filter(name__in=DEMO_USERS.values())}
    users, created = {}, 0
    for username, role in DEMO_USERS.items():
        user, was_created = get_user_model().objects.get_or_create(
            username=username, defaults={"email": f"{username}@ops.example", "is_staff": True}
        )
        if was_created:
            user.set_password(settings.OPS_DEMO_PASSWORD)
            user.save(update_fields=["password"])
            user.groups.add(groups[role])
            created += 1
        users[username] = user
    return users, created
