"""simulate_traffic: its decisions with a seeded RNG, and a short run through a live server and router."""

import random
import statistics
import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from pytest_django.live_server_helper import LiveServer

from clinical.actions import api_clients as api_client_actions
from clinical.actions import offers as offer_actions
from clinical.actions import providers as provider_actions
from clinical.models import ApiClient, Availability, Provider, Visit, VisitEvent, VisitStatus
from clinical.reference import states
from core.audit import Actor
from devtools import simulate, simulate_config, simulate_http, simulate_session
from tests.builders import make_patient, make_provider, make_visit
from tests.devtools.traffic import FAST, routing

S = VisitStatus
DRAWS = 20_000


def _behaviour(**options) -> simulate_config.Behaviour:
    return simulate_config.Behaviour(simulate_config.SimConfig(**options), random.Random(2026))


def _share(draws: list, value) -> float:
    return draws.count(value) / len(draws)


# --- decisions ------------------------------------------------------------------------------


def test_it_locates_patients_by_state_population():
    behaviour = _behaviour()
    draws = [behaviour.state() for _ in range(DRAWS)]
    population = {row["code"]: row["population_2020"] for row in states()}
    assert _share(draws, "CA") == pytest.approx(population["CA"] / sum(population.values()), abs=0.01)
    assert _share(draws, "TX") > _share(draws, "OH") > _share(draws, "WY")


def test_it_locates_patients_only_where_the_played_providers_practise():
    behaviour = _behaviour()
    draws = [behaviour.state(["VT", "TX"]) for _ in range(2000)]
    assert set(draws) == {"VT", "TX"}
    assert _share(draws, "TX") > 0.95  # Texas has about 45 times Vermont's population


def test_it_locates_patients_only_in_the_states_given(db):
    make_provider(states=("CA",))
    config = simulate_config.config_for(providers=5, states=("GU",))
    assert simulate_session._covered_states(config, list(Provider.objects.all())) == ["GU"]


def test_it_refuses_a_state_code_that_is_not_one(db):
    with pytest.raises(CommandError, match="--states: expected state codes such as TX,NV, got 'ZZ'"):
        call_command("simulate_traffic", "--states", "TX,zz", "--duration", "0")


def test_it_mixes_priorities_85_12_3():
    behaviour = _behaviour()
    draws = [behaviour.priority() for _ in range(DRAWS)]
    assert _share(draws, "routine") == pytest.approx(0.85, abs=0.01)
    assert _share(draws, "elevated") == pytest.approx(0.12, abs=0.01)
    assert _share(draws, "urgent") == pytest.approx(0.03, abs=0.005)


def test_it_answers_offers_85_accept_10_reject_5_ignore():
    behaviour = _behaviour()
    draws = [behaviour.answer() for _ in range(DRAWS)]
    assert _share(draws, "accept") == pytest.approx(0.85, abs=0.01)
    assert _share(draws, "reject") == pytest.approx(0.10, abs=0.01)
    assert _share(draws, "ignore") == pytest.approx(0.05, abs=0.005)


def test_it_cancels_and_fails_at_the_configured_rates():
    behaviour = _behaviour(cancel_rate=0.2, fail_rate=0.02)
    assert sum(behaviour.cancels() for _ in range(DRAWS)) / DRAWS == pytest.approx(0.2, abs=0.01)
    assert sum(behaviour.fails() for _ in range(DRAWS)) / DRAWS == pytest.approx(0.02, abs=0.005)


def test_it_draws_reasons_from_the_demo_fixture():
    behaviour = _behaviour()
    reasons = {behaviour.reason() for _ in range(500)}
    assert reasons <= set(simulate_config.visit_reasons())
    assert len(reasons) > 50


def test_it_spaces_arrivals_at_the_requested_rate():
    behaviour = _behaviour(rate=0.5)
    assert statistics.mean(behaviour.arrival_gap() for _ in range(DRAWS)) == pytest.approx(2.0, rel=0.05)


def test_it_divides_every_delay_by_speed_but_never_polls_too_fast():
    normal, fast = _behaviour(), _behaviour(speed=4.0)
    assert fast.minutes((8, 20)) == pytest.approx(normal.minutes((8, 20)) / 4)
    assert 8 * 60 <= normal.minutes((8, 20)) <= 20 * 60
    assert _behaviour(speed=1000.0).poll() == simulate_config.MIN_POLL_SECONDS


def test_it_applies_the_gentle_preset_under_explicit_options():
    config = simulate_config.config_for(gentle=True, rate=None, providers=12, visit_minutes=None)
    assert (config.rate, config.visit_minutes, config.providers) == (0.25, (1.0, 3.0), 12)
    assert simulate_config.config_for().visit_minutes == (8.0, 20.0)


