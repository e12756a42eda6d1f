"""``FastSelect`` and ``FastAutocompleteSelect``: Django's select markup, written without a template per option."""

import pytest
from django import forms
from django.contrib.admin.widgets import AutocompleteSelect, RelatedFieldWidgetWrapper
from django.test import SimpleTestCase

from ops_console.admin_site import ops_site
from ops_console.widgets import FastAutocompleteSelect, FastSelect
from support.models import SupportCase
from tests.builders import make_patient

CHOICES = [
    ("", "---------"),
    ("CA", "California"),
    ("<x>", 'Quote " & <script>alert(1)</script>'),
    ("West", [("NV", "Nevada"), ("OR", "Oregon")]),
]


def test_it_renders_the_same_select_as_djangos_templates():
    html = SimpleTestCase()
    for value in ("", "CA", "NV", "<x>", None):
        attrs = {"id": "id_state", "required": True, "data-x": 'a"b'}
        fast = FastSelect(choices=CHOICES).render("state", value, attrs)
        django = forms.Select(choices=CHOICES).render("state", value, attrs)
        html.assertHTMLEqual(fast, django)


def test_it_escapes_every_label_and_value():
    rendered = FastSelect(choices=CHOICES).render("state", "CA")
    assert "<script>" not in rendered and "&lt;script&gt;" in rendered and 'value="&lt;x&gt;"' in rendered


@pytest.mark.django_db
def test_it_renders_an_autocomplete_select_as_the_admins_own(rf, lead):
    patient = make_patient(first_name='<b>"Ann"</b>', last_name="O'Brien & Co")
    field = SupportCase._meta.get_field("patient")
    html = SimpleTestCase()
    for value in (patient.pk, None, ""):
        attrs = {"id": "id_patient"}
        fast = field.formfield(widget=FastAutocompleteSelect(field, ops_site)).widget.render("patient", value, attrs)
        django = field.formfield(widget=AutocompleteSelect(field, ops_site)).widget.render("patient", value, attrs)
        html.assertHTMLEqual(fast, django)
    fast = field.formfield(widget=FastAutocompleteSelect(field, ops_site)).widget.render("patient", patient.pk)
    assert "<b>" not in fast and "&lt;b&gt;" in fast and "data-ajax--url" in fast


@pytest.mark.django_db
def test_it_gives_the_admins_autocomplete_fields_the_fast_widget(rf, lead):
    request = rf.get("/")
    request.user = lead
    form = ops_site.get_model_admin(SupportCase).get_form(request)()
    for name in ("patient", "visit"):
        wrapper = form.fields[name].widget
        assert type(wrapper) is RelatedFieldWidgetWrapper and type(wrapper.widget) is FastAutocompleteSelect
    assert type(form.fields["assignee"].widget.widget) is FastSelect
