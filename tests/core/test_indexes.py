"""No index of the console's tables that another index already serves: each costs every write."""

from django.apps import apps
from django.db import connection

OWN_APPS = ("clinical", "core", "ops_console", "oversight", "search", "support")

# Pairs of plain b-tree indexes of one table where the first's columns (with their operator
# classes) begin the second's: a lookup by the first's columns can use the second. Unique ones are
# kept (they are constraints), as are partial and expression indexes (they serve other queries).
REDUNDANT_SQL = """
SELECT c.relname, a.indexrelid::regclass::text, b.indexrelid::regclass::text
FROM pg_index a
JOIN pg_index b ON b.indrelid = a.indrelid AND b.indexrelid <> a.indexrelid
JOIN pg_class c ON c.oid = a.indrelid
JOIN pg_class ia ON ia.oid = a.indexrelid
JOIN pg_class ib ON ib.oid = b.indexrelid
WHERE c.relname = ANY(%s)
  AND ia.relam = (SELECT oid FROM pg_am WHERE amname = 'btree') AND ib.relam = ia.relam
  AND NOT a.indisunique AND a.indpred IS NULL AND b.indpred IS NULL
  AND a.indexprs IS NULL AND b.indexprs IS NULL
  AND a.indnkeyatts <= b.indnkeyatts
  AND (a.indkey::int2[])[0:a.indnkeyatts - 1] = (b.indkey::int2[])[0:a.indnkeyatts - 1]
  AND (a.indclass::oid[])[0:a.indnkeyatts - 1] = (b.indclass::oid[])[0:a.indnkeyatts - 1]
ORDER BY 1, 2, 3
"""


def _own_tables() -> list[str]:
    return sorted({model._meta.db_table for label in OWN_APPS for model in apps.get_app_config(label).get_models()})


def _redundant(tables: list[str]) -> list[tuple[str, str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(REDUNDANT_SQL, [tables])
        return cursor.fetchall()


def test_it_keeps_no_index_that_another_index_of_its_table_begins_with(db):
    tables = _own_tables()
    assert {"clinical_visit", "clinical_visitevent", "support_accesslog"} <= set(tables)
    assert _redundant(tables) == []


def test_it_finds_an_index_that_another_begins_with(db):
    # The check itself, on Django's own tables: a foreign key's index beside the unique pair it begins.
    assert (
        "auth_user_groups",
        "auth_user_groups_user_id_6a12ed8b",
        "auth_user_groups_user_id_group_id_94350c0c_uniq",
    ) in (_redundant(["auth_user_groups"]))


def test_it_has_every_index_and_constraint_the_models_declare(db):
    # A migration that drops a field's own index must not take a declared one with it (Django's
    # AlterField(db_index=False) drops every unnamed single-column index of the column: the
    # partial unique indexes that keep one open visit per patient among them).
    declared = {
        (model._meta.db_table, item.name)
        for label in OWN_APPS
        for model in apps.get_app_config(label).get_models()
        for item in (*model._meta.indexes, *model._meta.constraints)
    }
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tablename, indexname FROM pg_indexes "
            "UNION SELECT conrelid::regclass::text, conname FROM pg_constraint"
        )
        present = set(cursor.fetchall())
    assert {"clinical_visit_one_open_per_patient", "clinical_offer_one_open_per_visit"} <= {n for _, n in declared}
    assert sorted(declared - present) == []
