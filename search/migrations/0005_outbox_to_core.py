"""The outbox table now belongs to the base layer (``core``): apps record, search drains. The table stays."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('search', '0004_search_record_into_access_log'),
        ('core', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name='OutboxEntry')],
            database_operations=[],
        ),
    ]
