"""What every console ModelAdmin shares (ops_console/admin_base.py)."""

from html.parser import HTMLParser

from django.contrib import admin

from clinical.models import Visit
from ops_console.admin_site import ops_site
from tests.builders import make_visit


class _Inputs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.inputs = []

    def handle_starttag(self, tag, attrs):
        if tag == "input":
            self.inputs.append(dict(attrs))


def _attributes(html: str) -> list[dict]:
    parser = _Inputs()
    parser.feed(str(html))
    return parser.inputs


def test_it_renders_the_same_row_checkbox_as_the_admin_without_a_widget_template(db):
    visit = make_visit()
    model_admin = ops_site._registry[Visit]
    ours = _attributes(model_admin.action_checkbox(visit))
    django_s = _attributes(admin.ModelAdmin.action_checkbox(model_admin, visit))
    assert ours == django_s and len(ours) == 1
    assert ours[0]["name"] == "_selected_action" and ours[0]["value"] == str(visit.pk)
