"""Point the moved models' content types (and so their permissions, role grants and admin log
entries) at ``core``, rather than leaving them behind and creating new ones.

On a new database the content types do not exist yet (they are created after migrating), so
this changes nothing there.
"""

from django.db import migrations

MOVED = [("support", "accesslog"), ("support", "securityevent"), ("search", "outboxentry")]


def to_core(apps, schema_editor):
    _move(apps, {(old, model): "core" for old, model in MOVED})


def back(apps, schema_editor):
    _move(apps, {("core", model): old for old, model in MOVED})


def _move(apps, moves):
    ContentType = apps.get_model("contenttypes", "ContentType")
    for (label, model), new_label in moves.items():
        if not ContentType.objects.filter(app_label=new_label, model=model).exists():
            ContentType.objects.filter(app_label=label, model=model).update(app_label=new_label)


class Migration(migrations.Migration):

    dependencies = [
        ('core', '0001_initial'),
        ('contenttypes', '0002_remove_content_type_name'),
    ]

    operations = [migrations.RunPython(to_core, back)]
