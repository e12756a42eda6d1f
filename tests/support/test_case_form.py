"""The support case form: one "add a note" box, for the users who may add notes."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from devtools.htmlforms import form_fields
from support.models import CaseNote
from tests.builders import make_patient, make_visit
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
