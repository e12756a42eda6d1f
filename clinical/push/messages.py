"""The messages a timeline event makes, for whom: built from PostgreSQL, the same for live pushes and resumes.

A visit's **version** is the id of its latest timeline event (``VisitEvent``): ids grow with each
event of a visit, because every transition holds the visit's row lock while it writes its event.
A client keeps the highest version it applied per visit and ignores anything not higher.

- The visit's patient (group ``patient.<id>``) gets every transition, with the visit as the
  patient's ``GET /api/v1/visits/<id>`` returns it.
- The provider an event names (offered to, accepted by, withdrawn from) gets it too (group
  ``provider.<id>``): with the visit while they hold it (what their ``GET`` returns, the open
  offer's id and deadline included); as ``offer_withdrawn`` (the visit's id and why, nothing
  more: their ``GET`` of it is refused from then on) once it has moved on without them.
"""

from dataclasses import dataclass

from django.db.models import Max, Q

from clinical import selectors
from clinical.api.payloads import visit_json
from clinical.models import Offer, VisitEvent


@dataclass(frozen=True)
class Message:
    """One message for one group; ``visit_pk`` and ``patient_pk`` name what the PHI access log notes (None: no PHI)."""

    group: str
    body: dict
    visit_pk: int | None = None
    patient_pk: int | None = None


def patient_group(patient_id: int) -> str:
    """Return the group of a patient's sockets."""
    return f"patient.{patient_id}"


def provider_group(provider_id: int) -> str:
    """Return the group of a provider's sockets."""
    return f"provider.{provider_id}"


def client_group(client_id: int) -> str:
    """Return the group of one API client's sockets (closed when it is revoked)."""
    return f"apiclient.{client_id}"


def for_events(event_ids: list[int]) -> list[Message]:
    """Return the messages these timeline events make, in event order (two queries, three with withdrawals)."""
    events = list(
        VisitEvent.objects.filter(pk__in=event_ids)
        .only("id", "visit_id", "from_status", "to_status", "at", "provider_id")
        .order_by("id")
    )
    visits = selectors.visits_for_api([event.visit_id for event in events])
    withdrawn = _withdrawals(events, visits)
    messages = []
    for event in events:
        visit = visits.get(event.visit_id)
        if visit is None:
            continue
        body = {
            "type": "visit",
            "version": event.pk,
            "event": {"from": event.from_status or None, "to": event.to_status, "at": event.at.isoformat()},
            "visit": visit_json(visit),
        }
        messages.append(Message(patient_group(visit.patient_id), body, visit.pk, visit.patient_id))
        if event.provider_id is None:
            continue
        if visit.provider_id == event.provider_id:
            messages.append(Message(provider_group(event.provider_id), dict(body), visit.pk, visit.patient_id))
        else:
            outcome = withdrawn.get((visit.pk, event.provider_id))
            gone = {
                "type": "offer_withdrawn",
                "version": event.pk,
                "visit": {"id": visit.public_id},
                "outcome": outcome or event.to_status,
            }
            messages.append(Message(provider_group(event.provider_id), gone, None))
    return messages


def _withdrawals(events: list[VisitEvent], visits: dict) -> dict[tuple[int, int], str]:
    # Why each provider no longer holds the visit: their latest offer's outcome (declined, expired,
    # withdrawn, cancelled); one query for all of them.
    pairs = {
        (event.visit_id, event.provider_id)
        for event in events
        if event.provider_id is not None
        and event.visit_id in visits
        and visits[event.visit_id].provider_id != event.provider_id
    }
    if not pairs:
        return {}
    offers = (
        Offer.objects.filter(visit_id__in={v for v, _ in pairs}, provider_id__in={p for _, p in pairs})
        .exclude(outcome=None)
        .order_by("offered_at", "id")
        .values_list("visit_id", "provider_id", "outcome")
    )
    return {(visit, provider): outcome for visit, provider, outcome in offers if (visit, provider) in pairs}


def missed(*, patient_id: int | None, provider_id: int | None, versions: dict[str, int]) -> list[Message]:
    """Return, in order, what a client missed: events after the version it gave for each visit it names.

    A provider also gets the visit it holds now, if it named no version for it (an offer made
    while its socket was down). Only the caller's own visits count; others are ignored, as a
    ``GET`` of them would be refused.
    """
    owned = selectors.visit_ids_by_public_id(list(versions), patient_id=patient_id, provider_id=provider_id)
    after = Q(pk__in=[])
    for public_id, visit_pk in owned.items():
        after |= Q(visit_id=visit_pk, pk__gt=versions[public_id])
    events = VisitEvent.objects.filter(after)
    if provider_id is not None:
        events = events.filter(provider_id=provider_id)
    ids = list(events.values_list("pk", flat=True)) if owned else []
    if provider_id is not None:
        unnamed = set(selectors.visit_ids_held_by(provider_id)) - set(owned.values())
        latest = (
            VisitEvent.objects.filter(visit_id__in=unnamed, provider_id=provider_id)
            .values("visit_id")
            .annotate(last=Max("id"))
            .values_list("last", flat=True)
        )
        ids += list(latest) if unnamed else []
    mine = {patient_group(patient_id)} if patient_id is not None else {provider_group(provider_id)}
    return [message for message in for_events(sorted(ids)) if message.group in mine]
