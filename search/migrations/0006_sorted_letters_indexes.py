"""Names with two letters swapped are found, not only ranked, through indexes on their sorted letters.

Trigrams miss many such typos ("Mei Mednoza" is 0.43 word-similar to Mei Mendoza, "mednoza"
alone 0.38): two swapped letters spoil up to four trigrams of a short name. Sorted, the letters
are unchanged, so the backend compares them through these btree indexes (an index condition in
the name search's OR) and ranks the rows as before.

Built CONCURRENTLY (so outside a transaction) to leave the tables writable on a live database.
"""

from django.db import migrations

# Self-contained, like the helpers of 0001. string_to_array(…, NULL) splits into letters with a
# row estimate from the string (regexp_split_to_table's guess of 1,000 rows made plans costly
# enough to JIT); COLLATE "C" sorts by code point, as Python's sorted() does (search.query).
FUNCTION = """
CREATE OR REPLACE FUNCTION search_sorted_letters(name text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT array_to_string(ARRAY(
        SELECT letter FROM unnest(string_to_array(
            regexp_replace(lower(coalesce(name, '')), '[^[:alpha:]]', '', 'g'), NULL)) AS letter
        ORDER BY letter COLLATE "C"), '') $$;
"""

# (name, table, expression, the query that needs it)
INDEXES = [
    ("search_patient_name_letters_idx", "clinical_patient",
     "search_sorted_letters(search_person_name(first_name, last_name))",
     "patient search: a full name typed with two letters swapped"),
    ("search_patient_last_name_letters_idx", "clinical_patient", "search_sorted_letters(last_name)",
     "patient search: a last name typed with two letters swapped"),
    ("search_provider_name_letters_idx", "clinical_provider",
     "search_sorted_letters(search_person_name(first_name, last_name))",
     "provider search: a full name typed with two letters swapped"),
    ("search_provider_last_name_letters_idx", "clinical_provider", "search_sorted_letters(last_name)",
     "provider search: a last name typed with two letters swapped"),
]


def _create(name, table, expression, purpose):
    return migrations.RunSQL(
        [f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} USING btree ({expression})",
         f"COMMENT ON INDEX {name} IS '{purpose}'"],
        f"DROP INDEX CONCURRENTLY IF EXISTS {name}",
    )


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ("search", "0005_outbox_to_core"),
    ]

    operations = [
        migrations.RunSQL(FUNCTION, "DROP FUNCTION IF EXISTS search_sorted_letters(text)"),
        *(_create(*index) for index in INDEXES),
    ]
