"""The state's own calendar: whether a license counts at an instant.

State boards count a license's issue and expiry dates in the state's local calendar, and a state
may span several time zones (TX: Central and Mountain). A license counts at instant *t* only when
*t* falls inside its issue and expiry dates (the expiry date being the last valid day) in **every**
zone of its state, so it starts when the last zone reaches the issue date and stops when the first
zone passes the expiry date.

That rule has one definition: the SQL function ``clinical_license_valid_at(status, state,
issued_on, expires_on, at)`` (migration ``clinical.0007``), which reads the zones from the
``clinical_statetimezone`` table. The table is kept equal to ``fixtures/us_states.json`` after
every ``migrate``. Set-based SQL calls the function through ``license_valid_sql``; the ORM through
``LicenseValidAt``; Python asks the database (``states_licensed_at``), never its own clock.
"""

import datetime as dt

from django.db import connection
from django.db.models import BooleanField, F, Func, Value
from django.db.models.functions import Now

from clinical.reference import states

FUNCTION = "clinical_license_valid_at"

# The definition. ``at`` is an instant (timestamptz); with no zones on record a license never counts.
# PL/pgSQL rather than SQL: its plan of the zones lookup is kept for the session, where a SQL
# function's body would be planned again in every statement that calls it (~0.4 ms each).
CREATE_FUNCTION_SQL = f"""
CREATE OR REPLACE FUNCTION {FUNCTION}(status varchar, state varchar, issued_on date, expires_on date, at timestamptz)
RETURNS boolean LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    inside boolean;
BEGIN
    IF status IS DISTINCT FROM 'active' THEN
        RETURN false;
    END IF;
    SELECT bool_and((at AT TIME ZONE z.time_zone)::date BETWEEN issued_on AND coalesce(expires_on, 'infinity'::date))
    INTO inside
    FROM clinical_statetimezone z WHERE z.state = {FUNCTION}.state;
    RETURN coalesce(inside, false);
END
$$
"""  # noqa: S608 (the function name is a constant)
DROP_FUNCTION_SQL = f"DROP FUNCTION IF EXISTS {FUNCTION}(varchar, varchar, date, date, timestamptz)"


def license_valid_sql(alias: str = "l", at: str = "%(at)s") -> str:
    """Return the SQL condition "license ``alias`` counts at ``at``" for set-based statements."""
    return f"{FUNCTION}({alias}.status, {alias}.state, {alias}.issued_on, {alias}.expires_on, {at})"


class LicenseValidAt(Func):
    """ORM expression: True when the license row counts at ``at`` (an instant or an expression; the
    database's clock by default). Keyword arguments put a value in place of a column (e.g.
    ``status="active"`` asks whether the dates alone would count).
    """

    function = FUNCTION
    output_field = BooleanField()

    def __init__(self, at=None, **instead):
        if at is None:
            at = Now()
        elif isinstance(at, dt.datetime):
            at = Value(at)
        columns = [Value(instead[name]) if name in instead else F(name) for name in _COLUMNS]
        super().__init__(*columns, at)


_COLUMNS = ("status", "state", "issued_on", "expires_on")


def states_licensed_at(provider_id: int, at: dt.datetime | None = None) -> list[str]:
    """Return the states where the provider's licenses count at ``at`` (now by the database's clock)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT l.state FROM clinical_providerlicense l WHERE l.provider_id = %(provider)s "  # noqa: S608
            f"AND {license_valid_sql('l', 'coalesce(%(at)s::timestamptz, statement_timestamp())')} ORDER BY l.state",
            {"provider": provider_id, "at": at},
        )
        return [row[0] for row in cursor.fetchall()]


def zones_from_fixture() -> list[tuple[str, str]]:
    """Return every (state, IANA time zone) pair of the reference fixture."""
    return [(row["code"], zone) for row in states() for zone in row["time_zones"]]


def sync_time_zones(using: str = "default") -> int:
    """Make ``clinical_statetimezone`` equal the fixture; return how many rows changed."""
    from django.db import connections

    pairs = zones_from_fixture()
    with connections[using].cursor() as cursor:
        cursor.execute(
            "DELETE FROM clinical_statetimezone WHERE (state, time_zone) NOT IN "
            "(SELECT * FROM unnest(%s::varchar[], %s::varchar[]))",
            [[s for s, _ in pairs], [z for _, z in pairs]],
        )
        removed = cursor.rowcount
        cursor.execute(
            "INSERT INTO clinical_statetimezone (state, time_zone) "
            "SELECT * FROM unnest(%s::varchar[], %s::varchar[]) ON CONFLICT DO NOTHING",
            [[s for s, _ in pairs], [z for _, z in pairs]],
        )
        return removed + cursor.rowcount


def sync_time_zones_after_migrate(sender, using="default", **kwargs) -> None:
    """``post_migrate`` receiver: keep the zones table equal to the fixture."""
    if sender.name == "clinical":
        sync_time_zones(using)
