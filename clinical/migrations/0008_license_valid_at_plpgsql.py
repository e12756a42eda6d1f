from django.db import migrations

from clinical import calendar


class Migration(migrations.Migration):
    """clinical_license_valid_at in PL/pgSQL: same rule, its plan kept per session."""

    dependencies = [
        ("clinical", "0007_routing_edges"),
    ]

    operations = [
        migrations.RunSQL(calendar.CREATE_FUNCTION_SQL, migrations.RunSQL.noop),
    ]
