"""Large, internally consistent data for performance work (``manage.py generate_data``).

Rows are streamed to PostgreSQL with ``COPY`` in chunks, with explicit ids so that timelines,
history rows and cases can point at visits without a round trip. Generated records are marked
by the ``generated.test`` e-mail domain of their patients and providers, so a second run tops up
to the requested sizes instead of doubling them. Visits are all in final statuses (completed,
cancelled, expired, failed): the router's live queues are left alone.
"""

import contextlib
import csv
import datetime as dt
import io
import random
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from clinical import backfill
from clinical.models import Patient, Provider, ProviderLicense, Visit
from clinical.reference import SPECIALTY_CHOICES
from clinical.validators import PUBLIC_ID_ALPHABET, format_mrn, make_npi
from core.audit import Actor, history_sql
from devtools import sampling
from oversight import history
from support.models import SupportCase

DOMAIN = "generated.test"
CHUNK = 50_000
# Connections writing visit chunks (or rebuilding indexes) at once: one PostgreSQL backend per core here.
WRITERS = 2
LOOKUP_TABLES = "gen_states, gen_providers, gen_provider_counts, gen_patients"  # temporary, per writer
Progress = Callable[[str, int, int], None]


@dataclass
class Sizes:
    patients: int = 100_000
    providers: int = 5_000
    visits: int = 1_000_000


def existing_counts() -> Sizes:
    """Return how many generated patients, providers and visits the database already holds."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM clinical_patient WHERE email LIKE %s", [f"%@{DOMAIN}"])
        patients = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM clinical_provider WHERE email LIKE %s", [f"%@{DOMAIN}"])
        providers = cursor.fetchone()[0]
        cursor.execute(
            "SELECT count(*) FROM clinical_visit v JOIN clinical_patient p ON p.id = v.patient_id "
            "WHERE p.email LIKE %s",
            [f"%@{DOMAIN}"],
        )
        visits = cursor.fetchone()[0]
    return Sizes(patients, providers, visits)


def _copy(table: str, columns: list[str], rows: Iterable[tuple]) -> int:
    """COPY rows into ``table``; return how many."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    count = 0
    for row in rows:
        writer.writerow(["\\N" if value is None else value for value in row])
        count += 1
    buffer.seek(0)
    with connection.cursor() as cursor:
        cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv, NULL '\\N')", buffer)
    return count


