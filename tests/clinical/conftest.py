"""Fixtures for the clinical tests."""

import pytest

from clinical.models import StateTimeZone
from core import dbclock


@pytest.fixture
def california_a_day_off_utc(db):
    """Give California (inside this test's transaction) a zone whose date differs from UTC's now.

    Return license builder keywords for a license that UTC's date would count but California's
    own date does not: one that already expired there (its date is ahead of UTC's) or is not
    issued yet there (behind). Chosen with an hour of margin either way, whatever the time of day.
    """
    ahead = dbclock.now().hour >= 11
    StateTimeZone.objects.filter(state="CA").update(time_zone="Etc/GMT-14" if ahead else "Etc/GMT+12")
    return {"expires_in_days": -1} if ahead else {"issued_days_ago": -1}
