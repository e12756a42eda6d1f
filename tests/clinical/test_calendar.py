"""The state's own calendar: a license counts at an instant only inside its dates in every zone of its state."""

import csv
import datetime as dt
import io
import zoneinfo

import pytest
from django.db import connection

from clinical import calendar, selectors
from clinical.actions import offers as offer_actions
from clinical.imports import checks as import_checks
from clinical.models import OfferOutcome, ProviderLicense, StateTimeZone
from clinical.reference import states
from clinical.routing import workingset as ws
from clinical.routing.engine import Router
from core import dbclock
from core.audit import Actor
from core.errors import IllegalTransition
from tests.builders import make_license, make_provider, make_visit

UTC = dt.UTC


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def _counts(state: str, issued: str, expires: str | None, at: str, status: str = "active") -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {calendar.FUNCTION}(%s, %s, %s::date, %s::date, %s)", [status, state, issued, expires, _at(at)]
        )
        return cursor.fetchone()[0]


# (state, issued on, expires on, instant in UTC, counts?) — each pair straddles one local midnight.
BOUNDARIES = [
    # California, UTC-8 in December: a license issued on December 2 counts from 08:00 UTC, not the UTC date.
    ("CA", "2026-12-02", None, "2026-12-02T07:59:00", False),
    ("CA", "2026-12-02", None, "2026-12-02T08:01:00", True),
    ("CA", "2025-01-01", "2026-12-01", "2026-12-02T07:59:00", True),  # still December 1 in California
    ("CA", "2025-01-01", "2026-12-01", "2026-12-02T08:01:00", False),
    # Hawaii, UTC-10 all year.
    ("HI", "2026-12-02", None, "2026-12-02T09:59:00", False),
    ("HI", "2026-12-02", None, "2026-12-02T10:01:00", True),
    # Arizona keeps UTC-7 across the March change (14 March 2027), while Colorado moves to UTC-6.
    ("AZ", "2027-03-08", None, "2027-03-08T06:59:00", False),
    ("AZ", "2027-03-08", None, "2027-03-08T07:01:00", True),
    ("AZ", "2027-03-15", None, "2027-03-15T06:30:00", False),
    ("AZ", "2027-03-15", None, "2027-03-15T07:01:00", True),
    ("CO", "2027-03-15", None, "2027-03-15T06:30:00", True),
    # Texas between its two midnights: 00:30 on the 3rd in Houston (Central), 23:30 on the 2nd in El Paso (Mountain).
    ("TX", "2026-12-03", None, "2026-12-03T06:30:00", False),  # not issued yet in El Paso
    ("TX", "2026-12-03", None, "2026-12-03T07:01:00", True),
    ("TX", "2025-01-01", "2026-12-02", "2026-12-03T05:59:00", True),
    ("TX", "2025-01-01", "2026-12-02", "2026-12-03T06:30:00", False),  # already expired in Houston
    ("TX", "2026-12-02", "2026-12-03", "2026-12-03T06:30:00", True),
    # Guam, UTC+10: a license that expired on December 2 stops at 14:00 UTC on December 2.
    ("GU", "2025-01-01", "2026-12-02", "2026-12-02T13:59:00", True),
    ("GU", "2025-01-01", "2026-12-02", "2026-12-02T14:00:00", False),
    ("GU", "2025-01-01", "2026-12-02", "2026-12-02T23:00:00", False),  # UTC still says December 2
    # American Samoa, UTC-11.
    ("AS", "2026-12-02", None, "2026-12-02T10:59:00", False),
    ("AS", "2026-12-02", None, "2026-12-02T11:01:00", True),
]


@pytest.mark.parametrize(("state", "issued", "expires", "at", "expected"), BOUNDARIES)
def test_it_counts_a_license_by_the_calendar_of_every_zone_of_its_state(db, state, issued, expires, at, expected):
    assert _counts(state, issued, expires, at) is expected


@pytest.mark.parametrize("status", ["pending", "suspended", "revoked", "expired"])
def test_it_counts_only_active_licenses(db, status):
    assert _counts("CA", "2020-01-01", None, "2026-12-02T20:00:00", status=status) is False


