"""generate_data: large consistent data through COPY and INSERT … SELECT, topped up, never doubled."""

import re
import threading
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from clinical.models import Patient, Provider, Visit, VisitEvent
from devtools import generate
from devtools.generate import DOMAIN, existing_counts
from support.models import SupportCase


def _indexes():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = ANY(%s) ORDER BY 1",
            [[*generate.VISIT_TABLES, *generate.PATIENT_TABLES]],
        )
        return [row[0] for row in cursor.fetchall()]


def _foreign_keys():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), convalidated FROM pg_constraint "
            "WHERE contype = 'f' AND conrelid = ANY(%s::regclass[]) ORDER BY 1, 2",
            [list(generate.CHUNK_TABLES)],
        )
        return cursor.fetchall()


def _generate(**sizes):
    out = StringIO()
    args = [f"--{name}={value}" for name, value in sizes.items()]
    call_command("generate_data", *args, stdout=out)
    return out.getvalue()


def test_it_tops_up_to_the_requested_sizes_without_doubling(db):
    indexes, keys = _indexes(), _foreign_keys()
    assert len(keys) == 14
    _generate(patients=50, providers=20, visits=400)
    counts = existing_counts()
    assert (counts.patients, counts.providers, counts.visits) == (50, 20, 400)
    assert "nothing" in _generate(patients=50, providers=20, visits=400)
    output = _generate(patients=50, providers=20, visits=500)
    assert existing_counts().visits == 500
    assert re.search(r"disk: the database is \d+\.\d\d GiB, \d+\.\d\d GiB more than before", output), output
    assert _indexes() == indexes  # dropped for the load, all rebuilt
    assert _foreign_keys() == keys  # dropped for the load, all added back and checked


def test_it_rebuilds_the_patient_indexes_only_for_a_load_that_at_least_doubles_the_table(db, monkeypatch):
    indexes, loads = _indexes(), []
    real = generate._without_secondary_indexes

    def recorded(tables, progress):
        loads.append(tables)
        return real(tables, progress)

    monkeypatch.setattr(generate, "_without_secondary_indexes", recorded)
    _generate(patients=50, providers=20, visits=0)
    _generate(patients=100, providers=20, visits=0)  # 50 more: doubles the table
    _generate(patients=120, providers=20, visits=0)  # 20 more: indexes kept
    assert loads == [generate.PATIENT_TABLES, generate.PATIENT_TABLES]
    assert _indexes() == indexes
    assert Patient.objects.count() == Patient.history.count() == 120
    assert Patient.objects.filter(last_name=Patient.objects.latest("pk").last_name).exists()


def test_it_writes_consistent_timelines_and_history(db):
    _generate(patients=40, providers=15, visits=300)
    visits = Visit.objects.filter(patient__email__endswith=f"@{DOMAIN}")
    assert set(visits.values_list("status", flat=True)) <= {"completed", "cancelled", "expired", "failed"}
    for visit in visits.prefetch_related("events"):
        chain = list(visit.events.all())
        assert chain[0].from_status == "" and chain[0].to_status == "waiting"
        assert chain[0].at == visit.requested_at
        assert all(a.to_status == b.from_status for a, b in zip(chain, chain[1:], strict=False))
        assert chain[-1].to_status == visit.status
        if visit.status in ("completed", "failed"):
            assert visit.provider_id and visit.provider.licenses.filter(state=visit.located_state).exists()
            assert visit.requested_at < visit.offered_at < visit.accepted_at < visit.started_at < visit.ended_at
        else:
            assert visit.provider_id is None
        history = list(visit.history.order_by("history_date"))
        assert [h.status for h in history] == ["waiting", visit.status]
        assert {h.history_actor for h in history} == {"system"}
    assert Patient.history.filter(history_actor_label="generate_data").count() == 40
    assert Provider.history.filter(history_actor_label="generate_data").count() == 15
    for case in SupportCase.objects.filter(visit__in=visits):
        assert case.visit.status == "expired" and case.history.count() == 1


def test_it_records_the_queue_history_of_what_it_wrote(db):
    _generate(patients=40, providers=15, visits=300)
    from oversight import recompute
    from oversight.models import RecordedMinute

    first = RecordedMinute.objects.order_by("minute").values_list("minute", flat=True).first()
    last = RecordedMinute.objects.order_by("-minute").values_list("minute", flat=True).first()
    assert first is not None and recompute.unrecorded_minutes(first, last + recompute.MINUTE) == 0
    for measure in recompute.compare(recompute.from_rows(first, last), recompute.stored(first, last)):
        assert measure["cells_differing"] == 0, measure


