"""Replica reads: read-only pages read from the replica, writes and forms from the primary, a user
who just saved reads the primary, and a replica that does not answer is skipped.

The replica here is a second connection to the test database (the alias a real replica gets);
the topology test in ``tests/topology`` runs a streaming replica.
"""

import time

import pytest
from django.conf import settings as django_settings
from django.db import connections
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from core import replica
from tests.builders import make_patient, make_provider, make_visit

ADMIN = f"/{django_settings.OPS_ADMIN_PATH}"
pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "replica"])


@pytest.fixture(scope="module", autouse=True)
def with_replica(django_db_setup, django_db_blocker):
    """Add the ``replica`` alias (a second connection to the test database) for this module only."""
    entry = {**connections.settings["default"]}
    entry["OPTIONS"] = {**entry["OPTIONS"], "application_name": "ops-console/replica", "connect_timeout": 2}
    with override_settings(DATABASES={**connections.settings, "replica": entry}):
        connections.settings["replica"] = entry
        replica.forget_replica_state()
        yield entry
        with django_db_blocker.unblock():
            connections["replica"].close()
        del connections.settings["replica"]
        del connections["replica"]
        replica.forget_replica_state()


def _served(client, url, *, method="get", data=None) -> tuple[int, list[str], list[str]]:
    """Return the status and the SQL each database served for one request."""
    with (
        CaptureQueriesContext(connections["default"]) as primary,
        CaptureQueriesContext(connections["replica"]) as standby,
    ):
        response = getattr(client, method)(url, data or {})
    return response.status_code, [q["sql"] for q in primary], [q["sql"] for q in standby]


def _reads(sqls: list[str], table: str) -> bool:
    return any(f'FROM "{table}"' in sql for sql in sqls)


def test_it_reads_lists_from_the_replica_and_forms_from_the_primary(client, lead):
    make_visit(patient=make_patient(last_name="Replicant"))
    client.force_login(lead)
    status, primary, standby = _served(client, f"{ADMIN}clinical/patient/")
    assert status == 200
    assert _reads(standby, "clinical_patient") and not _reads(primary, "clinical_patient")
    assert _reads(primary, "django_session") and not _reads(standby, "django_session")  # the sign-in's own
    with connections["replica"].cursor() as cursor:
        cursor.execute("SHOW application_name")
        assert cursor.fetchone()[0] == "ops-console/replica"

    patient_id = _served_patient()
    status, primary, standby = _served(client, f"{ADMIN}clinical/patient/{patient_id}/change/")
    assert status == 200 and not standby  # about to be edited: the primary's current row


def _served_patient() -> int:
    from clinical.models import Patient

    return Patient.objects.get(last_name="Replicant").pk


def test_it_reads_the_statistics_and_search_from_the_replica(client, lead):
    make_visit()
    client.force_login(lead)
    for url in (f"{ADMIN}live/?period=24h", f"{ADMIN}search/?q=Grace"):
        status, _, standby = _served(client, url)
        assert status == 200 and standby, url


def test_it_reads_the_primary_after_the_user_saved(client, lead, settings):
    settings.OPS_READ_YOUR_WRITES_SECONDS = 2
    provider = make_provider(states=("CA",))
    client.force_login(lead)
    form = client.get(f"{ADMIN}clinical/provider/{provider.pk}/change/")
    assert form.status_code == 200
    data = {**_form_data(form), "first_name": "Renamed", "_save": "Save"}
    status, _, standby = _served(client, f"{ADMIN}clinical/provider/{provider.pk}/change/", method="post",
                                 data=data)  # fmt: skip
    assert status == 302 and not standby  # a save reads and writes the primary

    status, primary, standby = _served(client, f"{ADMIN}clinical/provider/")
    assert status == 200 and not standby and _reads(primary, "clinical_provider")  # reads its own write
    time.sleep(2.2)
    status, _, standby = _served(client, f"{ADMIN}clinical/provider/")
    assert status == 200 and _reads(standby, "clinical_provider")


def _form_data(response) -> dict:
    """Return the change form's current values as POST data (management forms of inlines included)."""
    form = response.context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        if value is None:
            continue
        data[name] = value.pk if hasattr(value, "pk") else value
    for formset in response.context.get("inline_admin_formsets", []):
        management = formset.formset.management_form
        for name in management.fields:
            data[f"{management.prefix}-{name}"] = management.initial.get(name, management[name].value())
        for index, inline_form in enumerate(formset.formset.forms):
            for name, field in inline_form.fields.items():
                value = inline_form.initial.get(name, field.initial)
                if value is not None:
                    data[f"{formset.formset.prefix}-{index}-{name}"] = value.pk if hasattr(value, "pk") else value
    return data


def test_it_skips_a_replica_that_does_not_answer(client, lead, with_replica):
    connections["replica"].close()
    with override_settings():  # nothing listens on port 1
        connections.settings["replica"] = {**with_replica, "HOST": "127.0.0.1", "PORT": "1"}
        del connections["replica"]
        replica.forget_replica_state()
        try:
            make_visit()
            client.force_login(lead)
            started = time.monotonic()
            response = client.get(f"{ADMIN}clinical/visit/")
            assert response.status_code == 200 and time.monotonic() - started < 10
            state = replica.replica_state()
            assert not state.usable and state.reason.startswith("unreachable")
        finally:
            connections["replica"].close()
            connections.settings["replica"] = with_replica
            del connections["replica"]
            replica.forget_replica_state()


def test_it_finds_a_server_not_in_recovery_caught_up():
    state = replica.check_replica()
    assert (state.usable, state.lag_s, state.reason) == (True, 0.0, "not a standby")


def test_it_sends_every_write_and_migration_to_the_primary():
    router = replica.ReplicaRouter()
    assert router.db_for_write(object) == "default"
    assert router.allow_migrate("replica", "clinical") is False and router.allow_migrate("default", "clinical")
