"""simulate_traffic's apps on websockets: real sockets to the real server and relay, polling while they are down."""

import contextlib
import queue
import threading
import time
from collections.abc import Iterator

from devtools import simulate, simulate_config, simulate_push, simulate_session
from devtools.simulate_http import Stats
from tests.builders import make_patient, make_provider
from tests.clinical.processes import wait_for
from tests.devtools.traffic import FAST, routing

NPI = "1234567893"


def _players(*, providers: int = 4, patients: int = 10) -> None:
    for _ in range(providers):
        make_provider(states=("CA",))
    for _ in range(patients):
        make_patient()


def _report(stats: Stats) -> str:
    return "\n".join(stats.report())


# --- without a server -----------------------------------------------------------------------


def _visit_message(version: int, status: str, *, kind: str = "visit", visit_id: str = "AAAA-BBBB") -> dict:
    provider = {"npi": NPI, "name": "Ada"} if status not in ("waiting", "cancelled") else None
    visit = {"id": visit_id, "status": status, "provider": provider}
    return {"type": kind, "version": version, "visit": visit}


def _unopened_feed(owner) -> simulate_push.PushFeed:
    """Return a feed whose socket is never opened: messages are handed to the simulation by the test."""
    url, inbox = "ws://127.0.0.1:9/ws/v1/", queue.SimpleQueue()
    return simulate_push.PushFeed(url, "opc_x", owner=owner, inbox=inbox, silent_seconds=30)


def _offline_simulation() -> simulate.Simulation:
    session = simulate_session.Session("t", {"MRN1": "opc_patient"}, [(NPI, "opc_provider")], ["MRN1"], [], [])
    return simulate.Simulation(simulate_config.SimConfig(base_url="http://127.0.0.1:9"), session)


def test_it_applies_a_visits_version_once_and_never_an_older_one():
    sim = _offline_simulation()
    feed = _unopened_feed("MRN1")
    sim.visits["AAAA-BBBB"] = simulate.SimVisit("AAAA-BBBB", "MRN1", requested=time.monotonic())
    sim._apply(feed, _visit_message(7, "offered"))
    sim._apply(feed, _visit_message(7, "offered"))  # the same version again (a resume after a live push)
    sim._apply(feed, _visit_message(5, "waiting"))  # an older one, late
    assert sim.stats.pushes == 1
    assert sim.visits["AAAA-BBBB"].status == "offered" and len(sim.stats.offer_seconds) == 1
    sim._apply(feed, _visit_message(9, "accepted"))
    assert sim.stats.pushes == 2 and "AAAA-BBBB" not in sim.visits
    assert feed.versions.recent() == {"AAAA-BBBB": 9}  # what the next resume names


def test_it_keeps_the_providers_held_visit_from_pushes():
    sim = _offline_simulation()
    provider = sim.providers[0]
    feed = _unopened_feed(provider)
    sim._apply(feed, _visit_message(3, "offered"))
    assert provider.view.as_reply() == {"visit": _visit_message(3, "offered")["visit"], "availability": "available"}
    sim._apply(feed, _visit_message(2, "offered", kind="offer_withdrawn"))  # older: ignored
    assert provider.view.held["id"] == "AAAA-BBBB"
    sim._apply(feed, {**_visit_message(4, "waiting", kind="offer_withdrawn"), "outcome": "expired"})
    assert provider.view.as_reply() == {"visit": None, "availability": "offline"}  # the router set them offline


def test_it_waits_for_the_push_of_the_providers_own_action():
    view = simulate_push.ProviderView(NPI, held=_visit_message(3, "in_progress")["visit"])
    view.acted("AAAA-BBBB", _visit_message(0, "completed")["visit"])
    view.pushed(_visit_message(4, "in_progress"))  # late: not yet what they did
    assert view.lagging()
    view.pushed(_visit_message(5, "completed"))
    assert not view.lagging() and view.held is None


