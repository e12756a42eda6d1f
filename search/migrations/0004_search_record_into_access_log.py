"""Searches are recorded in support.AccessLog now; its migration copied the rows first."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('search', '0003_gin_without_pending_list'),
        ('support', '0002_access_log'),
    ]

    operations = [
        migrations.DeleteModel(
            name='SearchRecord',
        ),
    ]
