"""``FastSelect``: Django's select markup, written without a template per option."""

from django import forms
from django.test import SimpleTestCase

from ops_console.widgets import FastSelect

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
