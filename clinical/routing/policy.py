"""Fairness policies: among eligible providers for a state, who gets the next offer.

Each policy returns a sort key; the router offers each visit to the first eligible provider
in that order. Keys are computed once per matching pass.
"""

from collections.abc import Callable

LONGEST_IDLE = "longest_idle"
SCARCITY_AWARE = "scarcity_aware"
POLICIES = (LONGEST_IDLE, SCARCITY_AWARE)

SortKey = Callable[[int, float, list[str]], tuple]


def sort_key(policy: str, *, states_with_waiting: set[str]) -> SortKey:
    """Return the ordering key ``(provider_id, available_since, licensed_states) -> tuple``."""
    if policy == LONGEST_IDLE:
        # Twilio TaskRouter's default: whoever has been idle longest goes first.
        return lambda provider, since, licensed: (since, provider)
    if policy == SCARCITY_AWARE:
        # Keep multi-state providers free for the states only they can serve: prefer the
        # provider whose licenses cover the fewest states where patients are waiting.
        def key(provider, since, licensed):
            return (sum(1 for state in licensed if state in states_with_waiting), since, provider)

        return key
    raise ValueError(f"Unknown routing policy {policy!r}; choose one of {', '.join(POLICIES)}.")
