"""License files: read a CSV or XLSX held in memory into numbered rows, and match its columns.

Line numbers are what the person sees: the physical line in a CSV file, the row in a sheet.
"""

import codecs
import csv
import io
import logging
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from django.conf import settings

from clinical.actions import licenses as license_actions
from clinical.imports.resources import ProviderLicenseResource

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (phase, done, total)
FIELDS = license_actions.LICENSE_IMPORT_FIELDS  # the license values a file sets, in plan order
DATE_FIELDS = ("issued_on", "expires_on")
BLANK_RUN_LIMIT = 1000  # consecutive blank sheet rows after which the data is taken to have ended
PROGRESS_EVERY = 2000


class FileError(Exception):
    """The file as a whole cannot be imported (unreadable, no header, columns missing, too long)."""


def _no_progress(phase: str, done: int, total: int) -> None:
    return None


# --- reading ---------------------------------------------------------------------------------


@dataclass
class Table:
    """A file's heading row and data rows, each data row with its line number."""

    headers: list[str]
    rows: list[tuple[int, list]]
    source: str  # how it was read, e.g. "CSV, UTF-8 with BOM" or "XLSX, sheet Licenses"
    blank_rows: int = 0


def read_table(data: bytes, file_name: str, *, max_rows: int) -> Table:
    """Read a CSV or XLSX file's bytes into a ``Table``; raise ``FileError`` when that is impossible."""
    if data.startswith(b"PK\x03\x04"):
        return _read_xlsx(data, max_rows=max_rows)
    if file_name.lower().endswith((".xls", ".xlsx", ".xlsm", ".ods")):
        raise FileError("This is not a readable .xlsx workbook; save it as .xlsx or CSV and upload it again.")
    return _read_csv(data, max_rows=max_rows)


def _decode(data: bytes) -> tuple[str, str]:
    """Return the text and the encoding it was read with: UTF-8 (BOM or not), UTF-16, or Windows Latin-1."""
    if data.startswith(codecs.BOM_UTF8):
        try:
            return data[len(codecs.BOM_UTF8) :].decode("utf-8"), "UTF-8 with BOM"
        except UnicodeDecodeError as error:
            message = f"The file says it is UTF-8 but byte {error.start} is not; save it again as UTF-8."
            raise FileError(message) from None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16"), "UTF-16"
    try:
        return data.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError:
        pass
    # Excel on Windows saves "CSV" in Windows-1252, a superset of Latin-1's printable characters.
    try:
        return data.decode("cp1252"), "Latin-1 (Windows-1252)"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "Latin-1"


def _read_csv(data: bytes, *, max_rows: int) -> Table:
    text, encoding = _decode(data)
    if "\x00" in text:
        raise FileError("The file contains NUL bytes: it is not a CSV file. Upload a .csv or .xlsx file.")
    first_line = text.split("\n", 1)[0]
    try:
        dialect = csv.Sniffer().sniff(first_line, delimiters=",;\t|")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    numbered = _numbered_csv_rows(reader)
    table = _table(numbered, source=f"CSV, {encoding}", max_rows=max_rows)
    return table


def _numbered_csv_rows(reader) -> Iterator[tuple[int, list]]:
    line = 1
    try:
        for cells in reader:
            yield line, cells
            line = reader.line_num + 1
    except csv.Error as error:
        raise FileError(f"Line {line}: the file is not valid CSV ({error}).") from None


def _check_unzipped_size(data: bytes) -> None:
    """Refuse a workbook that would unzip past the limits, before anything reads it (a zip bomb)."""
    try:
        members = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, OSError) as error:
        raise FileError(f"This is not a readable .xlsx workbook ({error}).") from None
    limit = settings.IMPORT_MAX_UNZIPPED_MB * 1024 * 1024
    if sum(member.file_size for member in members) > limit:
        raise FileError(
            f"The workbook unzips to more than {settings.IMPORT_MAX_UNZIPPED_MB} MB (IMPORT_MAX_UNZIPPED_MB): "
            "refused unread. Save it as CSV, or split it."
        )
    ratio = settings.IMPORT_MAX_ZIP_RATIO
    packed = [m for m in members if m.file_size > 1024 * 1024 and m.file_size > ratio * max(m.compress_size, 1)]
    if packed:
        raise FileError(
            f"The workbook part {packed[0].filename} is compressed more than {ratio} to 1 (IMPORT_MAX_ZIP_RATIO): "
            "refused unread."
        )


def _read_xlsx(data: bytes, *, max_rows: int) -> Table:
    import openpyxl

    _check_unzipped_size(data)
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as error:
        raise FileError(f"This is not a readable .xlsx workbook ({error}).") from None
    try:
        sheet = book.active
        rows = enumerate(sheet.iter_rows(values_only=True), start=1)
        return _table(rows, source=f"XLSX, sheet {sheet.title!r}", max_rows=max_rows)
    finally:
        book.close()


def _is_blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _table(numbered_rows, *, source: str, max_rows: int) -> Table:
    """Take the first non-blank row as the heading and the rest as data, skipping blank rows."""
    headers, rows, blank, blank_run = None, [], 0, 0
    for line, cells in numbered_rows:
        if all(_is_blank(cell) for cell in cells):
            blank, blank_run = blank + 1, blank_run + 1
            if blank_run >= BLANK_RUN_LIMIT:
                break  # sheets formatted down to row 1,048,576: the data ended long ago
            continue
        blank_run = 0
        if headers is None:
            headers = ["" if cell is None else str(cell).strip() for cell in cells]
            continue
        if len(rows) == max_rows:
            raise FileError(f"The file has more than {max_rows:,} rows; split it into smaller files.")
        rows.append((line, list(cells)))
    if headers is None:
        raise FileError("The file is empty.")
    return Table(headers=headers, rows=rows, source=source, blank_rows=blank)


# --- columns ---------------------------------------------------------------------------------


def _column_key(heading: str) -> str:
    """Return a heading as it is compared: case, spaces, underscores, hyphens and dots ignored."""
    return re.sub(r"[\s_\-.]+", "", heading.replace("\ufeff", "")).casefold()


def match_columns(headers: list[str], resource: ProviderLicenseResource) -> tuple[dict[str, int], list[str]]:
    """Return {field name: column index} and the headings the import ignores.

    Raise ``FileError`` naming the required columns the file lacks, or two columns for one field.
    """
    wanted = {}
    for name in (*resource.required_columns, *resource.optional_columns):
        names = (name, resource.fields[name].column_name, *resource.column_aliases.get(name, ()))
        wanted.update({_column_key(alias): name for alias in names})
    columns, ignored = {}, []
    for index, heading in enumerate(headers):
        name = wanted.get(_column_key(heading))
        if name is None:
            ignored += [heading] if heading else []
        elif name in columns:
            first = headers[columns[name]]
            raise FileError(f"Columns {first!r} and {heading!r} both give the {_label(resource, name)}; keep one.")
        else:
            columns[name] = index
    missing = [_label(resource, name) for name in resource.required_columns if name not in columns]
    if missing:
        raise FileError(
            f"The file has no column for: {', '.join(missing)}. Its columns are: "
            f"{', '.join(repr(h) for h in headers if h) or 'none'}."
        )
    return columns, ignored


def _label(resource: ProviderLicenseResource, name: str) -> str:
    return resource.fields[name].column_name
