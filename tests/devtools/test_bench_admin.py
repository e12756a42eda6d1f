"""bench_admin renders every console page and its vanilla twin, and reports both."""

import json
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from clinical.models import Patient
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


def test_it_renders_the_vanilla_twins_as_often_as_asked(lead, redis_client, monkeypatch):
    make_visit()
    renders = []
    real = benchadmin.measure

    def counted(client, url, repeat):
        renders.append((url.split("/")[1], repeat))
        return real(client, url, repeat)

    monkeypatch.setattr(benchadmin, "measure", counted)
    out = StringIO()
    call_command(
        "bench_admin", "--repeat", "3", "--vanilla-repeat", "1", "--only", "clinical.patient list",
        "--redis-db", settings.REDIS_URL.rsplit("/", 1)[1], stdout=out, stderr=StringIO(),
    )  # fmt: skip
    assert renders == [("ops", 3), ("baseline", 1)]
    summary = json.loads(out.getvalue().strip().splitlines()[-1])
    assert (summary["repeat"], summary["vanilla_repeat"]) == (3, 1)
    with pytest.raises(CommandError, match="--vanilla-repeat: give 1 or more, got 0"):
        call_command("bench_admin", "--vanilla-repeat", "0", stdout=StringIO(), stderr=StringIO())


def test_it_tables_each_pages_growth_between_data_sizes():
    def run(visits, p50, vanilla):
        page = {
            "page": "clinical.visit list",
            "ours": {"p50_ms": p50, "p95_ms": p50 * 2},
            "vanilla": {"p50_ms": vanilla},
        }
        return {"database": f"db{visits}", "visits": visits, "pages": [page]}

    table = benchadmin.size_table([run(1_000_000, 20.0, 90.0), run(10_000_000, 25.0, 400.0)])

    assert table["sizes"] == ["1M", "10M"]
    assert table["rows"][0] == ["page", "1M p50/p95", "10M p50/p95", "growth", "vanilla 1M", "vanilla 10M"]
    assert table["rows"][1] == ["clinical.visit list", "20.0/40.0", "25.0/50.0", 1.25, "90.0", "400.0"]
    assert (table["worst_growth"], table["worst_growth_page"], table["worst_p95_ms"]) == (
        1.25, "clinical.visit list", [40.0, 50.0],
    )  # fmt: skip


def test_it_runs_at_each_data_size_given(transactional_db, lead, redis_client):
    from django.db import connection

    make_visit()
    name = connection.settings_dict["NAME"]
    out = StringIO()
    try:
        call_command(
            "bench_admin", "--sizes", f"{name},{name}", "--only", "clinical.patient list", "--repeat", "1",
            "--redis-db", settings.REDIS_URL.rsplit("/", 1)[1], stdout=out, stderr=StringIO(),
        )  # fmt: skip
    finally:
        connection.close()
        connection.settings_dict["NAME"] = name
    lines = out.getvalue().strip().splitlines()
    result = json.loads(lines[-1])
    assert result["bench"] == "admin_sizes" and [run["database"] for run in result["runs"]] == [name, name]
    assert lines[1].startswith("clinical.patient list") and result["worst_growth_page"] == "clinical.patient list"
    first, second = (run["search_terms"] for run in result["runs"])
    assert first == second and first["clinical.patient"]
    assert f"searches typed at every size (read on {name}): " in out.getvalue()


def test_it_reports_each_pages_median_round(transactional_db, lead, redis_client):
    from django.db import connection

    make_visit()
    name = connection.settings_dict["NAME"]
    out, err = StringIO(), StringIO()
    try:
        call_command(
            "bench_admin", "--sizes", f"{name},{name}", "--rounds", "3", "--only", "clinical.patient list",
            "--repeat", "1", "--redis-db", settings.REDIS_URL.rsplit("/", 1)[1], stdout=out, stderr=err,
        )  # fmt: skip
    finally:
        connection.close()
        connection.settings_dict["NAME"] = name
    result = json.loads(out.getvalue().strip().splitlines()[-1])
    assert result["rounds"] == 3 and err.getvalue().count("(round 3 of 3)") == 2
    assert [len(run["pages"]) for run in result["runs"]] == [1, 1]


def test_it_takes_the_median_round_of_each_timing():
    def row(p50, p95, vanilla_p50):
        ours = {"p50_ms": p50, "p95_ms": p95, "queries": 3, "status": 200}
        vanilla = {"p50_ms": vanilla_p50, "p95_ms": 1.0, "queries": 5, "status": 200}
        return {"page": "a page", "ours": ours, "vanilla": vanilla}

    merged = benchadmin.median_rounds([[row(10.0, 90.0, 30.0)], [row(50.0, 20.0, 10.0)], [row(20.0, 30.0, 20.0)]])
    assert merged == [
        {
            "page": "a page",
            "ours": {"p50_ms": 20.0, "p95_ms": 30.0, "queries": 3, "status": 200},
            "vanilla": {"p50_ms": 20.0, "p95_ms": 1.0, "queries": 5, "status": 200},
            "ratio_p50": 1.0,
        }
    ]


def test_it_types_the_search_terms_it_is_given(db):
    make_visit()
    given = benchadmin.pages(deep_page=1, terms={"clinical.visit": "Zzyzx"})
    searches = [page.path for page in given if "?q=" in page.path]
    assert searches == ["clinical/visit/?q=Zzyzx"]
    own = [page.path for page in benchadmin.pages(deep_page=1) if page.path.startswith("clinical/patient/?q=")]
    assert own == [f"clinical/patient/?q={Patient.objects.latest('pk').last_name}"]


def test_it_needs_two_data_sets_to_compare(db):
    with pytest.raises(CommandError, match="--sizes: name two data sets"):
        call_command("bench_admin", "--sizes", "ops_data", stdout=StringIO(), stderr=StringIO())
