"""The access log, security events and outbox moved from support and search to core: same tables, same grants."""

import importlib

from django.apps import apps
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType

from core.models import AccessLog, OutboxEntry, SecurityEvent

MIGRATION = importlib.import_module("core.migrations.0002_content_types_follow_the_models")


def test_it_keeps_the_tables_the_rows_are_in():
    tables = [model._meta.db_table for model in (AccessLog, SecurityEvent, OutboxEntry)]
    assert tables == ["support_accesslog", "support_securityevent", "search_outboxentry"]


def test_it_moves_content_types_so_permissions_and_role_grants_follow(db):
    lead = Group.objects.get(name="Ops lead")
    MIGRATION.back(apps, None)
    ContentType.objects.clear_cache()
    assert Permission.objects.get(codename="view_accesslog").content_type.app_label == "support"
    MIGRATION.to_core(apps, None)
    ContentType.objects.clear_cache()
    granted = lead.permissions.filter(codename__in=["view_accesslog", "view_securityevent"])
    assert sorted(p.content_type.app_label for p in granted) == ["core", "core"]
    assert not ContentType.objects.filter(app_label__in=["support", "search"], model__in=["accesslog", "outboxentry"])
