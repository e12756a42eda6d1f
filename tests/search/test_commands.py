"""bench_search, search_index and search_worker as an operator runs them."""

import datetime as dt
import json
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from clinical.actions import patients as patient_actions
from core.models import OutboxEntry
from tests.builders import SYSTEM, make_patient


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def bench(*args) -> str:
    """Run a bench on the tests' own Redis database (a bench points the process at the one it is given)."""
    return run(*args, "--redis-db", settings.REDIS_URL.rsplit("/", 1)[1])


def test_it_benchmarks_what_agents_type_and_finds_each_intended_record(db):
    run("generate_data", "--patients=400", "--providers=30", "--visits=800")
    for year in (1961, 1985, 2002):  # namesakes, told apart by their dates of birth
        namesake = make_patient(first_name="Maria", last_name="Garcia")
        namesake.date_of_birth = dt.date(year, 6, 1)
        patient_actions.save_patient(namesake, actor=SYSTEM)
    output = bench("bench_search", "--per-kind=3")
    lines = output.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["bench"] == "search" and summary["patients"] == 403
    assert set(summary["kinds"]) == {
        "full name", "partial name", "misspelled name", "phone (415) 555-0101", "phone 415.555.0101",
        "phone +1 415 555 0101", "e-mail, other case", "MRN", "visit id", "name + date of birth",
    }  # fmt: skip
    assert all(kind["backend"]["top3"] == 1.0 for kind in summary["kinds"].values()), summary["kinds"]
    assert summary["targets"]["top3_every_kind"]
    assert any(line.startswith("all ") for line in lines)  # the table's total row


def test_it_refuses_to_benchmark_an_empty_database(db):
    with pytest.raises(CommandError, match="generate_data"):
        bench("bench_search")


@pytest.mark.parametrize("command", [["search_worker", "--once"], ["search_index", "--check"]])
def test_it_explains_that_postgresql_search_needs_no_index_or_worker(db, settings, command):
    settings.ELASTICSEARCH_URL = None
    with pytest.raises(CommandError, match="ELASTICSEARCH_URL is not set"):
        run(*command)


def test_it_drains_the_outbox_once_and_reports_what_waits(db, elasticsearch_configured, monkeypatch, fake_es):
    monkeypatch.setattr("search.management.commands.search_worker.get_client", lambda: fake_es)
    monkeypatch.setattr("search.worker.close_old_connections", lambda: None)
    make_patient()
    output = run("search_worker", "--once")
    assert "1 indexed" in output and "0 waiting" in output
    assert not OutboxEntry.objects.exists()


def test_it_rebuilds_then_finds_no_drift_and_reports_drift_it_can_repair(
    db, elasticsearch_configured, monkeypatch, fake_es
):
    monkeypatch.setattr("search.management.commands.search_index.get_client", lambda: fake_es)
    patient = make_patient()
    OutboxEntry.objects.all().delete()
    assert "rebuilt: 1 cases" not in run("search_index", "--rebuild")
    assert "patient: 1 rows, 1 documents; missing 0" in run("search_index", "--check")
    fake_es.docs("test-patients").clear()
    with pytest.raises(CommandError, match="drifted"):
        run("search_index", "--check", "--repair", "--document=patient")
    assert list(OutboxEntry.objects.values_list("label", "object_id")) == [("clinical.patient", patient.pk)]


def test_it_builds_only_the_missing_indices_when_asked(db, elasticsearch_configured, monkeypatch, fake_es):
    monkeypatch.setattr("search.management.commands.search_index.get_client", lambda: fake_es)
    assert "nothing (every index exists)" in run("search_index", "--rebuild", "--missing-only")
    fake_es.aliases.pop("test-cases")
    assert "rebuilt: 0 cases" in run("search_index", "--rebuild", "--missing-only")
