"""Spreadsheet columns of licenses and providers (django-import-export resources) and their cells.

Each resource declares its columns once: the console's export writes them, and the license
import (``clinical.imports.checks``) reads a file against them, cleaning every cell with the column's
widget. The widgets take cells as people's spreadsheets hold them (numbers where text was
meant, Excel dates, labels instead of codes) and raise ``ValueError`` with a message that
the import shows next to the line and column at fault.
"""

import datetime as dt
import re

import tablib
from import_export import fields, resources, widgets

from clinical.models import LicenseStatus, LicenseType, Provider, ProviderLicense
from clinical.reference import SPECIALTY_CHOICES, states
from clinical.validators import npi_is_valid

# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets; tab
# and carriage return are stripped by some of them first, so they count too (OWASP CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
EXCEL_EPOCH = dt.date(1899, 12, 30)  # serial 1 is 1900-01-01 in Excel's (leap-bug) 1900 system
ISO_DATE = re.compile(r"(?P<year>\d{4})-(?P<month>\d{1,2})-(?P<day>\d{1,2})")
US_DATE = re.compile(r"(?P<month>\d{1,2})/(?P<day>\d{1,2})/(?P<year>\d{4})")
DATE_FORMATS = ("%Y-%m-%d", "%m/%d/%Y", "%m/%d/%y", "%Y/%m/%d", "%d-%b-%Y", "%d %b %Y", "%b %d, %Y", "%B %d, %Y")


def neutralise(value):
    """Return ``value`` made inert for spreadsheets: text that would run as a formula gets a leading '."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def unneutralise(text: str) -> str:
    """Return ``text`` as it was before ``neutralise``: an export edited and imported back is unchanged."""
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_PREFIXES) else text


def neutralise_dataset(dataset: tablib.Dataset) -> tablib.Dataset:
    """Return a copy of ``dataset`` (headers included) with every cell neutralised."""
    safe = tablib.Dataset(headers=[neutralise(h) for h in dataset.headers or []])
    for row in dataset:
        safe.append([neutralise(cell) for cell in row])
    return safe


def _text(value) -> str:
    """Return a cell as text: Excel turns ``12345`` typed as text into the number 12345.0."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


class TextWidget(widgets.Widget):
    """A text cell, at most ``max_length`` characters once stripped."""

    def __init__(self, max_length: int | None = None):
        super().__init__()
        self.max_length = max_length

    def clean(self, value, row=None, **kwargs):
        text = unneutralise(_text(value))
        if self.max_length and len(text) > self.max_length:
            raise ValueError(f"is {len(text)} characters long; at most {self.max_length} fit")
        return text


class NPIWidget(widgets.Widget):
    """A provider's NPI: ten digits with a valid check digit (spreadsheets may hold it as a number)."""

    def clean(self, value, row=None, **kwargs):
        npi = re.sub(r"[\s-]", "", _text(value))
        if not re.fullmatch(r"\d{10}", npi):
            raise ValueError(f"{npi!r} is not an NPI (10 digits)")
        if not npi_is_valid(npi):
            raise ValueError(f"{npi} has a wrong check digit; re-check the number")
        return npi


class StateWidget(widgets.Widget):
    """A USPS state code (``ca`` or ``CA``) or a state's full name (``California``)."""

    def __init__(self):
        super().__init__()
        self.codes = {row["code"].casefold(): row["code"] for row in states()}
        self.codes.update({row["name"].casefold(): row["code"] for row in states()})

    def clean(self, value, row=None, **kwargs):
        text = _text(value)
        try:
            return self.codes[text.casefold()]
        except KeyError:
            raise ValueError(f"{text!r} is not a US state; use its two-letter code, e.g. CA") from None


class ChoiceWidget(widgets.Widget):
    """One of a model field's choices, by value or label, in any case (``M.D.`` reads as ``MD``)."""

    def __init__(self, choices, noun: str):
        super().__init__()
        self.noun, self.values = noun, [value for value, _ in choices]
        self.lookup = {self._key(value): value for value, _ in choices}
        self.lookup.update({self._key(label): value for value, label in choices})

    @staticmethod
    def _key(text) -> str:
        return re.sub(r"[\s.]", "", str(text)).casefold()

    def clean(self, value, row=None, **kwargs):
        text = _text(value)
        try:
            return self.lookup[self._key(text)]
        except KeyError:
            raise ValueError(f"{text!r} is not a {self.noun}; use one of {', '.join(self.values)}") from None