def _next_ids(table: str, count: int) -> int:
    """Reserve ``count`` ids from the table's sequence; return the first."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT pg_get_serial_sequence('{table}', 'id')")
        sequence = cursor.fetchone()[0]
        cursor.execute("SELECT nextval(%s) FROM generate_series(1, %s)", [sequence, count])
        ids = [row[0] for row in cursor.fetchall()]
    return ids[0] if ids else 0


VISIT_TABLES = ("clinical_visit", "clinical_visitevent", "clinical_historicalvisit")
PATIENT_TABLES = ("clinical_patient", "clinical_historicalpatient")
# Every table a visit chunk writes.
CHUNK_TABLES = (*VISIT_TABLES, "clinical_offer", "support_supportcase", "support_historicalsupportcase")
WRITTEN_TABLES = (
    *VISIT_TABLES, "clinical_offer", *PATIENT_TABLES, "clinical_provider",
    "clinical_historicalprovider", "clinical_providerlicense", "clinical_historicalproviderlicense",
    "support_supportcase", "support_historicalsupportcase",
)  # fmt: skip


def _share(items: list, work: Callable, *, setup: Callable = lambda cursor: None, teardown: str = "") -> None:
    """Call ``work(item)`` for every item, on ``WRITERS`` connections at once, each item in order taken.

    Each connection runs ``setup(cursor)`` first. The first failure stops the others once their
    current item is done, and is raised here. Inside a transaction (a test's), other connections
    could not see its rows: one connection, this one, in that transaction (``teardown`` then undoes
    what ``setup`` made; a connection of its own is simply closed).
    """
    workers = 1 if connection.in_atomic_block else min(WRITERS, len(items))
    pending, lock, failed = iter(items), threading.Lock(), threading.Event()

    def worker(own_connection: bool) -> None:
        try:
            with connection.cursor() as cursor:
                setup(cursor)
            while True:
                with lock:
                    item = None if failed.is_set() else next(pending, None)
                if item is None:
                    return
                work(item)
        except BaseException:
            failed.set()
            raise
        finally:
            if own_connection:
                connection.close()
            elif teardown:
                with connection.cursor() as cursor:
                    cursor.execute(teardown)

    if workers <= 1:
        worker(own_connection=False)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="generate") as pool:
        for future in [pool.submit(worker, True) for _ in range(workers)]:
            future.result()  # the first failure, raised here


@contextlib.contextmanager
def _without_secondary_indexes(tables: tuple[str, ...], progress: Progress):
    """Drop the tables' indexes that back no constraint, and recreate them on exit, also after a failure.

    Inside a transaction (a test's) the drop and the rebuild are part of it; otherwise each
    commits on its own, so that the parallel writers can load meanwhile, and the indexes are
    rebuilt two at a time (``_share``).
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY(%s) "
            "AND indexname NOT IN (SELECT conname FROM pg_constraint)",
            [list(tables)],
        )
        indexes = cursor.fetchall()
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
    done, lock = [0], threading.Lock()

    def setup(cursor) -> None:
        # Each index is one sort of its whole table: in memory instead of spilling to disk
        # (the default 64 MB holds none of the ten-million-row ones).
        cursor.execute("SET maintenance_work_mem TO '1GB'")

    def rebuild(definition: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(definition)
        with lock:
            done[0] += 1
            progress("indexes", done[0], len(indexes))

    try:
        yield
    finally:
        definitions = [definition for _, definition in indexes]
        _share(definitions, rebuild, setup=setup, teardown="RESET maintenance_work_mem")


@contextlib.contextmanager
def _without_foreign_keys(tables: tuple[str, ...], progress: Progress):
    """Drop the tables' foreign keys for the load and add them back on exit, also after a failure.

    Checked row by row, each key costs a lookup and a row lock in the table it points to for every
    row written (the two writers locking the same patients share those locks through multixacts);
    added back, each is checked once for the whole table, by one join. One at a time: keys that
    point to the same table would wait for each other's lock anyway. Inside a transaction (a
    test's) all of it is part of it.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE contype = 'f' AND conrelid = ANY(%s::regclass[]) ORDER BY 1, 2",
            [list(tables)],
        )
        keys = cursor.fetchall()
        for table, name, _ in keys:
            cursor.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')
    try:
        yield
    finally:
        refused = []
        for done, (table, name, definition) in enumerate(keys, start=1):
            try:
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}')
            except DatabaseError as error:  # rows that break it: the others are still added back
                refused.append(f"{table}.{name}: {error}".strip())
            progress("foreign keys", done, len(keys))
        if refused:
            raise CommandError("generate_data: foreign keys not added back:\n" + "\n".join(refused))


def _history_columns(model) -> list[str]:
    return [f.column for f in model._meta.concrete_fields] + [
        "history_date", "history_change_reason", "history_type", "history_actor", "history_actor_label",
    ]  # fmt: skip


class Generator:
    """Builds the rows; ``run`` tops the database up to the requested sizes."""

    def __init__(self, *, seed: int, progress: Progress):
        self.rng = random.Random(seed)
        self.progress = progress
        self.people = sampling.people()
        self.codes, self.weights = sampling.state_weights()
        self.now = timezone.now()
        self.today = timezone.localdate()

    def run(self, wanted: Sizes) -> dict:
        """Add what is missing; return the number of rows written per table."""
        have = existing_counts()
        written = {}
        with transaction.atomic():
            written["providers"] = self.providers(max(0, wanted.providers - have.providers))
        written["patients"] = self.patients(max(0, wanted.patients - have.patients), have=have.patients)
        written.update(self.visits(max(0, wanted.visits - have.visits)))
        with connection.cursor() as cursor:
            # VACUUM sets the visibility map too, so deep pages can walk the indexes alone
            # (it cannot run inside a transaction, e.g. a test's: then statistics only).
            # Every table it wrote: a table left with the statistics of a quarter of its rows
            # misleads the planner (the license list's status filter took 52 ms instead of 5).
            command = "ANALYZE" if connection.in_atomic_block else "VACUUM (ANALYZE)"
            cursor.execute(f"{command} {', '.join(WRITTEN_TABLES)}")
        if written["visits"]:
            # The new visits landed in minutes the queue history may have recorded: record them again.
            written["history_minutes"] = history.rebuild(writer="generate_data", share=self._share_days)
        return written

    def _share_days(self, days: list, record: Callable) -> None:
        """Record the queue history's days on ``WRITERS`` connections at once, showing the progress."""
        done, lock = [0], threading.Lock()
        self.progress("history", 0, len(days))

        def work(day) -> None:
            record(day)
            with lock:
                done[0] += 1
                self.progress("history", done[0], len(days))

        _share(days, work)

    # --- people ---------------------------------------------------------------------------

    def _name(self) -> tuple[str, str]:
        return self.rng.choice(self.people["first_names"]), self.rng.choice(self.people["last_names"])

    def _state(self) -> str:
        return self.rng.choices(self.codes, self.weights)[0]

    def providers(self, count: int) -> int:
        if not count:
            return 0
        first = _next_ids("clinical_provider", count)
        taken = set(Provider.objects.values_list("npi", flat=True))
        rows, licenses = [], []
        for pid in range(first, first + count):
            npi = self._npi(taken)
            given, family = self._name()
            rows.append((pid, given, family, npi, f"p{pid}@{DOMAIN}", f"+1{self.rng.randint(2012000000, 9899999999)}",
                         self.rng.choice(SPECIALTY_CHOICES)[0], True, "offline", None, self.now))  # fmt: skip
            licenses += self._licenses(pid)
        columns = [f.column for f in Provider._meta.concrete_fields]
        _copy("clinical_provider", columns, rows)
        _copy("clinical_historicalprovider", _history_columns(Provider),
              (row + (self.now, "generated", "+", "system", "generate_data") for row in rows))  # fmt: skip
        first_license = _next_ids("clinical_providerlicense", len(licenses))
        license_rows = [(first_license + i, *lic) for i, lic in enumerate(licenses)]
        license_columns = [f.column for f in ProviderLicense._meta.concrete_fields]
        _copy("clinical_providerlicense", license_columns, license_rows)
        _copy("clinical_historicalproviderlicense", _history_columns(ProviderLicense),
              (row + (self.now, "generated", "+", "system", "generate_data") for row in license_rows))  # fmt: skip
        self.progress("providers", count, count)
        return count

    def _npi(self, taken: set[str]) -> str:
        while True:
            npi = make_npi(f"{self.rng.randint(100_000_000, 999_999_999)}")
            if npi not in taken:
                taken.add(npi)
                return npi

    def _licenses(self, provider_id: int) -> list[tuple]:
        wanted = 1 + min(int(self.rng.expovariate(0.6)), 14)
        chosen = set()
        while len(chosen) < wanted:
            chosen.add(self._state())
        out = []
        for state in sorted(chosen):
            issued = self.today - dt.timedelta(days=self.rng.randint(30, 3000))
            roll = self.rng.random()
            status = "active" if roll < 0.9 else self.rng.choice(["expired", "suspended", "pending", "revoked"])
            expires = self.today + dt.timedelta(days=self.rng.randint(-200, 900))
            if expires <= issued:
                expires = issued + dt.timedelta(days=365)
            # Field order: ProviderLicense concrete fields after id.
            number = f"{state}{self.rng.randint(100000, 999999)}"
            kind = self.rng.choice(["MD", "MD", "DO", "NP", "PA"])
            out.append((provider_id, state, number, kind, status, issued, expires, None, None, ""))
        return out

    def patients(self, count: int, *, have: int = 0) -> int:
        """Insert ``count`` patients and their history rows (one transaction).

        When they at least double the table (``have`` rows already), its secondary indexes (the
        name, trigram and phone ones) are dropped for the load and rebuilt after it: maintaining
        them row by row took 316 s of a 900,000-patient top-up, rebuilding them takes seconds.
        """
        if not count:
            return 0
        # A smaller top-up keeps them: rebuilding them would cost more than maintaining them.
        indexes = (
            _without_secondary_indexes(PATIENT_TABLES, self.progress) if count >= have else contextlib.nullcontext()
        )
        with indexes, transaction.atomic():
            first = _next_ids("clinical_patient", count)
            with connection.cursor() as cursor:
                # Checked as written: pending deferred checks would forbid the index rebuild in a test's transaction.
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                cursor.execute("SELECT nextval('clinical_patient_mrn_seq') FROM generate_series(1, %s)", [count])
                mrns = [format_mrn(row[0]) for row in cursor.fetchall()]
            rows = [self._patient(pid, mrn) for pid, mrn in zip(range(first, first + count), mrns, strict=True)]
            _copy("clinical_patient", [f.column for f in Patient._meta.concrete_fields], rows)
            _copy("clinical_historicalpatient", _history_columns(Patient),
                  (row + (self.now, "generated", "+", "system", "generate_data") for row in rows))  # fmt: skip
        self.progress("patients", count, count)
        return count

    def _patient(self, pid: int, mrn: str) -> tuple:
        given, family = self._name()
        state = self._state()
        place = self.rng.choice(self.people["places"][state])
        street = f"{self.rng.randint(1, 9999)} {self.rng.choice(self.people['street_names'])} St"
        dob = self.today - dt.timedelta(days=self.rng.randint(365, 95 * 365))
        phone = f"+1{place['area_code']}{self.rng.randint(2000000, 9999999)}"
        email = f"{given.lower()}.{family.lower()}.{pid}@{DOMAIN}".replace(" ", "").replace("'", "")
        zip_code = f"{place['zip']}{self.rng.randint(10, 99)}"
        return (pid, mrn, given, family, dob, email, phone, street, "", place["city"], state, zip_code, self.now)

    # --- visits ---------------------------------------------------------------------------

    def visits(self, count: int) -> dict:
        """Insert ``count`` finished visits with their timelines, history rows and routing cases.

        Generated inside PostgreSQL (``INSERT … SELECT`` over ``generate_series``): at a million
        rows, building them in Python would take longer than the database needs to write them.
        Secondary indexes are dropped for the load and rebuilt at the end, and the written tables'
        foreign keys added back and checked once (much faster than maintaining and checking them
        row by row). A process killed in between (SIGKILL) leaves them missing (``migrate`` does not
        notice): generate that data set again.

        Chunks of ``CHUNK`` visits are written by ``WRITERS`` connections at once, each chunk in a
        transaction of its own: one PostgreSQL backend per core. A failure keeps the chunks
        already written (a second run tops up the rest) and rebuilds the indexes either way.
        Inside a transaction (tests), other connections could not see its patients: one writer,
        in that transaction.
        """
        written = {"visits": 0, "events": 0, "offers": 0, "visit_history": 0, "cases": 0}
        if not count:
            return written
        lock = threading.Lock()

        def write_chunk(size: int) -> None:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no queue of deferred checks
                done = self._visit_chunk(cursor, size)
            with lock:
                for key, value in done.items():
                    written[key] += value
                self.progress("visits", written["visits"], count)

        with (
            _without_secondary_indexes(VISIT_TABLES, self.progress),
            _without_foreign_keys(CHUNK_TABLES, self.progress),
        ):
            # Again for what is missing: a chunk skips the odd visit whose random public id was taken.
            while (missing := count - written["visits"]) > 0:
                sizes = [min(CHUNK, missing - start) for start in range(0, missing, CHUNK)]
                drop = f"DROP TABLE IF EXISTS {LOOKUP_TABLES}"
                _share(sizes, write_chunk, setup=self._prepare_lookups, teardown=drop)
        return written

    def _prepare_lookups(self, cursor) -> None:
        total = sum(self.weights)
        edges, low = [], 0.0
        for code, weight in zip(self.codes, self.weights, strict=True):
            edges.append((code, low, low + weight / total))
            low += weight / total
        # Temporary tables of this connection, kept across its chunks' transactions.
        cursor.execute(f"DROP TABLE IF EXISTS {LOOKUP_TABLES}")
        cursor.execute("CREATE TEMP TABLE gen_states (code text, lo float8, hi float8)")
        cursor.executemany(
            "INSERT INTO gen_states VALUES (%s, %s, %s)", edges[:-1] + [(edges[-1][0], edges[-1][1], 2.0)]
        )
        # Numbered lookup tables (not arrays: a big array is de-TOASTed again for every row).
        cursor.execute(
            "CREATE TEMP TABLE gen_providers AS "
            "SELECT l.state, row_number() OVER (PARTITION BY l.state) AS n, l.provider_id AS id "
            "FROM clinical_providerlicense l JOIN clinical_provider p ON p.id = l.provider_id "
            "WHERE l.status = 'active' AND p.email LIKE %s",
            [f"%@{DOMAIN}"],
        )
        cursor.execute(
            "CREATE TEMP TABLE gen_provider_counts AS "
            "SELECT state, count(*) AS providers FROM gen_providers GROUP BY state"
        )
        cursor.execute(
            "CREATE TEMP TABLE gen_patients AS "
            "SELECT row_number() OVER () AS n, id FROM clinical_patient WHERE email LIKE %s",
            [f"%@{DOMAIN}"],
        )
        cursor.execute("SELECT count(*) FROM gen_patients")
        self.patient_count = cursor.fetchone()[0]
        cursor.execute("ANALYZE gen_providers, gen_provider_counts, gen_patients")

    def _visit_chunk(self, cursor, size: int) -> dict:
        first = _reserve_ids(cursor, "clinical_visit", size)
        params = {
            "first": first, "last": first + size - 1, "now": self.now, "alphabet": PUBLIC_ID_ALPHABET,
            "letters": len(PUBLIC_ID_ALPHABET),
            "patients": self.patient_count,
            "reasons": self.people["visit_reasons"],
        }  # fmt: skip
        cursor.execute(_VISITS_SQL, params)
        visits = cursor.rowcount
        cursor.execute("SELECT coalesce(max(id), 0) FROM clinical_visitevent")  # by the primary key
        events_after = cursor.fetchone()[0]
        cursor.execute(_EVENTS_SQL, params)
        events = cursor.rowcount
        offers = backfill.derive_offers(
            cursor, offer_timeout=settings.ROUTING_OFFER_TIMEOUT, first=params["first"], last=params["last"],
            events_after=events_after,
        )  # fmt: skip
        sql, history_params = history_sql(Visit, actor=GENERATOR, reason="generated")
        cursor.execute(_FIRST_HISTORY_SQL, params)
        cursor.execute(sql.replace("clock_timestamp()", "coalesce(ended_at, cancelled_at)"),
                       [*history_params, list(range(first, first + size))])  # fmt: skip
        cases = self._cases(cursor, params)
        return {"visits": visits, "events": events, "offers": offers, "visit_history": 2 * visits, "cases": cases}

    def _cases(self, cursor, params) -> int:
        cursor.execute(_CASES_SQL, params)
        ids = [row[0] for row in cursor.fetchall()]
        if ids:
            sql, history_params = history_sql(SupportCase, actor=GENERATOR, reason="generated")
            cursor.execute(sql.replace("clock_timestamp()", "created_at"), [*history_params, ids])
        return len(ids)


GENERATOR = Actor.system("generate_data")


# One writer at a time moves a sequence past its chunk: ``nextval`` then ``setval`` is two steps,
# and a second writer's ``nextval`` between them would take an id inside the first one's range.
_RESERVING = threading.Lock()


def _reserve_ids(cursor, table: str, count: int) -> int:
    """Move the table's id sequence past ``count`` ids and return the first of them.

    The writers of one ``generate_data`` take turns (``_RESERVING``); nothing else may take ids
    from the table meanwhile (a data set is generated with the console stopped: its indexes are
    dropped for the load too).
    """
    cursor.execute(f"SELECT pg_get_serial_sequence('{table}', 'id')")
    sequence = cursor.fetchone()[0]
    with _RESERVING:
        cursor.execute("SELECT setval(%s, nextval(%s) + %s - 1)", [sequence, sequence, count])
        last = cursor.fetchone()[0]
    return last - count + 1


# Finished visits with consistent milestones: completed/failed went through offer, acceptance
# and connection; cancelled ones were cancelled while waiting; expired ones waited 30 minutes.
_VISITS_SQL = """
WITH base AS (
    SELECT g AS id, random() AS r_state, random() AS r_outcome, random() AS r_priority,
           %(now)s - make_interval(secs => 3600 + random() * 365 * 86400) AS requested
    FROM generate_series(%(first)s, %(last)s) AS g
), placed AS (
    SELECT b.*, s.code AS state,
           1 + floor(random() * %(patients)s)::int AS patient_n,
           1 + floor(random() * coalesce(c.providers, 1))::int AS provider_n
    FROM base b JOIN gen_states s ON b.r_state >= s.lo AND b.r_state < s.hi
    LEFT JOIN gen_provider_counts c ON c.state = s.code
), chosen AS (
    SELECT p.*, gp.id AS patient_id, gv.id AS provider_id
    FROM placed p JOIN gen_patients gp ON gp.n = p.patient_n
    LEFT JOIN gen_providers gv ON gv.state = p.state AND gv.n = p.provider_n
), decided AS (
    SELECT *,
        CASE WHEN provider_id IS NULL THEN 'expired' WHEN r_outcome < 0.86 THEN 'completed'
             WHEN r_outcome < 0.94 THEN 'cancelled' WHEN r_outcome < 0.97 THEN 'failed' ELSE 'expired' END AS outcome,
        requested + make_interval(secs => 20 + random() * 580) AS offered
    FROM chosen
), timed AS (
    SELECT *, offered + make_interval(secs => 5 + random() * 55) AS accepted FROM decided
), started AS (
    SELECT *, accepted + make_interval(secs => 5 + random() * 85) AS began FROM timed
)
INSERT INTO clinical_visit (id, public_id, patient_id, located_state, reason, priority, status, provider_id,
    requested_at, offered_at, accepted_at, started_at, ended_at, cancelled_at, offer_count)
SELECT id,
    %(letter)s || %(letter)s || %(letter)s || %(letter)s || '-' || %(letter)s || %(letter)s || %(letter)s || %(letter)s,
    patient_id,
    state,
    (%(reasons)s::text[])[1 + floor(random() * cardinality(%(reasons)s::text[]))::int],
    CASE WHEN r_priority < 0.85 THEN 0 WHEN r_priority < 0.97 THEN 1 ELSE 2 END,
    outcome,
    CASE WHEN outcome IN ('completed', 'failed') THEN provider_id END,
    requested,
    CASE WHEN outcome IN ('completed', 'failed') THEN offered END,
    CASE WHEN outcome IN ('completed', 'failed') THEN accepted END,
    CASE WHEN outcome IN ('completed', 'failed') THEN began END,
    CASE WHEN outcome IN ('completed', 'failed') THEN began + make_interval(secs => 300 + random() * 1500)
         WHEN outcome = 'expired' THEN requested + interval '30 minutes' END,
    CASE WHEN outcome = 'cancelled' THEN requested + make_interval(secs => 30 + random() * 870) END,
    CASE WHEN outcome IN ('completed', 'failed') THEN 1 ELSE 0 END
FROM started
ON CONFLICT (public_id) DO NOTHING
""".replace("%(letter)s", "substr(%(alphabet)s, 1 + floor(random() * %(letters)s)::int, 1)")

_EVENTS_SQL = """
INSERT INTO clinical_visitevent (visit_id, from_status, to_status, at, actor_kind, staff_user_id, provider_id, detail)
SELECT v.id, e.from_status, e.to_status, e.at, e.actor, NULL, e.provider, e.detail
FROM clinical_visit v CROSS JOIN LATERAL (VALUES
    ('', 'waiting', v.requested_at, 'patient', NULL::bigint, 'requested'),
    ('waiting', 'offered', v.offered_at, 'router', v.provider_id, 'offered'),
    ('offered', 'accepted', v.accepted_at, 'provider', v.provider_id, 'accepted'),
    ('accepted', 'in_progress', v.started_at, 'provider', v.provider_id, 'connected'),
    ('in_progress', v.status, CASE WHEN v.status IN ('completed', 'failed') THEN v.ended_at END, 'provider',
        v.provider_id, v.status),
    ('waiting', 'cancelled', v.cancelled_at, 'patient', NULL, 'cancelled by the patient'),
    ('waiting', 'expired', CASE WHEN v.status = 'expired' THEN v.ended_at END, 'router', NULL, 'waited too long')
) AS e(from_status, to_status, at, actor, provider, detail)
WHERE v.id BETWEEN %(first)s AND %(last)s AND e.at IS NOT NULL
"""

_FIRST_HISTORY_SQL = """
INSERT INTO clinical_historicalvisit (id, public_id, patient_id, located_state, reason, priority, status,
    provider_id, requested_at, offered_at, accepted_at, started_at, ended_at, cancelled_at, offer_count,
    history_date, history_change_reason, history_type, history_user_id, history_actor, history_actor_label)
SELECT id, public_id, patient_id, located_state, reason, priority, 'waiting', NULL, requested_at,
    NULL, NULL, NULL, NULL, NULL, 0, requested_at, 'generated', '+', NULL, 'system', 'generate_data'
FROM clinical_visit WHERE id BETWEEN %(first)s AND %(last)s
"""

_CASES_SQL = """
INSERT INTO support_supportcase (subject, category, status, priority, patient_id, visit_id, assignee_id,
    created_by_id, created_at, updated_at, resolved_at)
SELECT 'Visit ' || public_id || ' expired after 30 min waiting in ' || located_state, 'routing',
    CASE WHEN ended_at < %(now)s - interval '7 days' THEN 'closed' ELSE 'open' END, 2, patient_id, id, NULL,
    NULL, ended_at, ended_at,
    CASE WHEN ended_at < %(now)s - interval '7 days' THEN ended_at + interval '1 day' END
FROM clinical_visit WHERE id BETWEEN %(first)s AND %(last)s AND status = 'expired' AND random() < 0.3
RETURNING id
"""