def test_it_never_counts_a_license_in_a_state_it_has_no_zones_for(db):
    assert _counts("ZZ", "2020-01-01", None, "2026-12-02T20:00:00") is False


@pytest.mark.parametrize(("state", "issued", "expires", "at", "expected"), BOUNDARIES[:6])
def test_it_gives_the_same_answer_through_the_orm_and_python(db, state, issued, expires, at, expected):
    provider = make_provider(states=())
    license = make_license(provider, state)
    ProviderLicense.objects.filter(pk=license.pk).update(
        issued_on=dt.date.fromisoformat(issued), expires_on=expires and dt.date.fromisoformat(expires)
    )
    assert ProviderLicense.objects.filter(pk=license.pk).valid_at(_at(at)).exists() is expected
    assert (state in calendar.states_licensed_at(provider.pk, _at(at))) is expected


def test_it_keeps_the_zones_table_equal_to_the_fixture(db):
    assert sorted(StateTimeZone.objects.values_list("state", "time_zone")) == sorted(calendar.zones_from_fixture())
    StateTimeZone.objects.filter(state="TX").delete()
    StateTimeZone.objects.create(state="TX", time_zone="Europe/Paris")
    assert calendar.sync_time_zones() == 3
    assert sorted(StateTimeZone.objects.filter(state="TX").values_list("time_zone", flat=True)) == [
        "America/Chicago",
        "America/Denver",
    ]


def test_it_gives_every_state_and_territory_zones_that_postgresql_and_python_both_know(db):
    zones = {zone for _, zone in calendar.zones_from_fixture()}
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_timezone_names WHERE name = ANY(%s)", [sorted(zones)])
        known = {row[0] for row in cursor.fetchall()}
    assert known == zones
    for zone in zones:
        zoneinfo.ZoneInfo(zone)
    assert all(row["time_zones"] for row in states())
    by_state = {row["code"]: row["time_zones"] for row in states()}
    assert by_state["AZ"] == ["America/Phoenix"]
    assert {"America/Chicago", "America/Denver"} == set(by_state["TX"])
    assert {by_state[code][0] for code in ("HI", "GU", "AS", "PR", "VI", "MP")} == {
        "Pacific/Honolulu", "Pacific/Guam", "Pacific/Pago_Pago", "America/Puerto_Rico", "America/St_Thomas",
        "Pacific/Saipan",
    }  # fmt: skip


# --- every path that asks "licensed now" asks the state's calendar ---------------------------------
# ``california_a_day_off_utc`` moves California's date a day away from UTC's: a path that used the
# UTC date would count the edge license below; the state's own calendar does not.


def _edge_provider(edge: dict, *, available: bool = True):
    provider = make_provider(states=(), available=available)
    return provider, make_license(provider, "CA", **edge)


def _utc_would_count(license) -> bool:
    utc_today = dbclock.now().date()
    return license.issued_on <= utc_today <= license.expires_on


def test_it_refuses_an_offer_by_the_state_calendar(california_a_day_off_utc):
    provider, license = _edge_provider(california_a_day_off_utc)
    assert _utc_would_count(license)
    with pytest.raises(IllegalTransition) as refused:
        offer_actions.offer_visit(make_visit(state="CA"), provider, actor=Actor.router())
    assert refused.value.code == "not_licensed"


def test_it_leaves_the_provider_out_of_the_working_set_by_the_state_calendar(california_a_day_off_utc, redis_client):
    provider, _ = _edge_provider(california_a_day_off_utc)
    counted = make_provider(states=("CA",), available=True)
    Router(redis_client).rebuild()
    assert [int(p) for p in redis_client.zrange(ws.AVAILABLE.format("CA"), 0, -1)] == [counted.pk]


def _offered_then_at_edge(edge: dict):
    provider = make_provider(states=("CA",), available=True)
    visit = offer_actions.offer_visit(make_visit(state="CA"), provider, actor=Actor.router())
    license = provider.licenses.get()
    edge_license = make_license(make_provider(states=()), "CA", **edge)
    ProviderLicense.objects.filter(pk=license.pk).update(
        issued_on=edge_license.issued_on, expires_on=edge_license.expires_on
    )
    return visit, provider


