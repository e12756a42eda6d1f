# The first version of 0017 (commit 68b95f2) dropped the partial unique indexes of these four
# constraints with the foreign-key indexes of their columns (Django's AlterField(db_index=False)
# drops every unnamed single-column index of the column). 0017 no longer does; a database that ran
# that version gets them back here. On any other database this finds them and does nothing.

from django.db import migrations

CONSTRAINTS = {
    "visit": ("clinical_visit_one_open_per_patient", "clinical_visit_one_active_per_provider"),
    "offer": ("clinical_offer_one_open_per_visit", "clinical_offer_one_open_per_provider"),
}


def restore(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT conname FROM pg_constraint UNION SELECT indexname FROM pg_indexes")
        present = {row[0] for row in cursor.fetchall()}
    for model_name, names in CONSTRAINTS.items():
        model = apps.get_model("clinical", model_name)
        for constraint in model._meta.constraints:
            if constraint.name in names and constraint.name not in present:
                schema_editor.add_constraint(model, constraint)


class Migration(migrations.Migration):
    dependencies = [
        ("clinical", "0017_redundant_fk_indexes"),
    ]

    operations = [
        migrations.RunPython(restore, migrations.RunPython.noop),
    ]
