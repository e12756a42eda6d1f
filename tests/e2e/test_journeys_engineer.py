"""Engineer: profile the visit list with the debug toolbar's SQL panel, then read the slow pages report."""

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


def test_it_lets_an_engineer_read_the_sql_of_the_visit_list_and_the_slow_pages(console, stack):
    page = console.sign_in("engineer")
    page.get_by_role("link", name="Visits", exact=True).first.click()
    expect(page.locator("#result_list")).to_be_visible()

    # The toolbar's own script and styles load under the console's strict Content-Security-Policy.
    expect(page.locator("#djDebugToolbar")).to_be_visible()
    page.locator("#djDebugPanelList a.SQLPanel").click()
    panel = page.locator("#SQLPanel")
    expect(panel).to_be_visible()
    expect(panel.locator(".djdt-panelContent-header, h3").first).to_contain_text("SQL queries")
    expect(panel.locator("table")).to_contain_text('FROM "clinical_visit"')
    assert console.csp_violations == []
    # Its "Sel" button would re-run a stored query and show its rows (PHI) unrecorded: refused.
    select = panel.locator("button[formaction*='sql_select']").first
    expect(select).to_be_attached()
    rerun = page.request.post(select.get_attribute("formaction"), form={"signed": "x"})
    assert rerun.status == 403 and "Re-running stored queries is off" in rerun.text()
    page.locator("#SQLPanel .djDebugClose").click()
    page.locator("#djHideToolBarButton").click()

    page.get_by_role("link", name="Slow pages").click()
    report = page.locator("#slow-pages")
    expect(report).to_contain_text("GET ops:clinical_visit_changelist")
    visit_list = report.locator("tr", has_text="GET ops:clinical_visit_changelist")
    expect(visit_list.get_by_role("link", name="open with the toolbar")).to_have_attribute(
        "href", re.compile(r"/clinical/visit/$")
    )