def test_it_withdraws_an_offer_in_the_sweep_by_the_state_calendar(california_a_day_off_utc, redis_client):
    visit, provider = _offered_then_at_edge(california_a_day_off_utc)
    assert Router(redis_client).withdraw_ineligible_offers() == 1
    assert visit.offers.get().outcome == OfferOutcome.WITHDRAWN


def test_it_refuses_an_accept_by_the_state_calendar(california_a_day_off_utc):
    visit, provider = _offered_then_at_edge(california_a_day_off_utc)
    with pytest.raises(IllegalTransition) as refused:
        offer_actions.accept_visit(visit, provider=provider, actor=Actor.provider_app())
    assert refused.value.code == "not_licensed"


def test_it_counts_providers_on_the_live_queues_by_the_state_calendar(california_a_day_off_utc):
    _edge_provider(california_a_day_off_utc)
    make_visit(state="CA")
    row = next(row for row in selectors.live_queues()["states"] if row["state"] == "CA")
    assert (row["waiting"], row["available"]) == (1, 0)


def test_it_lists_licensed_states_and_licenses_by_the_state_calendar(california_a_day_off_utc):
    provider, license = _edge_provider(california_a_day_off_utc, available=False)
    make_license(provider, "NV")
    assert selectors.licensed_states_now(provider) == ["NV"]
    assert selectors.licenses_for_list().get(pk=license.pk).counts_now is False
    assert license not in selectors.licenses_expiring()
    valid = ProviderLicense.objects.valid_at().filter(provider=provider)
    assert list(valid.values_list("state", flat=True)) == ["NV"]


def test_it_tells_the_import_check_what_counts_now_by_the_state_calendar(california_a_day_off_utc):
    provider = make_provider(states=())
    edge = make_license(make_provider(states=()), "CA", **california_a_day_off_utc)
    row = [provider.npi, "CA", "CA-EDGE-1", "MD", "active", edge.issued_on.isoformat(), edge.expires_on.isoformat()]
    good = [provider.npi, "NV", "NV-GOOD-1", "MD", "active", "2020-01-01", "2099-12-31"]
    out = io.StringIO(newline="")
    csv.writer(out).writerows([HEADINGS, row, good])
    preview = import_checks.check_license_file(out.getvalue().encode(), "board.csv", max_rows=10)
    assert [(r.key.split()[1], r.routing) for r in preview.results] == [("CA", ""), ("NV", "starts")]
    assert preview.routing == {"starts": 1, "stops": 0}


HEADINGS = ["NPI", "State", "License number", "License type", "Status", "Issued on", "Expires on"]


def test_it_filters_expiring_and_lapsed_licenses_as_the_calendar_rule_alone_would(db):
    from django.db.models import Q
    from django.db.models.functions import Now

    utc_today = dt.datetime.now(UTC).date()
    licenses = []
    for offset in range(-6, 37):
        for issued in (utc_today - dt.timedelta(days=400), utc_today - dt.timedelta(days=1), utc_today):
            expires = utc_today + dt.timedelta(days=offset)
            if expires <= issued:
                continue
            provider = make_provider(states=())
            licenses += [
                ProviderLicense(provider=provider, state=state, license_number=f"{state}-{provider.pk}",
                                license_type="MD", status="active", issued_on=issued, expires_on=expires)
                for state in ("CA", "GU", "AS", "TX", "HI", "NY")
            ]  # fmt: skip
    ProviderLicense.objects.bulk_create(licenses)
    everything = ProviderLicense.objects.all()
    by_rule = everything.filter(
        calendar.LicenseValidAt(), ~Q(calendar.LicenseValidAt(at=Now() + dt.timedelta(days=30)))
    )
    expiring = set(selectors.expiring_within(everything, 30))
    assert expiring == set(by_rule) and len(expiring) > 100
    lapsed_by_rule = everything.filter(expires_on__isnull=False).exclude(
        calendar.LicenseValidAt(status="active", issued_on=dt.date.min)
    )
    lapsed = set(selectors.lapsed(everything))
    assert lapsed == set(lapsed_by_rule) and len(lapsed) > 20
