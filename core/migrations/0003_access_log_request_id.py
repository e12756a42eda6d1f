"""The access log's rows name their request (core.request_id).

Existing rows get '' through ADD COLUMN's default: PostgreSQL records it in the catalogue without
rewriting the table or updating a row, so the append-only trigger (refusing UPDATE) is not involved.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('core', '0002_content_types_follow_the_models'),
    ]

    operations = [
        migrations.AddField(
            model_name='accesslog',
            name='request_id',
            field=models.CharField(blank=True, max_length=64),
        ),
    ]
