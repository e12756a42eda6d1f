"""simulate_traffic's set-up and clean-up, its only database access: who it plays, and its API clients."""

from __future__ import annotations

import logging
import random
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import connection, transaction
from django.db.models.functions import Mod
from django.utils import timezone

from clinical.actions import api_clients as api_client_actions
from clinical.models import OPEN_STATUSES, ApiClient, ApiScope, Availability, Patient, Provider, ProviderLicense, Visit
from core.audit import Actor

if TYPE_CHECKING:
    from devtools.simulate import SimConfig

ACTOR = Actor.system("simulate_traffic")
logger = logging.getLogger(__name__)


@dataclass
class Session:
    """The API clients, providers and patients one run plays; the clients are revoked at the end."""

    run_id: str
    patient_tokens: dict[str, str]  # MRN -> the token of the patient app acting for that patient
    provider_tokens: list[tuple[str, str]]  # (NPI, token)
    mrns: list[str]
    states: list[str]  # where patients may be located; empty means anywhere
    clients: list[ApiClient]
    revoked: int = 0


def _share(queryset, part: tuple[int, int]):
    """Return the rows of ``queryset`` in part K of N (by id): simulations side by side play different people."""
    k, n = part
    return queryset if n == 1 else queryset.alias(part=Mod("pk", n)).filter(part=k)


def providers_to_play(count: int, rng: random.Random, part: tuple[int, int] = (0, 1)) -> list[Provider]:
    """Return up to ``count`` active providers licensed somewhere today, those not holding a visit first."""
    licensed = ProviderLicense.objects.valid_at().values("provider_id")
    candidates = list(
        _share(Provider.objects.filter(is_active=True, pk__in=licensed), part)
        .only("npi", "availability")
        .order_by("pk")
    )
    rng.shuffle(candidates)
    candidates.sort(key=lambda provider: provider.availability in (Availability.RESERVED, Availability.BUSY))
    return candidates[:count]


def patient_pool(rng: random.Random, size: int, part: tuple[int, int] = (0, 1)) -> list[Patient]:
    """Return the patients who will request visits (none with a visit open now)."""
    busy = Visit.objects.filter(status__in=OPEN_STATUSES).values("patient_id")
    patients = list(_share(Patient.objects.exclude(pk__in=busy), part).order_by("pk").only("mrn")[: size * 2])
    rng.shuffle(patients)
    return patients[:size]


@transaction.atomic
def open_session(config: SimConfig) -> Session:
    """Choose providers and patients and create this run's API clients (tokens are shown only once)."""
    rng = random.Random(config.seed)
    run_id = f"{timezone.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
    players = providers_to_play(config.providers, rng, config.part)
    clients, provider_tokens, patient_tokens = [], [], {}
    for patient in patient_pool(rng, config.patients, config.part):
        client, token = api_client_actions.create_api_client(
            name=f"sim-patient-{patient.mrn}-{run_id}", scope=ApiScope.PATIENT, patient=patient, actor=ACTOR
        )
        clients.append(client)
        patient_tokens[patient.mrn] = token
    for provider in players:
        client, token = api_client_actions.create_api_client(
            name=f"sim-provider-{provider.npi}-{run_id}", scope=ApiScope.PROVIDER, provider=provider, actor=ACTOR
        )
        clients.append(client)
        provider_tokens.append((provider.npi, token))
    mrns = list(patient_tokens)
    return Session(run_id, patient_tokens, provider_tokens, mrns, _covered_states(config, players), clients)


def _covered_states(config: SimConfig, players: list[Provider]) -> list[str]:
    if config.states:
        return sorted(config.states)
    if config.all_states or not players:
        return []
    licenses = ProviderLicense.objects.valid_at().filter(provider__in=players)
    return sorted(set(licenses.values_list("state", flat=True)))


def close_session(session: Session) -> int:
    """Revoke the run's API clients; return how many were revoked."""
    for client in session.clients:
        api_client_actions.revoke_api_client(client, actor=ACTOR, reason=f"simulation {session.run_id} ended")
        session.revoked += 1
    return session.revoked


@contextmanager
def session_for(config: SimConfig) -> Iterator[Session]:
    """Open a session and revoke its clients on the way out, however the run ends."""
    session = open_session(config)
    try:
        yield session
    finally:
        # The run only talks HTTP: the connection opened at the start may have died meanwhile
        # (a PostgreSQL restart), so revoke over a fresh one then.
        if connection.connection is not None and not connection.in_atomic_block and not connection.is_usable():
            connection.close()
        close_session(session)
