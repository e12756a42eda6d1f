"""The patients' distinct names, kept by triggers, so that a name search scores names, not patients.

A common surname is thousands of patients at a million (3,584 Smiths) but a few hundred
names (330): the search scores the names, counts the patients from them, and reads a page's
patients through the name index of the first names that fill it (``search.backends.postgres``).

Statement triggers with transition tables keep the counts in the transaction that writes the
patients, one grouped upsert per statement (a COPY of a million patients is one); names are
locked in key order, so two transactions adding the same names wait rather than deadlock.
Creating the triggers locks ``clinical_patient`` against writes until the backfill commits
(a few seconds at a million patients), so no patient is missed or counted twice.
"""

from django.db import migrations, models

# Per name: +1 for each row added, -1 for each row removed; an update that leaves the names alone
# nets to zero and writes nothing. Names that gain patients are upserted in key order; names that
# lose some are updated, and one missing from the table (never, unless it was written by hand)
# fails the statement rather than leave a count that is not the patients' recount.
CHANGES = "SELECT first_name, last_name, sum(change) AS change FROM ({rows}) AS c GROUP BY last_name, first_name"
GAINED = """
    INSERT INTO search_patientname AS n (first_name, last_name, patients)
    SELECT first_name, last_name, change FROM ({changes}) AS d WHERE change > 0 ORDER BY last_name, first_name
    ON CONFLICT (last_name, first_name) DO UPDATE SET patients = n.patients + EXCLUDED.patients;
"""
LOST = """
    WITH lost AS (SELECT * FROM ({changes}) AS d WHERE change < 0),
    done AS (UPDATE search_patientname AS n SET patients = n.patients + lost.change FROM lost
             WHERE n.last_name = lost.last_name AND n.first_name = lost.first_name RETURNING 1)
    SELECT (SELECT count(*) FROM lost) - (SELECT count(*) FROM done) INTO missing;
    IF missing > 0 THEN
        RAISE EXCEPTION 'search_patientname lacks % name(s) of the patients removed', missing
            USING HINT = 'It must be the patients'' recount: rebuild it (see migration search.0007).';
    END IF;
    DELETE FROM search_patientname AS n USING removed AS r
    WHERE n.last_name = r.last_name AND n.first_name = r.first_name AND n.patients = 0;
"""
ADDED = "SELECT first_name, last_name, 1 AS change FROM added"
REMOVED = "SELECT first_name, last_name, -1 AS change FROM removed"


def _body(rows: str, *, gains: bool, losses: bool) -> str:
    changes = CHANGES.format(rows=rows)
    return (GAINED.format(changes=changes) if gains else "") + (LOST.format(changes=changes) if losses else "")


# (operation, the function's statements, the trigger's transition tables)
TRIGGERS = [
    ("insert", _body(ADDED, gains=True, losses=False), "NEW TABLE AS added"),
    ("update", _body(f"{ADDED} UNION ALL {REMOVED}", gains=True, losses=True), "OLD TABLE AS removed NEW TABLE AS added"),
    ("delete", _body(REMOVED, gains=False, losses=True), "OLD TABLE AS removed"),
]


def _trigger(operation, body, tables):
    function = f"search_patientname_after_{operation}"
    return migrations.RunSQL(
        [
            f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql"
            f" AS $$ DECLARE missing bigint; BEGIN {body} RETURN NULL; END $$",
            f"CREATE TRIGGER {function} AFTER {operation.upper()} ON clinical_patient REFERENCING {tables}"
            f" FOR EACH STATEMENT EXECUTE FUNCTION {function}()",
        ],
        [f"DROP TRIGGER {function} ON clinical_patient", f"DROP FUNCTION {function}()"],
    )


TRUNCATE = migrations.RunSQL(
    [
        "CREATE FUNCTION search_patientname_after_truncate() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN DELETE FROM search_patientname; RETURN NULL; END $$",
        "CREATE TRIGGER search_patientname_after_truncate AFTER TRUNCATE ON clinical_patient"
        " FOR EACH STATEMENT EXECUTE FUNCTION search_patientname_after_truncate()",
    ],
    ["DROP TRIGGER search_patientname_after_truncate ON clinical_patient",
     "DROP FUNCTION search_patientname_after_truncate()"],
)  # fmt: skip

BACKFILL = migrations.RunSQL(
    ["INSERT INTO search_patientname (first_name, last_name, patients)"
     " SELECT first_name, last_name, count(*) FROM clinical_patient GROUP BY last_name, first_name",
     "ANALYZE search_patientname"],
    migrations.RunSQL.noop,
)  # fmt: skip

# (name, method and expression, the query that needs it): the patient indexes of 0002 and 0006, on names.
INDEXES = [
    ("search_patientname_trgm_idx", "gin (search_person_name(first_name, last_name) gin_trgm_ops)",
     "patient name search: a name typed in any order or misspelled (trigram %>)"),
    ("search_patientname_fts_idx", "gin (search_name_vector(first_name, last_name))",
     "patient name search: the start of each name word (prefix tsquery)"),
    ("search_patientname_letters_idx", "btree (search_sorted_letters(search_person_name(first_name, last_name)))",
     "patient name search: a full name typed with two letters swapped"),
    ("search_patientname_last_letters_idx", "btree (search_sorted_letters(last_name))",
     "patient name search: a last name typed with two letters swapped"),
]


def _index(name, definition, purpose):
    return migrations.RunSQL(
        [f"CREATE INDEX {name} ON search_patientname USING {definition} WITH (fastupdate=off)"
         if definition.startswith("gin") else f"CREATE INDEX {name} ON search_patientname USING {definition}",
         f"COMMENT ON INDEX {name} IS '{purpose}'"],
        f"DROP INDEX {name}",
    )  # fmt: skip


class Migration(migrations.Migration):

    dependencies = [
        ("search", "0006_sorted_letters_indexes"),
        ("clinical", "0016_patient_state_index"),
    ]

    operations = [
        migrations.CreateModel(
            name="PatientName",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("first_name", models.CharField(max_length=100)),
                ("last_name", models.CharField(max_length=100)),
                ("patients", models.PositiveIntegerField()),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("last_name", "first_name"), name="search_patientname_key")
                ],
            },
        ),
        *(_trigger(*trigger) for trigger in TRIGGERS),
        TRUNCATE,
        BACKFILL,
        *(_index(*index) for index in INDEXES),
    ]
