# Indexes that served no query another index did not serve already, and that every row written
# kept up to date (at 10M visits: 1.3 GB of the visit and event indexes alone):
# - the foreign-key indexes Django adds by itself on visit.patient, visit.provider,
#   visitevent.visit, offer.visit, offer.provider and apiidempotencykey.client, which an index
#   or unique constraint of the table leads with (tests/core/test_indexes.py finds such pairs);
# - simple_history's index on a license version's id, which clinical_historicallicense_asof_idx
#   (id, history_date) leads with;
# - visitevent.staff_user and visitevent.provider, NULL for most events (the patient's and the
#   router's), indexed whole: partial indexes of the events that have one replace them.
# CONCURRENTLY: events are written by the router and the API while they build; then each full
# index is dropped by its name (a moment's lock).

import django.db.models.deletion
from django.conf import settings
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models
from django.db.models import Q


def without_index(table: str, column: str, index: str, alter_field: migrations.AlterField):
    """Record ``alter_field`` (``db_index=False``) and drop that one index, by its name.

    Not the AlterField's own database change: to drop a field's index, Django drops every
    single-column index of the column that ``Meta.indexes`` does not name, the partial unique
    indexes of ``Meta.constraints`` included (clinical_visit_one_open_per_patient,
    clinical_offer_one_open_per_visit and their kin, on these very columns).
    """
    return migrations.SeparateDatabaseAndState(
        state_operations=[alter_field],
        database_operations=[
            migrations.RunSQL(f'DROP INDEX "{index}"', f'CREATE INDEX "{index}" ON "{table}" ("{column}")')
        ],
    )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("clinical", "0016_patient_state_index"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="visitevent",
            index=models.Index(
                fields=["staff_user"], name="clinical_event_staff_idx", condition=Q(staff_user__isnull=False)
            ),
        ),
        AddIndexConcurrently(
            model_name="visitevent",
            index=models.Index(
                fields=["provider"], name="clinical_event_provider_idx", condition=Q(provider__isnull=False)
            ),
        ),
        without_index(
            "clinical_visitevent",
            "staff_user_id",
            "clinical_visitevent_staff_user_id_08bc69a8",
            migrations.AlterField(
                model_name="visitevent",
                name="staff_user",
                field=models.ForeignKey(
                    blank=True,
                    db_index=False,
                    null=True,
                    on_delete=django.db.models.deletion.PROTECT,
                    related_name="+",
                    to=settings.AUTH_USER_MODEL,
                ),
            ),
        ),
        without_index(
            "clinical_visitevent",
            "provider_id",
            "clinical_visitevent_provider_id_a1365fb5",
            migrations.AlterField(
                model_name="visitevent",
                name="provider",
                field=models.ForeignKey(
                    blank=True,
                    db_index=False,
                    null=True,
                    on_delete=django.db.models.deletion.PROTECT,
                    related_name="+",
                    to="clinical.provider",
                ),
            ),
        ),
        without_index(
            "clinical_visitevent",
            "visit_id",
            "clinical_visitevent_visit_id_a7300a61",
            migrations.AlterField(
                model_name="visitevent",
                name="visit",
                field=models.ForeignKey(
                    db_index=False,
                    on_delete=django.db.models.deletion.PROTECT,
                    related_name="events",
                    to="clinical.visit",
                ),
            ),
        ),
        without_index(
            "clinical_visit",
            "patient_id",
            "clinical_visit_patient_id_e22fac79",
            migrations.AlterField(
                model_name="visit",
                name="patient",
                field=models.ForeignKey(
                    db_index=False,
                    on_delete=django.db.models.deletion.PROTECT,
                    related_name="visits",
                    to="clinical.patient",
                ),
            ),
        ),
        without_index(
            "clinical_visit",
            "provider_id",
            "clinical_visit_provider_id_8065691e",
            migrations.AlterField(
                model_name="visit",
                name="provider",
                field=models.ForeignKey(
                    blank=True,
                    db_index=False,
                    null=True,
                    on_delete=django.db.models.deletion.PROTECT,
                    related_name="visits",
                    to="clinical.provider",
                ),
            ),
        ),
        without_index(
            "clinical_offer",
            "visit_id",
            "clinical_offer_visit_id_3c7cd046",
            migrations.AlterField(
                model_name="offer",
                name="visit",
                field=models.ForeignKey(
                    db_index=False,
                    on_delete=django.db.models.deletion.PROTECT,
                    related_name="offers",
                    to="clinical.visit",
                ),
            ),
        ),
        without_index(
            "clinical_offer",
            "provider_id",
            "clinical_offer_provider_id_7227bf4b",
            migrations.AlterField(
                model_name="offer",
                name="provider",
                field=models.ForeignKey(
                    db_index=False,
                    on_delete=django.db.models.deletion.PROTECT,
                    related_name="offers",
                    to="clinical.provider",
                ),
            ),
        ),
        without_index(
            "clinical_apiidempotencykey",
            "client_id",
            "clinical_apiidempotencykey_client_id_d8ff6952",
            migrations.AlterField(
                model_name="apiidempotencykey",
                name="client",
                field=models.ForeignKey(
                    db_index=False,
                    on_delete=django.db.models.deletion.CASCADE,
                    related_name="+",
                    to="clinical.apiclient",
                ),
            ),
        ),
        without_index(
            "clinical_historicalproviderlicense",
            "id",
            "clinical_historicalproviderlicense_id_66bcb778",
            migrations.AlterField(
                model_name="historicalproviderlicense",
                name="id",
                field=models.BigIntegerField(auto_created=True, blank=True, verbose_name="ID"),
            ),
        ),
    ]
