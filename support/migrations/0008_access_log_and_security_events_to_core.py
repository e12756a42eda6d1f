"""The access log and security events now belong to the base layer (``core``); their tables stay."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('support', '0007_backup_code_event'),
        ('core', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name='AccessLog'),
                migrations.DeleteModel(name='SecurityEvent'),
            ],
            database_operations=[],
        ),
    ]
