"""Where writes say which searchable rows changed, without knowing who indexes them.

Actions call ``record`` next to the write, in the caller's transaction. The app that indexes
(``search``) registers the writer that turns these calls into outbox rows when it is ready
(``search.apps``), so the apps that write never import it. With no writer registered nothing
is recorded: the PostgreSQL search backend reads the tables themselves and needs no outbox.
"""

from collections.abc import Callable, Iterable

Writer = Callable[[str, list[int], bool], None]
Wants = Callable[[str], bool]
_writers: list[tuple[Writer, Wants]] = []


def register(writer: Writer, *, wants: Wants) -> None:
    """Add ``writer(label, ids, embedded)`` for the labels ``wants(label)`` accepts (asked before any query)."""
    if all(writer is not known for known, _ in _writers):
        _writers.append((writer, wants))


def _writers_for(label: str) -> list[Writer]:
    return [writer for writer, wants in _writers if wants(label)]


def record(label: str, ids: Iterable[int | None], *, embedded: bool = False) -> None:
    """Record that the ``label`` rows ("app.model") with these ids changed, in the caller's transaction.

    With ``embedded``, the documents that copy fields of these rows (a patient's visits and cases
    carry the patient's name) are recorded too: pass it when names or identifiers may have changed.
    """
    writers = _writers_for(label)
    ids = sorted({pk for pk in ids if pk is not None}) if writers else []
    for writer in writers if ids else ():
        writer(label, ids, embedded)


def record_instance(obj, *, embedded: bool = False) -> None:
    """Record that one row changed."""
    record(obj._meta.label_lower, [obj.pk], embedded=embedded)


def record_rows(queryset) -> None:
    """Record the rows of ``queryset`` (e.g. just before deleting them); reads their ids only if a writer wants them."""
    label = queryset.model._meta.label_lower
    if _writers_for(label):
        record(label, queryset.values_list("pk", flat=True))