class SpreadsheetDateWidget(widgets.Widget):
    """A date as spreadsheets hold it: a date cell, an Excel serial number or common typed forms."""

    def clean(self, value, row=None, **kwargs):
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return self._from_serial(value)
        return self._from_text(str(value).strip())

    def _from_serial(self, serial: float) -> dt.date:
        # Excel stores dates as days since 1899-12-30; a time of day is the fraction.
        if not 1 <= serial < 2958466 or not float(serial).is_integer():
            raise ValueError(f"{serial!r} is not a date")
        return EXCEL_EPOCH + dt.timedelta(days=int(serial))

    def _from_text(self, text: str) -> dt.date:
        if re.fullmatch(r"\d{5}(\.0+)?", text):
            return self._from_serial(float(text))
        text = re.sub(r"[T ]00:00(:00(\.0+)?)?$", "", text)
        quick = ISO_DATE.fullmatch(text) or US_DATE.fullmatch(text)  # most cells; strptime is slow
        if quick:
            try:
                return dt.date(int(quick["year"]), int(quick["month"]), int(quick["day"]))
            except ValueError:
                raise ValueError(f"{text!r} is not a date") from None
        for date_format in DATE_FORMATS:
            try:
                return dt.datetime.strptime(text, date_format).date()
            except ValueError:
                continue
        raise ValueError(f"{text!r} is not a date; write it as YYYY-MM-DD or MM/DD/YYYY")

    def render(self, value, obj=None, **kwargs):
        if value is None:
            return ""
        return value if kwargs.get("force_native_type") else value.isoformat()


class NeutralisedExportResource(resources.ModelResource):
    """A resource whose exports never carry a cell a spreadsheet would run as a formula."""

    def export(self, queryset=None, **kwargs) -> tablib.Dataset:
        """Return the export with every cell neutralised (see ``neutralise``)."""
        return neutralise_dataset(super().export(queryset=queryset, **kwargs))


class ProviderLicenseResource(NeutralisedExportResource):
    """A license per row, its provider named by NPI; what the license import reads and the export writes."""

    npi = fields.Field(attribute="provider__npi", column_name="NPI", widget=NPIWidget())
    state = fields.Field(attribute="state", column_name="State", widget=StateWidget())
    license_number = fields.Field(attribute="license_number", column_name="License number", widget=TextWidget(40))
    license_type = fields.Field(
        attribute="license_type", column_name="License type", widget=ChoiceWidget(LicenseType.choices, "license type")
    )
    status = fields.Field(
        attribute="status", column_name="Status", widget=ChoiceWidget(LicenseStatus.choices, "license status")
    )
    issued_on = fields.Field(attribute="issued_on", column_name="Issued on", widget=SpreadsheetDateWidget())
    expires_on = fields.Field(attribute="expires_on", column_name="Expires on", widget=SpreadsheetDateWidget())
    notes = fields.Field(attribute="notes", column_name="Notes", widget=TextWidget())
    # Export only: the import ignores them, so an export can be edited and imported back.
    provider_name = fields.Field(column_name="Provider", readonly=True)
    verified_by = fields.Field(attribute="verified_by__username", column_name="Verified by", readonly=True)
    verified_at = fields.Field(attribute="verified_at", column_name="Verified at", readonly=True)

    # Columns the import needs in every file, and the ones it reads when present.
    required_columns = ("npi", "state", "license_number", "license_type", "status", "issued_on")
    optional_columns = ("expires_on", "notes")
    # Other headings vendors and state boards use for the same columns.
    column_aliases = {
        "npi": ("npi number", "provider npi"),
        "license_number": ("license no", "license #", "license", "number"),
        "license_type": ("type", "credential"),
        "status": ("license status",),
        "issued_on": ("issued", "issue date", "date issued"),
        "expires_on": ("expires", "expiry", "expiry date", "expiration", "expiration date"),
    }

    class Meta:
        model = ProviderLicense
        fields = (
            "npi", "state", "license_number", "license_type", "status", "issued_on", "expires_on", "notes",
            "provider_name", "verified_by", "verified_at",
        )  # fmt: skip
        export_order = fields

    def dehydrate_provider_name(self, license: ProviderLicense) -> str:
        return license.provider.full_name

    def dehydrate_verified_at(self, license: ProviderLicense) -> str:
        return license.verified_at.isoformat(timespec="seconds") if license.verified_at else ""


class ProviderResource(NeutralisedExportResource):
    """A provider per row, for audits: identity, contact, specialty and whether they take visits."""

    npi = fields.Field(attribute="npi", column_name="NPI", widget=NPIWidget())
    first_name = fields.Field(attribute="first_name", column_name="First name", widget=TextWidget(100))
    last_name = fields.Field(attribute="last_name", column_name="Last name", widget=TextWidget(100))
    email = fields.Field(attribute="email", column_name="Email", widget=TextWidget(254))
    phone = fields.Field(attribute="phone", column_name="Phone", widget=TextWidget(16))
    specialty = fields.Field(
        attribute="specialty", column_name="Specialty", widget=ChoiceWidget(SPECIALTY_CHOICES, "specialty")
    )
    is_active = fields.Field(attribute="is_active", column_name="Active", widget=widgets.BooleanWidget())
    created_at = fields.Field(attribute="created_at", column_name="Created at", readonly=True)

    class Meta:
        model = Provider
        fields = ("npi", "first_name", "last_name", "email", "phone", "specialty", "is_active", "created_at")
        export_order = fields

    def dehydrate_created_at(self, provider: Provider) -> str:
        return provider.created_at.isoformat(timespec="seconds")
