"""The support case form: the notes written, then one "add a note" box for the users who may add notes."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from core.audit import Actor
from devtools.htmlforms import form_fields
from ops_console import roles
from support import actions as support_actions
from support.models import CaseNote
from tests.builders import SYSTEM, make_patient, make_visit
from tests.ops_console.conftest import make_case

pytestmark = pytest.mark.usefixtures("fast_passwords")


def _case():
    patient = make_patient()
    return make_case(patient=patient, visit=make_visit(patient=patient), notes=1)


def _page(client, case):
    url = reverse("ops:support_supportcase_change", args=[case.pk])
    answer = client.get(url)
    assert answer.status_code == 200
    return url, answer.content.decode()


def test_it_appends_the_note_box_to_the_case_notes_with_its_author(client, support_agent):
    case = _case()
    client.force_login(support_agent)
    url, html = _page(client, case)
    fields = form_fields(html, "supportcase_form")
    # One box to write a note in: no second, inline one.
    assert [name for name in fields if name == "note" or name.endswith("-body")] == ["note"]

    answer = client.post(url, {**fields, "note": "  Called back; the app update fixed it.  ", "_continue": "Save"})

    assert answer.status_code == 302
    note = CaseNote.objects.filter(case=case).order_by("-id").first()
    assert (note.body, note.author) == ("Called back; the app update fixed it.", support_agent)
    assert CaseNote.objects.filter(case=case).count() == 2
    _, html = _page(client, case)
    assert "Called back; the app update fixed it." in html


def test_it_adds_no_note_when_the_box_is_left_empty(client, support_agent):
    case = _case()
    client.force_login(support_agent)
    url, html = _page(client, case)
    fields = form_fields(html, "supportcase_form")

    answer = client.post(url, {**fields, "subject": "Video dropped twice", "_continue": "Save"})

    assert answer.status_code == 302
    assert CaseNote.objects.filter(case=case).count() == 1
    case.refresh_from_db()
    assert case.subject == "Video dropped twice"


def test_it_offers_no_note_box_to_a_user_who_may_not_add_notes(client, db):
    case = _case()
    editors = Group.objects.create(name="case editors without notes")
    editors.permissions.set(
        Permission.objects.filter(
            content_type__app_label="support", codename__in=["view_supportcase", "change_supportcase", "view_casenote"]
        )
    )
    user = get_user_model().objects.create_user("editor", "editor@ops.example", "x", is_staff=True)
    user.groups.add(editors)
    client.force_login(user)
    url, html = _page(client, case)
    fields = form_fields(html, "supportcase_form")
    assert "note" not in fields

    answer = client.post(url, {**fields, "note": "Slipped in by hand.", "_continue": "Save"})

    assert answer.status_code == 302
    assert not CaseNote.objects.filter(case=case, body="Slipped in by hand.").exists()


def test_it_lists_the_notes_written_oldest_first_with_their_authors(client, support_agent):
    case = make_case(patient=make_patient())
    support_actions.add_note(case, body="First call.\nNo answer.", actor=Actor.staff(support_agent))
    support_actions.add_note(case, body="<b>Second</b> call & fixed.", actor=SYSTEM)
    client.force_login(support_agent)

    _, html = _page(client, case)

    notes = re.search(r'<div class="[^"]*field-notes_written[^"]*">(.*?)</table>', html, re.S).group(1)
    rows = re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td><td>(.*?)</td></tr>", notes, re.S)
    assert [(by, body) for _, by, body in rows] == [
        ("support", "First call.<br>No answer."),
        ("—", "&lt;b&gt;Second&lt;/b&gt; call &amp; fixed."),
    ]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", at) for at, _, _ in rows)
    assert "fixed." in html[html.index("field-notes_written") : html.index('name="note"')]  # notes, then the box


def test_it_says_when_a_case_has_no_notes_and_lists_none_on_a_new_case(client, support_agent):
    client.force_login(support_agent)

    _, html = _page(client, make_case(patient=make_patient()))
    assert "No notes yet." in html

    answer = client.get(reverse("ops:support_supportcase_add"))
    assert answer.status_code == 200
    assert "field-notes_written" not in answer.content.decode() and 'name="note"' in answer.content.decode()


def test_it_reads_the_notes_in_one_query_however_many(client, support_agent, django_assert_num_queries):
    client.force_login(support_agent)
    few, many = make_case(patient=make_patient(), notes=1), make_case(patient=make_patient(), notes=8)
    _page(client, few)
    with CaptureQueriesContext(connection) as with_few:
        _page(client, few)

    with django_assert_num_queries(len(with_few)):
        _, html = _page(client, many)
    assert html.count("Called the patient back") == 8


def _opened_by(html: str) -> str:
    cell = re.search(r'<div class="[^"]*field-opened_by[^"]*">.*?<div class="readonly">(.*?)</div>', html, re.S)
    return cell.group(1).strip()


def test_it_shows_who_opened_the_case_on_its_page_and_on_an_old_version(client, support_agent, lead):
    mine = make_case(patient=make_patient(), actor=Actor.staff(support_agent))
    systems = make_case(patient=make_patient())
    client.force_login(lead)

    assert _opened_by(_page(client, mine)[1]) == "support"
    assert _opened_by(_page(client, systems)[1]) == "-"
    old = mine.history.earliest()
    answer = client.get(reverse("ops:support_supportcase_simple_history", args=[mine.pk, old.history_id]))
    assert answer.status_code == 200
    assert _opened_by(answer.content.decode()) == "support"


def test_it_offers_active_role_staff_as_assignees_without_reading_their_password_hashes(client, support_agent, lead):
    case = _case()
    get_user_model().objects.create_user("no-role", is_staff=True)
    get_user_model().objects.create_user("gone", is_staff=True, is_active=False).groups.add(
        Group.objects.get(name=roles.SUPPORT_AGENT)
    )
    client.force_login(lead)
    with CaptureQueriesContext(connection) as queries:
        _url, html = _page(client, case)
    select = re.search(r'<select name="assignee".*?</select>', html, re.S).group(0)
    assert re.findall(r'<option value="\d+"[^>]*>([^<]+)</option>', select) == ["lead", "support"]
    reads = [q["sql"] for q in queries if 'FROM "auth_user" INNER JOIN "auth_user_groups"' in q["sql"]]
    assert len(reads) == 1 and "password" not in reads[0]