def test_it_signs_providers_in_over_the_seconds_given_whatever_the_speed():
    spread = _behaviour(speed=10.0, sign_in_seconds=40.0)
    draws = [spread.sign_in() for _ in range(DRAWS)]
    assert min(draws) >= 0 and max(draws) <= 40 and statistics.mean(draws) == pytest.approx(20.0, rel=0.05)
    burst = _behaviour(speed=10.0)  # by default: within the first 5 s, sped up
    assert max(burst.sign_in() for _ in range(DRAWS)) <= simulate_config.LOG_IN_SECONDS[1] / 10


@pytest.mark.parametrize(
    ("option", "value"),
    [("speed", 0), ("rate", -1), ("cancel_rate", 1.5), ("base_url", "ftp://x"), ("visit_minutes", (3, 1)),
     ("sign_in_seconds", -1)],
)  # fmt: skip
def test_it_refuses_a_config_out_of_range(option, value):
    with pytest.raises(ValueError, match=option):
        simulate_config.SimConfig(**{option: value})


def test_it_estimates_what_the_providers_can_serve():
    slow = simulate_config.capacity(simulate_config.config_for())
    gentle = simulate_config.capacity(simulate_config.config_for(gentle=True))
    assert 0.01 < slow < 0.05
    assert gentle > simulate_config.GENTLE["rate"]  # the gentle preset keeps up, so its queue drains
    assert simulate_config.capacity(simulate_config.config_for(speed=2)) == pytest.approx(2 * slow)


def test_it_runs_due_actions_in_order_and_survives_one_that_raises():
    timeline, ran, errors = simulate.Timeline(), [], []
    timeline.at(0.02, lambda: ran.append("second"))
    timeline.at(0.0, lambda: 1 / 0)
    timeline.at(0.01, lambda: ran.append("first"))
    deadline = time.monotonic() + 1
    while len(ran) < 2 and time.monotonic() < deadline:
        timeline.run_next(on_error=errors.append)
    assert ran == ["first", "second"]
    assert [type(error) for error in errors] == [ZeroDivisionError]


def test_it_shows_every_count_on_one_line():
    stats = simulate_http.Stats(requested=12, offers=9, accepted=7, conflicts=2, offer_seconds=[1.0, 2.0, 9.0])
    stats.pushes, stats.polls, stats.fallbacks = 40, 5, 1
    line = stats.line()
    assert "\n" not in line
    for part in ("requested 12", "offers 9", "acc 7", "push 40 poll 5 fallback 1", "409 2", "err 0", "p50 offer 2.0s"):
        assert part in line
    assert simulate_http.Stats().line().endswith("p50 offer -")


# --- choosing whom to play ------------------------------------------------------------------


def test_it_plays_active_licensed_providers_those_not_in_a_visit_first(db):
    free = make_provider(states=("CA",))
    busy = make_provider(states=("CA",), available=True)
    offer_actions.offer_visit(make_visit(state="CA"), busy, actor=Actor.router())
    make_provider(states=())  # no license
    make_provider(states=("CA",), status="suspended")
    inactive = make_provider(states=("CA",))
    inactive.is_active = False
    provider_actions.save_provider(inactive, actor=Actor.system("tests"))
    rng = random.Random(1)
    assert simulate_session.providers_to_play(2, rng) == [free, busy]
    assert simulate_session.providers_to_play(1, rng) == [free]


# --- through the API ------------------------------------------------------------------------


@pytest.fixture
def http_server(transactional_db):
    """Serve the console over plain HTTP in a thread, as pytest-django's ``live_server`` does.

    The session-wide ``live_server`` loads its middleware before the per-test settings turn the
    HTTPS redirect off, so it would answer every API call with a redirect to https://.
    """
    server = LiveServer("localhost:0")
    yield server
    server.stop()


