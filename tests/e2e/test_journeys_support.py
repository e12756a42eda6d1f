"""Support agent: finds a patient by phone, reads the latest visit, opens a case with a note; edits nothing clinical."""

import re

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.e2e

# What a role that may only read clinical records must never be offered.
EDIT_CONTROLS = (
    "input[name=_save], input[name=_continue], input[name=_addanother], a.deletelink, a.addlink, "
    "a.import_link, a.export_link"
)


def _patient_with_own_phone(stack) -> tuple[int, str, str]:
    """Return the id, phone and listed name of a patient with visits whose phone nobody else has."""
    ((patient_id, phone, name),) = stack.query(
        """
        SELECT p.id, p.phone, p.last_name || ', ' || p.first_name FROM clinical_patient p
        WHERE EXISTS (SELECT 1 FROM clinical_visit v WHERE v.patient_id = p.id)
          AND (SELECT count(*) FROM clinical_patient q WHERE q.phone = p.phone) = 1
        ORDER BY p.id LIMIT 1
        """
    )
    return patient_id, phone, name


def _as_typed(phone: str) -> str:
    """Return ``+14155550101`` as an agent types it from a caller: ``(415) 555-0101``."""
    return f"({phone[2:5]}) {phone[5:8]}-{phone[8:]}"


def _assert_read_only(page: Page) -> None:
    """Check the page's content (not the sidebar, where support cases may be added) offers no edit."""
    content = page.locator("#content")
    expect(content.locator(EDIT_CONTROLS)).to_have_count(0)
    expect(content.get_by_role("link", name=re.compile(r"^(Import|Export|Delete)\b"))).to_have_count(0)


def _refused(page: Page, url: str) -> None:
    response = page.goto(url)
    assert response.status == 403, f"{url} answered {response.status}"
    expect(page.get_by_role("heading", level=1)).to_have_text("403 Forbidden")


def test_it_lets_a_support_agent_find_a_patient_read_the_visit_and_open_a_case_but_edit_nothing(console, stack):
    patient_id, phone, name = _patient_with_own_phone(stack)
    page = console.sign_in("support")

    search = page.get_by_role("searchbox", name="Search patients, providers, visits and cases")
    search.fill(_as_typed(phone))
    search.press("Enter")
    expect(page.locator(".ops-search-read")).to_contain_text("phone")
    page.locator("[data-section=patient]").get_by_role("link", name=name).click()
    expect(page).to_have_url(re.compile(rf"/clinical/patient/{patient_id}/change/$"))
    expect(page.locator(".field-phone")).to_contain_text(phone)
    _assert_read_only(page)

    latest = page.locator(".field-recent_visits tbody tr").first.get_by_role("link")
    visit_id = latest.inner_text()
    latest.click()
    expect(page.get_by_role("heading", name=f"Visit {visit_id}")).to_be_visible()
    timeline = page.locator(".field-timeline table")
    expect(timeline).to_contain_text("— → waiting")
    expect(timeline).to_contain_text("requested")
    _assert_read_only(page)
    visit_url = page.url
    page.get_by_role("link", name="History").click()
    expect(page.locator("h1")).to_have_text(f"View history: Visit {visit_id}")
    expect(page.locator("#change-history")).to_contain_text("Created")

    for listing in ("clinical/patient/", "clinical/visit/", "clinical/providerlicense/", "clinical/provider/"):
        page.goto(f"{stack.console}{listing}")
        expect(page.locator("#result_list")).to_be_visible()
        _assert_read_only(page)
    _refused(page, f"{stack.console}clinical/patient/add/")
    _refused(page, f"{stack.console}clinical/patient/{patient_id}/delete/")
    _refused(page, visit_url.replace("/change/", "/delete/"))
    _refused(page, f"{stack.console}clinical/providerlicense/import/")

    page.goto(visit_url)
    page.get_by_role("link", name="Open a support case about this visit").click()
    page.get_by_label("Subject").fill("Patient asks why the video dropped")
    page.get_by_label("Category").select_option(label="Technical (app, video)")
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator("ul.messagelist")).to_contain_text("was added successfully")
    expect(page.locator(".field-visit")).to_contain_text(visit_id)
    case_pk = int(re.search(r"/supportcase/(\d+)/change/", page.url).group(1))

    page.get_by_label("Add a note").fill("Called the patient back; the app update fixed the video.")
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator("ul.messagelist")).to_contain_text("was changed successfully")
    notes = page.locator(".field-notes_written")
    expect(notes).to_contain_text("the app update fixed the video")
    expect(notes).to_contain_text("support")
    # The outbox carried the new case to the search worker, which indexed it.
    assert stack.wait_for_document("case", case_pk)["subject"] == "Patient asks why the video dropped"
    assert console.csp_violations == []
