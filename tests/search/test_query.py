"""What a search input is read as: the readings both backends search for."""

import datetime as dt

import pytest

from search.query import license_key, parse

TODAY = dt.date(2026, 3, 1)


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("Maria Garcia", {"words": ("maria", "garcia")}),
        ("garcia, maria", {"words": ("garcia", "maria")}),
        ("O'Brien-Smith", {"words": ("o", "brien", "smith")}),
        ("(415) 555-1234", {"phone": "+14155551234"}),
        ("415.555.1234", {"phone": "+14155551234"}),
        ("+1 415 555 1234", {"phone": "+14155551234"}),
        ("1-415-555-1234", {"phone": "+14155551234"}),
        ("Maria.Garcia@Example.COM", {"email": "maria.garcia@example.com"}),
        ("m1234567-8", {"mrn": "M12345678"}),
        ("7kq3m9xd", {"public_id": "7KQ3-M9XD"}),
        ("7KQ3-M9XD", {"public_id": "7KQ3-M9XD"}),
        ("ca-000123", {"license": "CA000123"}),
        ("#42", {"case_id": 42}),
        ("1234567893", {"npi": "1234567893"}),
    ],
)
def test_it_reads_what_support_agents_type(typed, expected):
    query = parse(typed, today=TODAY)
    for reading, value in expected.items():
        assert getattr(query, reading) == value, (typed, reading)


@pytest.mark.parametrize("typed", ["1985-03-02", "03/02/1985", "3/2/85", "3/2/1985"])
def test_it_reads_a_date_of_birth_in_the_formats_people_type(typed):
    assert parse(typed, today=TODAY).dob == dt.date(1985, 3, 2)


def test_it_reads_a_two_digit_year_of_birth_as_the_past():
    assert parse("1/5/07", today=TODAY).dob == dt.date(2007, 1, 5)
    assert parse("1/5/30", today=TODAY).dob == dt.date(1930, 1, 5)


def test_it_reads_a_name_with_a_date_of_birth():
    query = parse("Maria Garcia 3/2/85", today=TODAY)
    assert (query.words, query.dob) == (("maria", "garcia"), dt.date(1985, 3, 2))
    assert query.kinds == ("name", "dob")


def test_it_keeps_every_reading_of_an_ambiguous_input():
    # Eight letters from the visit id alphabet: a surname or a visit id read without its dash.
    query = parse("HARTNETT", today=TODAY)
    assert query.words == ("hartnett",)
    assert query.public_id == "HART-NETT"


def test_it_does_not_take_an_impossible_date_or_phone():
    query = parse("13/45/1985", today=TODAY)
    assert query.dob is None
    assert parse("555-1234", today=TODAY).phone is None


@pytest.mark.parametrize("typed", ["", "   ", "!!!", "--"])
def test_it_reads_nothing_from_input_no_record_can_match(typed):
    assert parse(typed, today=TODAY).is_empty


def test_it_compares_license_numbers_without_punctuation_or_case():
    assert license_key("ca-12 34") == "CA1234"