def test_it_leaves_public_ids_readable_and_unique(db):
    _generate(patients=10, providers=5, visits=200)
    ids = list(Visit.objects.values_list("public_id", flat=True))
    assert len(ids) == len(set(ids))
    assert all(len(i) == 9 and i[4] == "-" for i in ids)
    assert VisitEvent.objects.filter(visit__public_id__in=ids).exists()


def _offered_without_offer() -> int:
    return Visit.objects.filter(offer_count__gt=0, offers__isnull=True).count()


def test_it_writes_chunks_with_two_connections_at_once(transactional_db, monkeypatch):
    monkeypatch.setattr(generate, "CHUNK", 100)
    monkeypatch.setattr(generate, "WRITERS", 2)
    indexes = _indexes()
    output = _generate(patients=40, providers=15, visits=450)  # five chunks, two writers
    assert existing_counts().visits == 450
    assert re.search(r"visits .* 450/450", output), output
    assert VisitEvent.objects.filter(visit__patient__email__endswith=f"@{DOMAIN}").count() >= 450
    assert Visit.history.filter(history_actor_label="generate_data").count() == 900
    assert _offered_without_offer() == 0
    assert _indexes() == indexes


def test_it_keeps_the_chunks_written_before_a_failure_and_rebuilds_the_indexes(transactional_db, monkeypatch):
    monkeypatch.setattr(generate, "CHUNK", 100)
    monkeypatch.setattr(generate, "WRITERS", 2)
    indexes, keys = _indexes(), _foreign_keys()
    calls, real_chunk = [], generate.Generator._visit_chunk

    def failing_chunk(self, cursor, size):
        calls.append(size)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return real_chunk(self, cursor, size)

    monkeypatch.setattr(generate.Generator, "_visit_chunk", failing_chunk)
    with pytest.raises(RuntimeError, match="disk full"):
        _generate(patients=40, providers=15, visits=600)
    assert _indexes() == indexes
    assert _foreign_keys() == keys
    kept = existing_counts().visits
    # Whole chunks only (the failed one left nothing), and the other writer stopped after its chunk.
    assert kept % 100 == 0 and 200 <= kept <= 300
    monkeypatch.setattr(generate.Generator, "_visit_chunk", real_chunk)
    _generate(patients=40, providers=15, visits=600)
    assert existing_counts().visits == 600
    assert _offered_without_offer() == 0


def test_it_checks_every_foreign_key_it_adds_back_and_adds_back_the_others(db, monkeypatch):
    keys, real_chunk = _foreign_keys(), generate.Generator._visit_chunk

    def orphan_event(self, cursor, size):
        done = real_chunk(self, cursor, size)
        cursor.execute(
            "INSERT INTO clinical_visitevent (visit_id, from_status, to_status, at, actor_kind, detail) "
            "VALUES (2147483000, '', 'waiting', now(), 'patient', 'of no visit')"
        )
        return done

    monkeypatch.setattr(generate.Generator, "_visit_chunk", orphan_event)
    with pytest.raises(CommandError, match="clinical_visitevent_visit_id_.*fk"):
        _generate(patients=20, providers=10, visits=50)
    assert [key for key in _foreign_keys() if "visitevent_visit_id" not in key[1]] == [
        key for key in keys if "visitevent_visit_id" not in key[1]
    ]


def test_it_writes_again_the_visits_whose_random_public_id_was_taken(db, monkeypatch):
    monkeypatch.setattr(generate, "PUBLIC_ID_ALPHABET", "ABC")  # 6,561 ids: 300 visits collide a few times
    _generate(patients=20, providers=10, visits=300)
    assert existing_counts().visits == 300


def test_it_leaves_the_planner_statistics_of_every_table_it_wrote(db):
    _generate(patients=20, providers=10, visits=100)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, reltuples FROM pg_class WHERE relname = ANY(%s) ORDER BY 1",
            [list(generate.WRITTEN_TABLES)],
        )
        tables = dict(cursor.fetchall())
    assert set(tables) == set(generate.WRITTEN_TABLES)
    assert {name for name, rows in tables.items() if rows < 0} == set()  # -1: never analyzed


def test_it_gives_writers_at_once_disjoint_id_ranges(transactional_db):
    firsts, failures = [], []

    def reserve() -> None:
        try:
            with connection.cursor() as cursor:
                for _ in range(100):
                    firsts.append(generate._reserve_ids(cursor, "clinical_visit", 10))
        except Exception as error:  # raised in the test thread below
            failures.append(error)
        finally:
            connection.close()

    writers = [threading.Thread(target=reserve) for _ in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()

    assert failures == []
    ids = [n for first in firsts for n in range(first, first + 10)]
    assert len(ids) == len(set(ids)) == 4_000
