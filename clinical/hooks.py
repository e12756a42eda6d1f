"""Hooks other apps register to act inside clinical's transactions; clinical imports none of them.

``visit_needs_attention`` runs when the router ends a visit by timeout (it expired waiting, or
failed while accepted, connecting or in progress). ``support`` registers the handler that opens a
routing case (``support.apps``), in the same transaction as the visit's change.
"""

from collections.abc import Callable

from core.audit import Actor

AttentionHandler = Callable[..., None]
_attention: list[AttentionHandler] = []


def on_visit_needs_attention(handler: AttentionHandler) -> None:
    """Register ``handler(visit, *, actor, subject, note)``."""
    if handler not in _attention:
        _attention.append(handler)


def visit_needs_attention(visit, *, actor: Actor, subject: str, note: str) -> None:
    """Tell every registered handler, in the caller's transaction, that ``visit`` needs a person."""
    if not _attention:
        raise RuntimeError("No handler registered for a visit that needs attention: is the support app installed?")
    for handler in _attention:
        handler(visit, actor=actor, subject=subject, note=note)
