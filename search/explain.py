"""Which field of a found record matched the search, worked out from the row as it is now.

Both backends say only which rows match; the reason shown next to each row is read from
the rehydrated PostgreSQL row, so it is never based on a stale document.
"""

import re

from search.query import SearchQuery, license_key, sorted_letters

WORD_SIMILAR = 0.5  # the word-similarity threshold the console's connections use (settings.DATABASES)


def trigrams(text: str) -> set[str]:
    """Return the trigrams pg_trgm takes from ``text``: per word, padded with two spaces before and one after."""
    grams = set()
    for word in re.findall(r"[^\W_]+", text.lower()):
        padded = f"  {word} "
        grams |= {padded[i : i + 3] for i in range(len(padded) - 2)}
    return grams


def word_similarity(typed: str, name: str) -> float:
    """Return how much of ``typed`` is found in ``name`` (shared trigrams over the typed ones).

    An upper bound of pg_trgm's ``word_similarity``, which also counts the unmatched trigrams
    inside the best-matching part of the name: close enough to say which field matched.
    """
    wanted = trigrams(typed)
    return len(wanted & trigrams(name)) / len(wanted) if wanted else 0.0


def name_matches(name: str, query: SearchQuery, *, last_name: str = "") -> bool:
    """Return True if the typed words start or resemble words of ``name``, or swap letters of it or ``last_name``."""
    if not query.words:
        return False
    words = re.findall(r"[^\W_]+", name.lower())
    prefixes = all(any(word.startswith(typed) for word in words) for typed in query.words)
    swapped = sorted_letters(query.text) in {sorted_letters(name), sorted_letters(last_name)}
    return prefixes or swapped or word_similarity(query.text, name) >= WORD_SIMILAR


def _person(person, query: SearchQuery, prefix: str = "") -> list[str]:
    if person is None:
        return []
    found = []
    if query.words and name_matches(f"{person.first_name} {person.last_name}", query, last_name=person.last_name):
        found.append(f"{prefix}name")
    checks = [
        ("MRN", getattr(person, "mrn", None), query.mrn),
        ("NPI", getattr(person, "npi", None), query.npi),
        ("phone", person.phone, query.phone),
        ("e-mail", (person.email or "").lower(), query.email),
        ("date of birth", getattr(person, "date_of_birth", None), query.dob),
    ]
    found += [f"{prefix}{label}" for label, value, typed in checks if typed and value == typed]
    return found


def matched_fields(document: str, obj, query: SearchQuery) -> list[str]:
    """Return the labels of the fields of ``obj`` that match ``query``, e.g. ``["phone"]``."""
    if document == "patient":
        return _person(obj, query)
    if document == "provider":
        found = _person(obj, query)
        numbers = {license_key(lic.license_number) for lic in obj.licenses.all()} if query.license else set()
        return found + (["license number"] if query.license in numbers else [])
    if document == "visit":
        found = ["visit id"] if query.public_id and obj.public_id == query.public_id else []
        return found + _person(obj.patient, query, "patient ") + _person(obj.provider, query, "provider ")
    if document == "case":
        found = ["case number"] if query.case_id and obj.pk == query.case_id else []
        if query.public_id and obj.visit_id and obj.visit.public_id == query.public_id:
            found.append("visit id")
        if query.words and all(word in obj.subject.lower() for word in query.words):
            found.append("subject")
        return found + _person(obj.patient, query, "patient ")
    raise ValueError(f"unknown document {document!r}")
