"""Each priority's target wait (``ROUTING_SLA_*``): one definition for the router and the statistics."""

from django.conf import settings

from clinical.models import Priority


def sla_targets() -> dict[int, int]:
    """Return ``{priority: target wait in seconds}``, most urgent first."""
    return {
        Priority.URGENT: settings.ROUTING_SLA_URGENT,
        Priority.ELEVATED: settings.ROUTING_SLA_ELEVATED,
        Priority.ROUTINE: settings.ROUTING_SLA_ROUTINE,
    }
