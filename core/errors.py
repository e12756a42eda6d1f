"""Errors that actions raise for callers to show: admin messages, API 400/409 responses."""

from django.core.exceptions import ValidationError


class ActionError(Exception):
    """A write refused for a reason the caller can show.

    ``field`` names the input at fault; ``code`` is a short machine-readable reason the API answers with.
    """

    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.field = field
        if code:
            self.code = code


class IllegalTransition(ActionError):
    """The change is not legal in the record's current state (HTTP 409)."""

    code = "conflict"


class Fenced(IllegalTransition):
    """A router wrote with a lease epoch that is no longer current: another router leads now."""

    code = "fenced"


def full_clean_or_raise(instance, **kwargs) -> None:
    """Run model validation and raise ``ActionError`` naming the first field at fault."""
    try:
        instance.full_clean(**kwargs)
    except ValidationError as error:
        if hasattr(error, "error_dict"):
            field, messages = next(iter(error.message_dict.items()))
            field = None if field == "__all__" else field
            raise ActionError(f"{field or 'record'}: {' '.join(messages)}", field=field) from None
        raise ActionError(" ".join(error.messages)) from None
