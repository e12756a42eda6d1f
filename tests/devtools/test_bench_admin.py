"""bench_admin renders every console page and its vanilla twin, and reports both."""

import json
from io import StringIO

from django.conf import settings
from django.core.management import call_command

from devtools.bench import admin as benchadmin
from tests.builders import make_past_visit, make_patient, make_provider, make_visit


def test_it_renders_every_page_and_its_vanilla_twin(lead, redis_client, settings):
    settings.OPS_REQUIRE_2FA = True  # as in production: the bench must still time pages, not redirects
    patient = make_patient(last_name="Benchley")
    provider = make_provider(states=("CA",), available=True)
    for _ in range(6):
        make_past_visit(patient=patient)
    from clinical.actions import offers as offer_actions
    from core.audit import Actor

    offer_actions.offer_visit(make_visit(patient=patient), provider, actor=Actor.router())
    rows = {row["page"]: row for row in benchadmin.run(repeat=1, deep_page=2)}
    assert {row["ours"]["status"] for row in rows.values()} == {200}
    assert {row["vanilla"]["status"] for row in rows.values() if row["vanilla"]} == {200}
    visit_list = rows["clinical.visit list"]
    assert visit_list["ours"]["queries"] < visit_list["vanilla"]["queries"]  # no N+1 in ours
    assert "clinical.visit filter requested" in rows and rows["clinical.visit filter requested"]["vanilla"] is None
    # Seven visits fit on page 1: the deep page is clamped to the last page instead of redirecting.
    assert {"clinical.visit search", "clinical.visit form", "clinical.visit page 1"} <= rows.keys()
    assert {f"statistics {period}" for period in ("1h", "24h", "7d", "30d")} <= rows.keys()


def test_it_prints_a_table_and_one_json_line(lead, redis_client):
    make_visit()
    out = StringIO()
    # The tests' own Redis database: the bench points the process at the one it is given.
    test_db = settings.REDIS_URL.rsplit("/", 1)[1]
    call_command(
        "bench_admin", "--repeat", "1", "--deep-page", "2", "--redis-db", test_db, stdout=out, stderr=StringIO()
    )
    assert settings.REDIS_URL.endswith(f"/{test_db}")
    lines = out.getvalue().strip().splitlines()
    assert lines[0].startswith("page")
    summary = json.loads(lines[-1])
    assert summary["bench"] == "admin" and summary["visit_list_p50_ms"] > 0
