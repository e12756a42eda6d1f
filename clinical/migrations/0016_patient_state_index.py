# The patient list's state filter read and sorted every patient of the state (105 ms at 1M patients,
# bench_admin --sizes); this index gives the first page in the list's order.
# CONCURRENTLY: patients are written (sign-ups, edits) while it builds.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("clinical", "0015_import_upload"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="patient",
            index=models.Index(fields=["state", "last_name", "first_name", "id"], name="clinical_patient_state_idx"),
        ),
    ]
