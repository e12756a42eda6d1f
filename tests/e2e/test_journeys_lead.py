"""Ops lead: reads who viewed a patient, down to the support agent's view in the access log."""

import re

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.e2e


def _open_patient(page: Page, mrn: str) -> None:
    """Find the patient from the global search by MRN and open the page."""
    search = page.get_by_role("searchbox", name="Search patients, providers, visits and cases")
    search.fill(mrn)
    search.press("Enter")
    page.locator("[data-section=patient]").get_by_role("link").first.click()
    expect(page.locator(".field-mrn")).to_contain_text(mrn)


def test_it_shows_a_lead_the_support_agents_view_in_the_access_log_of_one_patient(console, stack):
    ((patient_pk, mrn),) = stack.query("SELECT id, mrn FROM clinical_patient ORDER BY id DESC LIMIT 1")
    _open_patient(console.sign_in("support"), mrn)

    page = console.sign_in("lead")
    _open_patient(page, mrn)
    readers = page.locator("#phi-readers")
    expect(readers.locator("tbody tr", has_text="support")).to_have_count(1)
    readers.get_by_role("link", name="Every read of this patient's records in the access log").click()

    expect(page).to_have_url(re.compile(rf"/core/accesslog/\?patient={patient_pk}$"))
    expect(page.locator("#changelist-filter")).to_contain_text(f"Patient #{patient_pk}")
    view = page.locator("#result_list tbody tr").filter(has_text="Viewed a record").filter(has_text="support")
    expect(view).to_have_count(1)
    expect(view).to_contain_text(f"/clinical/patient/{patient_pk}/change/")
    expect(view).to_contain_text("change page")
    assert console.csp_violations == []
