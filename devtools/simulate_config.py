"""What simulate_traffic simulates (its configuration) and every random choice its patients and providers make."""

import random
from collections.abc import Collection
from dataclasses import dataclass
from functools import cache

from devtools import sampling

Span = tuple[float, float]  # (low, high) for a uniform draw
PRIORITY_MIX = {"routine": 85, "elevated": 12, "urgent": 3}
MIN_POLL_SECONDS = 0.1  # even at high --speed, do not hammer the server
LOG_IN_SECONDS = (0.0, 5.0)  # providers come online over the first seconds, not all in one burst

# --- configuration --------------------------------------------------------------------------


@dataclass(frozen=True)
class SimConfig:
    """What to simulate. Every delay is divided by ``speed``; the arrival ``rate`` is not."""

    base_url: str = "http://127.0.0.1:8000"
    rate: float = 0.5  # new visit requests per second
    providers: int = 40
    patients: int = 500  # patients played (one token each, one open visit each at a time)
    part: tuple[int, int] = (0, 1)  # play only the patients and providers of part K of N (by id)
    seed: int | None = None
    cancel_rate: float = 0.05
    speed: float = 1.0
    visit_minutes: Span = (8.0, 20.0)
    all_states: bool = False  # False: patients are located where the played providers are licensed
    states: tuple[str, ...] = ()  # patients are located only here (over all_states and the providers' states)
    accept: float = 0.85
    reject: float = 0.10  # the rest ignore the offer until the router takes it back
    fail_rate: float = 0.02
    poll_seconds: Span = (1.0, 2.0)
    think_seconds: Span = (2.0, 8.0)
    connect_seconds: Span = (3.0, 10.0)
    cancel_after_seconds: Span = (5.0, 90.0)
    patient_poll_seconds: Span = (5.0, 10.0)
    retry_seconds: Span = (5.0, 15.0)
    shift_minutes: Span = (10.0, 40.0)
    break_minutes: Span = (2.0, 10.0)
    request_timeout: float = 5.0
    push: bool = True  # listen on /ws/v1/ and poll only while a socket is down or silent; False: poll only
    silent_seconds: float = 30.0  # a socket that heard nothing for this long counts as down
    # Providers sign in (socket and availability) spread over this many seconds, not divided by
    # speed: a load test's warm-up. None: over LOG_IN_SECONDS, divided by speed.
    sign_in_seconds: float | None = None

    def __post_init__(self):
        checks = {
            "base_url": self.base_url.startswith(("http://", "https://")),
            "rate": self.rate >= 0,
            "providers": self.providers >= 0,
            "patients": self.patients >= 1,
            "part": 0 <= self.part[0] < self.part[1],
            "speed": self.speed > 0,
            "cancel_rate": 0 <= self.cancel_rate <= 1,
            "accept": min(self.accept, self.reject) >= 0 and self.accept + self.reject <= 1,
            "visit_minutes": 0 <= self.visit_minutes[0] <= self.visit_minutes[1],
            "silent_seconds": self.silent_seconds > 0,
            "sign_in_seconds": self.sign_in_seconds is None or self.sign_in_seconds >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"{name}: {getattr(self, name)!r} is not valid.")


# `make run`: a visit request every few seconds, short visits and enough providers to keep up
# (about 0.33 visits/s, see ``capacity``), so a newcomer sees the queues move and drain.
GENTLE = {
    "rate": 0.25,
    "providers": 60,
    "visit_minutes": (1.0, 3.0),
    "shift_minutes": (4.0, 10.0),
    "break_minutes": (0.5, 2.0),
}


def config_for(*, gentle: bool = False, **options) -> SimConfig:
    """Return the configuration: defaults, then the gentle preset if asked, then the options given."""
    chosen = {name: value for name, value in options.items() if value is not None}
    return SimConfig(**{**(GENTLE if gentle else {}), **chosen})


def capacity(config: SimConfig) -> float:
    """Return roughly how many visits per second the played providers can finish."""

    def mean(span: Span) -> float:
        return sum(span) / 2

    cycle = mean(config.visit_minutes) * 60 + mean(config.think_seconds) + mean(config.connect_seconds)
    on_duty = mean(config.shift_minutes) / (mean(config.shift_minutes) + mean(config.break_minutes))
    return config.providers * config.accept * on_duty * config.speed / (cycle + mean(config.poll_seconds))


# --- decisions ------------------------------------------------------------------------------


@cache
def visit_reasons() -> tuple[str, ...]:
    """Return the visit reasons of the demo fixture."""
    return tuple(sampling.people()["visit_reasons"])


class Behaviour:
    """Every random choice the simulated patients and providers make, from one seeded source."""

    def __init__(self, config: SimConfig, rng: random.Random):
        self.config, self.rng = config, rng

    def state(self, among: Collection[str] | None = None) -> str:
        """Return where a new patient is, weighted by 2020 population (within ``among`` if given)."""
        return sampling.random_state(self.rng, among)

    def priority(self) -> str:
        """Return a visit priority: mostly routine, a few elevated, rarely urgent."""
        return sampling.weighted(self.rng, PRIORITY_MIX)

    def reason(self) -> str:
        """Return why the patient asks for a visit."""
        return self.rng.choice(visit_reasons())

    def answer(self) -> str:
        """Return how a provider answers an offer: accept, reject or ignore."""
        config = self.config
        return sampling.weighted(
            self.rng, {"accept": config.accept, "reject": config.reject, "ignore": 1 - config.accept - config.reject}
        )

    def cancels(self) -> bool:
        """Return True if this patient will cancel before a provider takes the visit."""
        return self.rng.random() < self.config.cancel_rate

    def fails(self) -> bool:
        """Return True if this visit will end as failed (the call drops)."""
        return self.rng.random() < self.config.fail_rate

    def arrival_gap(self) -> float:
        """Return seconds until the next visit request (a Poisson process at ``rate``)."""
        return self.rng.expovariate(self.config.rate)

    def sign_in(self) -> float:
        """Return seconds until a provider signs in: within ``sign_in_seconds`` if set, else the first few."""
        if self.config.sign_in_seconds is not None:
            return self.rng.uniform(0.0, self.config.sign_in_seconds)
        return self.seconds(LOG_IN_SECONDS)

    def seconds(self, span: Span) -> float:
        """Return a delay drawn from ``span`` seconds, divided by ``speed``."""
        return self.rng.uniform(*span) / self.config.speed

    def minutes(self, span: Span) -> float:
        """Return a delay drawn from ``span`` minutes, in seconds, divided by ``speed``."""
        return self.seconds(span) * 60

    def poll(self) -> float:
        """Return seconds until the provider app asks again."""
        return max(MIN_POLL_SECONDS, self.seconds(self.config.poll_seconds))
