"""What the apps see of a visit: one shape for the API's answers and the websocket's pushes."""

from clinical.models import Priority, Visit, VisitStatus

PRIORITIES = {"routine": Priority.ROUTINE, "elevated": Priority.ELEVATED, "urgent": Priority.URGENT}
PRIORITY_NAMES = {value: name for name, value in PRIORITIES.items()}


def visit_json(visit: Visit) -> dict:
    """Return what the apps see of a visit."""
    provider = visit.provider
    return {
        "id": visit.public_id,
        "status": visit.status,
        "patient": visit.patient.mrn,
        "located_state": visit.located_state,
        "priority": PRIORITY_NAMES[visit.priority],
        "reason": visit.reason,
        "provider": {"npi": provider.npi, "name": provider.full_name} if provider else None,
        "offer_count": visit.offer_count,
        "offer": _offer_json(visit),
        **{
            name: value.isoformat() if value else None
            for name, value in (
                ("requested_at", visit.requested_at),
                ("offered_at", visit.offered_at),
                ("accepted_at", visit.accepted_at),
                ("started_at", visit.started_at),
                ("ended_at", visit.ended_at),
                ("cancelled_at", visit.cancelled_at),
            )
        },  # fmt: skip
    }


def _offer_json(visit: Visit) -> dict | None:
    """Return the open offer (id and deadline, the database's time) of an offered visit."""
    offer_id = getattr(visit, "open_offer_id", None)
    if visit.status != VisitStatus.OFFERED or offer_id is None:
        return None
    return {
        "id": offer_id,
        "offered_at": visit.offered_at.isoformat(),
        "expires_at": visit.offer_expires_at.isoformat(),
    }
