# The foreign key's own index dropped: an index or unique constraint of the table leads with it
# (clinical/migrations/0017_redundant_fk_indexes.py; tests/core/test_indexes.py).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('support', '0009_case_filter_indexes'),
    ]

    operations = [
        migrations.AlterField(
            model_name='casenote',
            name='case',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='notes', to='support.supportcase'),
        ),
    ]
