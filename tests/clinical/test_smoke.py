from clinical.models import Availability, VisitStatus
from tests.builders import make_provider, make_visit


def test_it_builds_a_provider_and_a_visit(db):
    provider = make_provider(states=("CA", "NV"), available=True)
    visit = make_visit(state="CA")
    assert provider.availability == Availability.AVAILABLE
    assert visit.status == VisitStatus.WAITING
    assert visit.events.count() == 1
