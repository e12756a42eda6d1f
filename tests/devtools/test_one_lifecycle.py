"""Every visit the dev tools write follows the one lifecycle, ``clinical.actions.visits.VISIT_TRANSITIONS``.

The demo seed and ``generate_data`` write timelines in bulk (not through the actions): this walks
every event they wrote and fails on any step the actions would refuse.
"""

from io import StringIO

from django.core.management import call_command
from django.db import connection

from clinical.actions.visits import VISIT_TRANSITIONS
from devtools.seed import demo

ALLOWED = {(before, after) for after, befores in VISIT_TRANSITIONS.items() for before in befores} | {("", "waiting")}
_STEPS = """
SELECT e.visit_id, e.from_status, e.to_status,
       coalesce(lag(e.to_status) OVER (PARTITION BY e.visit_id ORDER BY e.at, e.id), '') AS previous,
       row_number() OVER (PARTITION BY e.visit_id ORDER BY e.at DESC, e.id DESC) = 1 AS last,
       v.status
FROM clinical_visitevent e JOIN clinical_visit v ON v.id = e.visit_id
"""


def _lifecycle_breaks() -> tuple[int, list[tuple]]:
    """Return how many events were walked and those that break the lifecycle (at most 10)."""
    with connection.cursor() as cursor:
        cursor.execute(_STEPS)
        steps = cursor.fetchall()
    breaks = [
        step
        for step in steps
        if (step[1], step[2]) not in ALLOWED or step[1] != step[3] or (step[4] and step[2] != step[5])
    ]
    return len(steps), breaks[:10]


def test_it_seeds_only_timelines_the_actions_allow(db):
    demo.seed_demo(size=demo.DemoSize(providers=30, patients=300, visits=1200), seed=11)
    walked, breaks = _lifecycle_breaks()
    assert walked > 1200 and breaks == []


def test_it_generates_only_timelines_the_actions_allow(db):
    call_command("generate_data", "--patients=60", "--providers=20", "--visits=800", stdout=StringIO())
    walked, breaks = _lifecycle_breaks()
    assert walked > 800 and breaks == []


def test_it_finds_a_step_the_actions_would_refuse(db):
    demo.seed_demo(size=demo.DemoSize(providers=5, patients=20, visits=40), seed=3)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE clinical_visitevent SET from_status = 'waiting' WHERE id = "
            "(SELECT min(id) FROM clinical_visitevent WHERE to_status = 'completed')"
        )
    assert _lifecycle_breaks()[1]
