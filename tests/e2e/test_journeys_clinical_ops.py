"""Clinical ops: suspend a license (history, live queues follow), import a license file with an error, fix it."""

import csv
import datetime as dt
import io
import re

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from clinical.calendar import license_valid_sql

pytestmark = pytest.mark.e2e

HEADINGS = ["NPI", "State", "License number", "License type", "Status", "Issued on", "Expires on", "Notes"]

# An available provider licensed today in a state whose count nothing else will move while the
# journey runs: no visit waits or is offered in any state its available providers can serve (so the
# router makes none of them an offer), and the traffic simulation runs only in its own journey.
_QUIET_LICENSE_SQL = """
WITH valid AS (
    SELECT l.id, l.provider_id, l.state FROM clinical_providerlicense l WHERE {license_valid}
), available AS (
    SELECT valid.* FROM valid JOIN clinical_provider p ON p.id = valid.provider_id
    WHERE p.availability = 'available' AND p.is_active
), open_states AS (
    SELECT DISTINCT located_state AS state FROM clinical_visit WHERE status IN ('waiting', 'offered')
), unquiet AS (
    SELECT a.state FROM available a
    JOIN valid v ON v.provider_id = a.provider_id JOIN open_states o ON o.state = v.state
)
SELECT a.id, a.state, p.npi FROM available a JOIN clinical_provider p ON p.id = a.provider_id
WHERE a.state NOT IN (SELECT state FROM unquiet)
ORDER BY a.state, a.id LIMIT 1
""".replace("{license_valid}", license_valid_sql("l", "statement_timestamp()"))

# True once the state's row shows another count of available providers, or is gone (none left).
_COUNT_CHANGED_JS = """([state, before]) => {
    const row = document.querySelector(`#live-states tr[data-state="${state}"]`);
    return !row || row.cells[3].textContent !== before;
}"""


def _quiet_license(stack) -> tuple[int, str, str]:
    rows = stack.query(_QUIET_LICENSE_SQL, {})
    assert rows, "the seed has no available provider in a state without waiting visits"
    return rows[0]


def _available_in(live: Page, state: str) -> int:
    """Return the live page's count of available providers for ``state`` (0 when it has no row)."""
    row = live.locator(f"#live-states tr[data-state='{state}']")
    return int(row.locator("td").nth(3).inner_text()) if row.count() else 0


def _license_file(npi: str, rows: list[tuple[str, str]]) -> bytes:
    """Return a CSV as a state board sends it: one active license per (state, number)."""
    today = timezone.localdate()
    issued, expires = (today - dt.timedelta(days=30)).isoformat(), (today + dt.timedelta(days=700)).isoformat()
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADINGS)
    writer.writerows([npi, state, number, "MD", "active", issued, expires, ""] for state, number in rows)
    return out.getvalue().encode()


def _upload(page: Page, name: str, data: bytes) -> None:
    page.get_by_label("License file").set_input_files({"name": name, "mimeType": "text/csv", "buffer": data})
    page.get_by_role("button", name="Check the file").click()


def _unlicensed_states(stack, npi: str) -> list[str]:
    rows = stack.query(
        """
        SELECT s FROM unnest(ARRAY['VT', 'WY', 'ND', 'SD', 'AK', 'HI', 'ME', 'NH']) s
        WHERE NOT EXISTS (SELECT 1 FROM clinical_providerlicense l JOIN clinical_provider p ON p.id = l.provider_id
                          WHERE p.npi = %s AND l.state = s)
        """,
        (npi,),
    )
    return [state for (state,) in rows[:2]]


def test_it_lets_clinical_ops_suspend_a_license_and_import_a_corrected_license_file(console, stack):
    license_pk, state, npi = _quiet_license(stack)
    page = console.sign_in("clinops")
    live = page.context.new_page()
    live.goto(f"{stack.console}live/")
    before = _available_in(live, state)
    live.evaluate("window.e2eNotReloaded = true")
    assert before >= 1

    page.get_by_role("link", name="Provider licenses").first.click()
    page.locator("#searchbar").fill(npi)
    page.locator("#searchbar").press("Enter")
    row = page.locator("#result_list tbody tr").filter(has=page.locator("td.field-state", has_text=f"{state} –"))
    row.locator("th a").click()
    expect(page).to_have_url(re.compile(rf"/clinical/providerlicense/{license_pk}/change/"))
    page.get_by_label("Status:").select_option("suspended")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".field-change_reason .errorlist")).to_contain_text("Give a reason")
    page.get_by_label("Change reason").fill("Board order 2026-118: suspended pending review")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("ul.messagelist")).to_contain_text("was changed successfully")

    page.goto(f"{stack.console}clinical/providerlicense/{license_pk}/history/")
    latest = page.locator("#change-history tbody tr").first
    expect(latest).to_contain_text("Board order 2026-118: suspended pending review")
    expect(latest).to_contain_text("active → suspended")
    expect(latest).to_contain_text("clinops")
    # The live page polls its feed: the provider stops counting for that state without a reload.
    live.wait_for_function(_COUNT_CHANGED_JS, arg=[state, str(before)], timeout=15_000)
    assert _available_in(live, state) == before - 1
    assert live.evaluate("window.e2eNotReloaded") is True

    first, second = _unlicensed_states(stack, npi)
    page.goto(f"{stack.console}clinical/providerlicense/")
    page.get_by_role("link", name="Import").click()
    _upload(page, "board-update.csv", _license_file(npi, [(first, "E2E-1001"), ("ZZ", "E2E-1002")]))
    expect(page.locator(".errornote")).to_contain_text("nothing will be written")
    error = page.locator(".ops-import-errors tbody tr")
    expect(error).to_have_count(1)
    expect(error.locator("td").first).to_have_text("3")
    expect(error).to_contain_text("'ZZ' is not a US state")
    expect(page.locator("#import-confirm-form")).to_have_count(0)
    assert stack.query("SELECT count(*) FROM clinical_providerlicense WHERE license_number LIKE 'E2E-%%'") == [(0,)]

    page.get_by_role("link", name="Upload another file").click()
    _upload(page, "board-update-fixed.csv", _license_file(npi, [(first, "E2E-1001"), (second, "E2E-1002")]))
    expect(page.locator("[data-count=new]")).to_have_text("2")
    page.get_by_role("button", name="Import 2 changes").click()
    expect(page.locator(".ops-import-done")).to_contain_text("2 new, 0 updated")
    imported = stack.query(
        """
        SELECT l.state, h.history_change_reason FROM clinical_providerlicense l
        JOIN clinical_historicalproviderlicense h ON h.id = l.id WHERE l.license_number LIKE 'E2E-%%' ORDER BY l.state
        """
    )
    assert imported == sorted((s, "import board-update-fixed.csv") for s in (first, second))
    assert console.csp_violations == []