def test_it_derives_the_socket_url_from_the_base_url():
    assert simulate_push.socket_url("http://127.0.0.1:8000/") == "ws://127.0.0.1:8000/ws/v1/"
    assert simulate_push.socket_url("https://ops.example") == "wss://ops.example/ws/v1/"


# --- through the real push stack ------------------------------------------------------------


def test_it_listens_for_pushes_instead_of_polling(push, redis_client):
    _players()
    config = simulate_config.SimConfig(base_url=push.url, providers=4, **FAST)
    with routing(redis_client, seconds=15), simulate_session.session_for(config) as session:
        stats = simulate.Simulation(config, session).run(duration=6)
    assert stats.offers > 0 and stats.completed > 0 and stats.offer_seconds
    assert stats.pushes > 50
    assert stats.fallbacks == 0
    # Only a socket not yet resumed makes its app poll (a patient's first look within a second).
    assert stats.polls <= stats.requested // 10 + 2, _report(stats)
    assert stats.errors == 0, _report(stats)


@contextlib.contextmanager
def _running(sim: simulate.Simulation) -> Iterator[Stats]:
    """Run the simulation on a thread for the block; stop it (and its sign-off) on the way out."""
    running = threading.Thread(target=sim.run, kwargs={"duration": 60}, daemon=True)
    running.start()
    try:
        yield sim.stats
    finally:
        sim.stopping = True
        running.join(30)
    assert not running.is_alive()


def _all_listening(sim: simulate.Simulation, timeout: float = 10) -> None:
    """Assert every provider has signed in (over the first seconds) and its socket is live."""
    live = lambda: all(p.feed is not None and p.feed.live() for p in sim.providers)  # noqa: E731
    assert wait_for(live, timeout=timeout), _report(sim.stats)


def _back_on_push(sim: simulate.Simulation) -> None:
    """Assert every provider's socket is live again, pushes flow and polling has stopped."""
    stats = sim.stats
    _all_listening(sim, timeout=15)
    pushes = stats.pushes
    assert wait_for(lambda: stats.pushes > pushes + 20, timeout=10), _report(stats)
    polls = stats.polls
    time.sleep(2)
    assert stats.polls - polls <= 3, _report(stats)


def test_it_polls_while_the_server_is_down_and_returns_to_push(push, redis_client):
    _players()
    config = simulate_config.SimConfig(base_url=push.url, providers=4, **FAST)
    with routing(redis_client, seconds=90), simulate_session.session_for(config) as session:
        sim = simulate.Simulation(config, session)
        with _running(sim) as stats:
            assert wait_for(lambda: stats.pushes > 20, timeout=10), _report(stats)
            _all_listening(sim)
            polls = stats.polls
            push.kill("web")  # gunicorn and its workers, as a crash of the host would
            assert wait_for(lambda: stats.fallbacks >= 1 and stats.polls > polls + 10, timeout=10), _report(stats)
            push.start_web()
            _back_on_push(sim)
    assert stats.completed > 0


def test_it_polls_while_the_socket_is_silent_and_returns_when_heartbeats_do(push, redis_client):
    _players()
    # The relay sends a heartbeat every second here; silent for 2.5 s means it is down.
    config = simulate_config.SimConfig(base_url=push.url, providers=4, silent_seconds=2.5, **FAST)
    with routing(redis_client, seconds=90), simulate_session.session_for(config) as session:
        sim = simulate.Simulation(config, session)
        with _running(sim) as stats:
            assert wait_for(lambda: stats.pushes > 20, timeout=10), _report(stats)
            _all_listening(sim)
            polls = stats.polls
            push.kill("relay")  # the sockets stay open, but nothing arrives on them
            assert wait_for(lambda: stats.fallbacks >= 1 and stats.polls > polls + 10, timeout=10), _report(stats)
            assert all(p.feed.connected() for p in sim.providers)
            push.start_relay()
            _back_on_push(sim)
