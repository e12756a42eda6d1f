"""Live queues: while the traffic simulation runs, the waiting counts move without a reload, by push."""

import time

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.e2e

CHANGE_SECONDS = 30

# The total and each state's waiting count, as the page shows them now.
_WAITING_JS = """() => [
    document.querySelector('[data-live="total-waiting"]').textContent,
    ...[...document.querySelectorAll("#live-states tbody tr[data-state]")].map(
        (row) => row.dataset.state + ":" + row.cells[1].textContent),
]"""


def _waiting(page: Page) -> list[str]:
    return page.evaluate(_WAITING_JS)


def test_it_moves_the_waiting_counts_without_a_reload_while_the_simulation_runs(traffic, console):
    page = console.sign_in("lead")
    page.get_by_role("link", name="Live queues", exact=True).click()
    page.evaluate("window.e2eNotReloaded = true")
    before = _waiting(page)

    traffic()
    deadline = time.monotonic() + CHANGE_SECONDS
    while _waiting(page) == before and time.monotonic() < deadline:
        page.wait_for_timeout(500)

    assert _waiting(page) != before, f"the waiting counts stayed {before} for {CHANGE_SECONDS} s"
    assert page.evaluate("window.e2eNotReloaded") is True
    assert console.csp_violations == []


def test_it_moves_the_counts_by_push_with_polling_disabled(traffic, console):
    page = console.sign_in("lead")
    # Polling disabled: the page's JSON feed is unreachable, so only the websocket can move the numbers.
    page.route("**/live/data.json", lambda route: route.abort())
    page.get_by_role("link", name="Live queues", exact=True).click()
    expect(page.locator("#live-queues")).to_have_attribute("data-mode", "push")
    page.evaluate("window.e2eNotReloaded = true")
    before = _waiting(page)

    traffic()
    deadline = time.monotonic() + CHANGE_SECONDS
    while _waiting(page) == before and time.monotonic() < deadline:
        page.wait_for_timeout(250)

    assert _waiting(page) != before, f"no push moved the waiting counts {before} in {CHANGE_SECONDS} s"
    assert page.evaluate("window.e2eNotReloaded") is True
    expect(page.locator('[data-live="mode"]')).to_have_text("live (push)")
    expect(page.locator('[data-live="error"]')).to_have_text("")  # never fell back to the blocked feed
    assert console.csp_violations == []
