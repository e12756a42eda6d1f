"""The bench harness: its database refusals, its table and its JSON line."""

import json

import pytest
from django.core.management.base import CommandError

from devtools.bench import harness


@pytest.mark.parametrize("name", ['ops"; DROP DATABASE ops_console; --', "", "x" * 64, "ops-data"])
def test_it_refuses_a_database_name_that_is_not_one(name):
    with pytest.raises(CommandError, match="--database"):
        harness.use_database(name, create=True)


def test_it_refuses_to_time_a_data_set_database_that_does_not_exist(db):
    with pytest.raises(CommandError, match="--database: no database 'ops_no_such_data_set'"):
        harness.use_database("ops_no_such_data_set", create=False)


def test_it_writes_an_aligned_table_and_one_json_line():
    lines = []
    harness.table(lines.append, [("page", "p50"), ("visit list", "8.1 ms"), ("x", "120.4 ms")])
    harness.json_line(lines.append, "admin", {"visit_list_p50_ms": 8.1})
    assert lines[:3] == ["page        p50", "visit list  8.1 ms", "x           120.4 ms"]
    assert json.loads(lines[3]) == {"bench": "admin", "visit_list_p50_ms": 8.1}
