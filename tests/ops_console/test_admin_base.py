"""What every console ModelAdmin shares (ops_console/admin_base.py)."""

from html.parser import HTMLParser

from django.contrib import admin
from django.contrib.admin.utils import display_for_field, display_for_value
from django.test import RequestFactory
from django.urls import resolve, reverse, set_script_prefix

from clinical.actions import providers as provider_actions
from clinical.models import Provider, Visit
from ops_console.admin_base import boolean_column, change_url, choice_column
from ops_console.admin_site import ops_site
from tests.builders import SYSTEM, make_provider, make_visit


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


def _cell(html: str, name: str) -> str:
    """Return the text of the first row's cell of column ``name`` in a changelist page."""
    start = html.index(f'<td class="field-{name}')
    return html[html.index(">", start) + 1 : html.index("</td>", start)]


def test_it_shows_each_choice_cell_as_the_admin_would_with_its_class_and_header(client, lead):
    visit = make_visit(state="NY", priority=1)
    client.force_login(lead)
    html = client.get(reverse("ops:clinical_visit_changelist")).content.decode()
    for name in ("located_state", "status", "priority"):
        field = Visit._meta.get_field(name)
        assert _cell(html, name) == display_for_field(getattr(visit, name), field, "-")
        assert f'class="sortable column-{name}' in html  # still sorted by its field, header and all
    assert _cell(html, "located_state") == "NY – New York"


def test_it_shows_a_value_that_is_not_one_of_the_choices_as_empty_as_the_admin_does():
    field = Visit._meta.get_field("status")
    column = choice_column(Visit, "status")
    visit = Visit(status="no-such-status")
    assert display_for_value(column(visit), "-") == display_for_field(visit.status, field, "-") == "-"
    assert column.__name__ == "status" and column.admin_order_field == "status"
    assert column.short_description == field.verbose_name


def test_it_leaves_every_column_that_is_not_a_choice_field_as_it_is():
    for name in ("public_id", "requested_at", "patient", "patient_link", "__str__", "no_such_column"):
        assert choice_column(Visit, name) == name
    method = ops_site._registry[Visit].patient_link
    assert choice_column(Visit, method) is method


def test_it_shows_each_yes_no_cell_as_the_admin_would_with_its_class_and_sortable_header(client, lead):
    provider = make_provider(last_name="Aaronson")
    provider.is_active = False
    provider_actions.save_provider(provider, actor=SYSTEM, reason="left the practice")
    client.force_login(lead)
    html = client.get(reverse("ops:clinical_provider_changelist") + "?o=1").content.decode()
    field = Provider._meta.get_field("is_active")
    assert _cell(html, "is_active") == display_for_field(False, field, "-")
    assert 'alt="False"' in _cell(html, "is_active")
    assert 'class="sortable column-is_active' in html  # sorted by its field, as Django's column is


def test_it_draws_each_icon_again_when_the_static_files_settings_change(settings):
    column, field = boolean_column(Provider, "is_active"), Provider._meta.get_field("is_active")
    for value in (True, False, None):
        assert column(Provider(is_active=value)) == display_for_field(value, field, "-")
    settings.STATIC_URL = "/elsewhere/static/"
    assert column(Provider(is_active=True)) == display_for_field(True, field, "-")
    assert "/elsewhere/static/admin/img/icon-yes.svg" in column(Provider(is_active=True))
    assert column.__name__ == "is_active" and column.admin_order_field == "is_active"
    assert column.short_description == field.verbose_name


def test_it_leaves_every_column_that_is_not_a_yes_no_field_as_it_is():
    for name in ("npi", "specialty", "name", "visits_today", "no_such_column"):
        assert boolean_column(Provider, name) == name
    method = ops_site._registry[Provider].name
    assert boolean_column(Provider, method) is method


def test_it_shows_an_empty_cell_as_the_admin_would(monkeypatch):
    model_admin = ops_site._registry[Provider]
    assert model_admin.get_empty_value_display() == admin.ModelAdmin.get_empty_value_display(model_admin) == "-"
    monkeypatch.setattr(model_admin, "empty_value_display", "<none>", raising=False)
    assert model_admin.get_empty_value_display() == admin.ModelAdmin.get_empty_value_display(model_admin)
    assert str(display_for_value(None, model_admin.get_empty_value_display())) == "<none>"  # marked safe, as Django's
    monkeypatch.setattr(ops_site, "empty_value_display", "(empty)")
    monkeypatch.delattr(model_admin, "empty_value_display")
    assert model_admin.get_empty_value_display() == "(empty)"


def test_it_writes_a_change_url_as_reverse_does_under_any_url_configuration_and_script_prefix(db, settings):
    visit = make_visit()
    patient = visit.patient
    assert change_url(patient) == reverse("ops:clinical_patient_change", args=[patient.pk])
    settings.ROOT_URLCONF = "devtools.bench.urls"  # the site mounted at /ops/ beside the vanilla twin
    assert (
        change_url(visit)
        == reverse("ops:clinical_visit_change", args=[visit.pk])
        == (f"/ops/clinical/visit/{visit.pk}/change/")
    )
    set_script_prefix("/console/")
    try:
        assert change_url(visit) == f"/console/ops/clinical/visit/{visit.pk}/change/"
    finally:
        set_script_prefix("/")


def test_it_tells_a_records_own_pages_from_its_list_and_export():
    model_admin = ops_site.get_model_admin(Provider)
    pages = [
        ("clinical_provider_change", [1], True),
        ("clinical_provider_history", [1], True),
        ("clinical_provider_simple_history", [1, 2], True),
        ("clinical_provider_delete", [1], True),
        ("autocomplete", [], True),
        ("clinical_provider_changelist", [], False),
        ("clinical_provider_export", [], False),
        ("clinical_provider_add", [], False),
        ("clinical_providerlicense_change", [1], False),  # another model's record
    ]
    for name, args, expected in pages:
        request = RequestFactory().get(reverse(f"ops:{name}", args=args))
        request.resolver_match = resolve(request.path)
        assert model_admin.on_record_page(request) is expected, name
    assert model_admin.on_record_page(RequestFactory().get("/")) is False  # not resolved: as a list


def test_it_writes_a_read_only_table_with_every_cell_escaped_and_says_when_it_is_empty():
    from django.utils.html import format_html

    from ops_console.admin_base import inline_table

    table = inline_table(["At", "Note"], [("<b>1</b>", format_html("<i>{}</i>", "safe"))])

    assert table == (
        '<table class="ops-inline-table"><thead><tr><th>At</th><th>Note</th></tr></thead>'
        "<tbody><tr><td>&lt;b&gt;1&lt;/b&gt;</td><td><i>safe</i></td></tr></tbody></table>"
    )
    assert inline_table(["At"], [], empty="Nothing yet.") == "Nothing yet."
    assert "<tbody></tbody>" in inline_table(["At"], [])  # no empty text: the table, without rows


def test_it_offers_a_lists_actions_only_when_the_list_shows_rows(client, lead):
    make_provider(last_name="Actionton")  # offline
    client.force_login(lead)
    url = reverse("ops:clinical_provider_changelist")

    shown = client.get(url)
    empty = client.get(url + "?availability__exact=busy")

    assert shown.context["cl"].show_admin_actions and 'name="action"' in shown.content.decode()
    assert empty.context["cl"].result_count == 0
    assert not empty.context["cl"].show_admin_actions and 'name="action"' not in empty.content.decode()
