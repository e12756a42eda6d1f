# The foreign key's own index dropped: an index or unique constraint of the table leads with it
# (clinical/migrations/0017_redundant_fk_indexes.py; tests/core/test_indexes.py).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('oversight', '0005_day_and_hour_total_rollups'),
    ]

    operations = [
        migrations.AlterField(
            model_name='alertdelivery',
            name='alert',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='oversight.alert'),
        ),
    ]