def test_it_drives_visits_through_the_live_api_and_router(http_server, redis_client):
    providers = [make_provider(states=("CA",)) for _ in range(4)]
    for _ in range(10):
        make_patient()
    config = simulate_config.SimConfig(base_url=http_server.url, providers=5, **FAST)
    with routing(redis_client, seconds=8), simulate_session.session_for(config) as session:
        stolen = ApiClient.objects.get(name__startswith="sim-provider-", provider=providers[0])
        api_client_actions.revoke_api_client(stolen, actor=Actor.system("tests"))  # that provider's app now gets 401s
        stats = simulate.Simulation(config, session).run(duration=6)

    assert session.states == ["CA"]
    requested = Visit.objects.filter(events__to_status=S.WAITING, events__actor_kind="patient").distinct()
    assert requested.count() == stats.requested > 10
    assert Provider.history.filter(history_actor="provider", availability=Availability.AVAILABLE).exists()
    assert VisitEvent.objects.filter(to_status=S.OFFERED, actor_kind="router").exists()
    assert stats.offers > 0 and stats.accepted > 0 and stats.completed > 0
    completed = VisitEvent.objects.filter(to_status=S.COMPLETED, actor_kind="provider").count()
    assert stats.completed <= completed <= stats.completed + stats.finished_at_stop
    assert stats.signed_off == 3 and not Provider.objects.exclude(availability=Availability.OFFLINE).exists()
    api = stats.api_latency()  # every request was answered: each has its time
    assert api["n"] == stats.requests and 0 < api["p50"] <= api["p95"] <= api["p99"] <= api["max"]
    assert len(stats.api_log) == stats.requests and sorted(stats.api_log) == stats.api_log  # each, when it started
    assert [waited for _, waited, _ in stats.api_log] == stats.api_ms
    assert sum(status == 401 for _, _, status in stats.api_log) == stats.error_kinds["401"]
    assert stats.errors == stats.error_kinds["401"] > 0  # counted, not raised; nothing else went wrong
    assert stats.offer_seconds and stats.p50() > 0
    assert stats.pushes == 0 and stats.polls > 0  # this server has no websockets: the apps poll throughout
    assert not ApiClient.objects.filter(name__startswith="sim-", is_active=True).exists()
    # One token per patient played (each acts for that patient only) and per provider played.
    assert ApiClient.objects.filter(name__startswith="sim-patient-").count() == len(session.mrns) == 10
    assert ApiClient.objects.filter(name__startswith="sim-").count() == session.revoked == 10 + 4


def test_it_reports_a_redirect_to_https_instead_of_following_it(transactional_db, settings):
    settings.SECURE_SSL_REDIRECT = True  # as the console serves with OPS_HTTPS=1
    server = LiveServer("localhost:0")
    try:
        stats = simulate_http.Stats()
        reply = simulate_http.Api(server.url, timeout=5, stats=stats).get("visits/AAAA-BBBB", "opc_x_y")
    finally:
        server.stop()
    assert reply.status == 301
    assert stats.error_kinds == {"301": 1}
    assert "redirected to https://" in stats.last_error


def test_it_counts_errors_and_revokes_its_clients_when_the_server_is_down(transactional_db, tmp_path):
    make_provider(states=("NY",))
    make_patient()
    out, times = StringIO(), tmp_path / "api.txt"
    started = time.time()
    call_command(
        "simulate_traffic", "--base-url", "http://127.0.0.1:9", "--duration", "1", "--rate", "5", "--speed", "20",
        "--sign-in-seconds", "0.5", "--api-times", str(times), stdout=out,
    )  # fmt: skip
    calls = [line.split() for line in times.read_text().splitlines()]
    assert calls and {(waited, status) for _, waited, status in calls} == {("-", "0")}  # none answered
    assert all(started <= float(at) <= time.time() for at, _, _ in calls)
    output = out.getvalue()
    assert "1 providers, 5.0 requests/s from patients in the 1 state they practise in" in output
    assert "the apps listen on ws://127.0.0.1:9/ws/v1/ and poll only while their socket is down" in output
    assert "0 visits requested" in output
    assert "errors: " in output and "no answer" in output
    assert "revoked 2 simulation API clients" in output
    assert not ApiClient.objects.filter(is_active=True).exists()


def test_it_only_polls_with_no_push(transactional_db):
    make_provider(states=("NY",))
    make_patient()
    out = StringIO()
    call_command(
        "simulate_traffic", "--base-url", "http://127.0.0.1:9", "--duration", "0.5", "--no-push", "--json", stdout=out
    )
    output = out.getvalue()
    assert "the apps only poll (--no-push)" in output
    assert "push: 0 messages applied, 0 polls, 0 fallbacks to polling" in output
    assert '"pushes": 0, "polls": 0, "fallbacks": 0' in output
    assert '"api_ms": {"n": 0, "p50": null' in output  # nothing answered: no time to report


def test_it_refuses_bad_options(db):
    with pytest.raises(CommandError, match="--speed"):
        call_command("simulate_traffic", "--speed", "0", stdout=StringIO())
    with pytest.raises(CommandError, match="LOW-HIGH"):
        call_command("simulate_traffic", "--visit-minutes", "soon", stdout=StringIO())
    with pytest.raises(CommandError, match="seed_demo"):
        call_command("simulate_traffic", "--duration", "1", stdout=StringIO())
