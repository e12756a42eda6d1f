# Who read each patient's records (core.PatientReader), kept by PostgreSQL from the access log:
# statement-level triggers with transition tables, so a batch of access rows (bulk_create) or a
# prune batch costs one set-based statement, not one per row. Both lock the summary rows in
# (patient, user) order, so concurrent reads and a prune never deadlock. The backfill reads the
# whole log once.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

# Staff reads of a set of access rows (a statement's new or removed ones, or the whole log), per patient and reader.
NEW_READS = """
    SELECT p.patient_id, a.user_id, max(a.at) AS last_read_at, count(*) AS reads
    FROM {rows} a CROSS JOIN LATERAL unnest(a.patient_ids) AS p(patient_id)
    WHERE a.user_id IS NOT NULL
    GROUP BY p.patient_id, a.user_id
"""

TRIGGERS = f"""
CREATE FUNCTION core_patientreader_add_reads() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO core_patientreader AS r (patient_id, user_id, last_read_at, reads)
    SELECT * FROM ({NEW_READS.format(rows="added")}) n ORDER BY patient_id, user_id
    ON CONFLICT (patient_id, user_id) DO UPDATE
        SET last_read_at = greatest(r.last_read_at, excluded.last_read_at), reads = r.reads + excluded.reads;
    RETURN NULL;
END
$$;
CREATE TRIGGER core_patientreader_add_reads AFTER INSERT ON support_accesslog
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION core_patientreader_add_reads();

CREATE FUNCTION core_patientreader_remove_reads() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM core_patientreader r JOIN ({NEW_READS.format(rows="removed")}) g USING (patient_id, user_id)
        ORDER BY r.patient_id, r.user_id FOR UPDATE OF r;
    -- A reader whose every read was removed goes; the others keep their reads left.
    DELETE FROM core_patientreader r USING ({NEW_READS.format(rows="removed")}) g
        WHERE r.patient_id = g.patient_id AND r.user_id = g.user_id AND r.reads <= g.reads;
    UPDATE core_patientreader r SET reads = r.reads - g.reads FROM ({NEW_READS.format(rows="removed")}) g
        WHERE r.patient_id = g.patient_id AND r.user_id = g.user_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER core_patientreader_remove_reads AFTER DELETE ON support_accesslog
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION core_patientreader_remove_reads();

INSERT INTO core_patientreader (patient_id, user_id, last_read_at, reads)
{NEW_READS.format(rows="support_accesslog")};
"""  # noqa: S608 - fixed table names, nothing from outside

DROP_TRIGGERS = """
DROP TRIGGER core_patientreader_remove_reads ON support_accesslog;
DROP FUNCTION core_patientreader_remove_reads();
DROP TRIGGER core_patientreader_add_reads ON support_accesslog;
DROP FUNCTION core_patientreader_add_reads();
DELETE FROM core_patientreader;
"""


class Migration(migrations.Migration):

    dependencies = [
        ('core', '0004_alter_accesslog_user'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='PatientReader',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('patient_id', models.BigIntegerField()),
                ('last_read_at', models.DateTimeField()),
                ('reads', models.PositiveBigIntegerField()),
                ('user', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'default_permissions': (),
                'constraints': [models.UniqueConstraint(fields=('patient_id', 'user'), name='core_patientreader_patient_user_uniq')],
            },
        ),
        migrations.RunSQL(TRIGGERS, DROP_TRIGGERS),
    ]
