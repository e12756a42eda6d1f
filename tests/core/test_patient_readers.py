"""Who read a patient's records: a summary of the access log kept by PostgreSQL, read by the patient page."""

import datetime as dt
import importlib
import random
import threading
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from clinical.actions import api_clients as api_client_actions
from core.audit import Actor
from core.models import AccessLog, PatientReader
from tests.builders import make_patient, make_visit

MIGRATION = importlib.import_module("core.migrations.0005_patient_readers")


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _page(client, patient) -> str:
    response = client.get(reverse("ops:clinical_patient_change", args=[patient.pk]))
    assert response.status_code == 200
    return response.content.decode()


def _readers_table(html: str) -> str:
    return html[html.index('id="phi-readers"') : html.index('id="phi-readers-log"')]


def _from_the_log() -> dict[tuple[int, int], tuple[dt.datetime, int]]:
    """Return every staff reader of every patient as the log's own rows say: (patient, user) -> (last, reads)."""
    readers = {}
    for at, user_id, patient_ids in AccessLog.objects.filter(user__isnull=False).values_list(
        "at", "user_id", "patient_ids"
    ):
        for patient_id in patient_ids:
            last, reads = readers.get((patient_id, user_id), (at, 0))
            readers[patient_id, user_id] = (max(last, at), reads + 1)
    return readers


def _summary() -> dict[tuple[int, int], tuple[dt.datetime, int]]:
    return {(r.patient_id, r.user_id): (r.last_read_at, r.reads) for r in PatientReader.objects.all()}


def test_it_lists_each_reader_once_with_their_reads_and_last_read(client, support_agent, lead):
    patient = make_patient()
    client.force_login(support_agent)
    client.get(reverse("ops:clinical_patient_changelist"))  # the patient is on the list's page
    _page(client, patient)
    _page(client, patient)
    client.force_login(lead)
    table = _readers_table(_page(client, patient))
    support_row = table[table.index("<td>support</td>") :].split("</tr>")[0]
    assert support_row.endswith("<td>3</td>")  # the list and two views, one row
    assert table.count("<td>support</td>") == 1 and "<td>lead</td>" in table
    assert table.index("<td>lead</td>") < table.index("<td>support</td>")  # the latest reader first
    assert _summary() == _from_the_log()


def test_it_reads_the_readers_from_the_summary_in_one_query_however_many_reads(client, support_agent, lead):
    patient = make_patient()
    client.force_login(support_agent)
    for _ in range(5):
        _page(client, patient)
    client.force_login(lead)
    with CaptureQueriesContext(connection) as queries:
        _page(client, patient)
    touching = [q["sql"] for q in queries if "support_accesslog" in q["sql"] or "core_patientreader" in q["sql"]]
    assert [sql.split()[0] for sql in touching] == ["INSERT", "SELECT"]
    assert "core_patientreader" in touching[1] and "support_accesslog" not in touching[1]
    assert PatientReader.objects.get(patient_id=patient.pk, user=support_agent).reads == 5


def test_it_counts_no_api_client_as_a_reader(client, db):
    visit = make_visit()
    _client, token = api_client_actions.create_api_client(
        name="patient-app", scope="patient", patient=visit.patient, actor=Actor.system()
    )
    assert client.get(f"/api/v1/visits/{visit.public_id}", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    assert AccessLog.objects.filter(api_client__isnull=False).exists()
    assert not PatientReader.objects.exists()


def _bulk_reads(users, patients, *, rows: int, at: dt.datetime, seed: int) -> None:
    chosen = random.Random(seed)
    AccessLog.objects.bulk_create(
        AccessLog(
            kind="list", model="clinical.patient", at=at - dt.timedelta(seconds=chosen.randrange(3600)),
            user=chosen.choice(users), patient_ids=sorted(chosen.sample(patients, chosen.randint(0, 4))),
        )
        for _ in range(rows)
    )  # fmt: skip


def test_it_stays_equal_to_the_log_through_batches_and_prunes(support_agent, lead, clinical_ops):
    users, patients = [support_agent, lead, clinical_ops], list(range(1, 9))
    now = timezone.now()
    _bulk_reads(users, patients, rows=120, at=now - dt.timedelta(days=365 * 7), seed=1)  # past retention
    _bulk_reads(users, patients, rows=60, at=now, seed=2)
    AccessLog.objects.create(kind="view", model="clinical.patient", patient_ids=[99])  # no user: not a reader
    assert _summary() == _from_the_log() and len(_summary()) > 10
    call_command("prune_access_log", "--older-than", "6y", stdout=StringIO())
    assert AccessLog.objects.filter(at__lt=now - dt.timedelta(days=365 * 6)).count() == 0
    assert _summary() == _from_the_log()  # counts taken away, readers with no read left removed
    call_command("prune_access_log", "--older-than", "6y", stdout=StringIO())
    assert _summary() == _from_the_log()


def test_it_fills_the_summary_from_the_log_when_it_is_created(support_agent, lead):
    _bulk_reads([support_agent, lead], list(range(1, 6)), rows=40, at=timezone.now(), seed=3)
    expected = _summary()
    PatientReader.objects.all().delete()
    with connection.cursor() as cursor:
        cursor.execute(MIGRATION.NEW_READS.format(rows="support_accesslog"))
        backfill = {(patient, user): (last, reads) for patient, user, last, reads in cursor.fetchall()}
    assert backfill == expected == _from_the_log()
    assert "INSERT INTO core_patientreader" in MIGRATION.TRIGGERS.split("$$;")[-1]  # the backfill the migration runs


@pytest.mark.django_db(transaction=True)
def test_it_keeps_count_while_staff_read_the_same_patients_at_once(django_user_model):
    users = [django_user_model.objects.create_user(f"reader{n}", is_staff=True) for n in range(2)]
    patients, failures = list(range(1, 7)), []

    def reader(seed: int) -> None:
        chosen = random.Random(seed)
        try:
            for _ in range(25):
                # Shuffled patients, several rows a statement: the trigger's ordered locks keep them apart.
                AccessLog.objects.bulk_create(
                    AccessLog(kind="list", user=chosen.choice(users), patient_ids=chosen.sample(patients, 4))
                    for _ in range(3)
                )
        except Exception as error:  # noqa: BLE001 - reported below, with the thread's seed
            failures.append((seed, repr(error)))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=reader, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert sum(reads for _last, reads in _summary().values()) == 4 * 25 * 3 * 4
    assert _summary() == _from_the_log()
