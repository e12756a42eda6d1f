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
# index is dropped (a moment's lock).

import django.db.models.deletion
from django.conf import settings
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models
from django.db.models import Q


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
        migrations.AlterField(
            model_name="historicalproviderlicense",
            name="id",
            field=models.BigIntegerField(auto_created=True, blank=True, verbose_name="ID"),
        ),
    ]
