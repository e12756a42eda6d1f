"""The sequence behind patient MRNs (clinical.actions.next_mrn)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("clinical", "0001_initial")]

    operations = [
        migrations.RunSQL(
            "CREATE SEQUENCE IF NOT EXISTS clinical_patient_mrn_seq START 1000001",
            "DROP SEQUENCE IF EXISTS clinical_patient_mrn_seq",
        ),
    ]
