"""Typed readers for settings that come from the environment.

Each helper returns the default when the variable is unset or empty and raises
``ImproperlyConfigured`` naming the variable when its value cannot be parsed.
"""

import os
from urllib.parse import unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def env_str(name: str, default: str | None = None, *, required: bool = False) -> str | None:
    """Return the variable as a string, or raise if it is required and unset."""
    value = _raw(name)
    if value is None and required:
        raise ImproperlyConfigured(f"{name} must be set.")
    return default if value is None else value


def env_bool(name: str, default: bool) -> bool:
    """Return the variable as a boolean (1/0, true/false, yes/no, on/off)."""
    value = _raw(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {value!r}.")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    """Return the variable as an integer, at least ``minimum`` when given."""
    value = _raw(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}.") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {number}.")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    """Return the variable as a comma-separated list with blanks dropped."""
    value = _raw(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    """Return the variable when it is one of ``choices``."""
    value = env_str(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {value!r}.")
    return value


def env_path_prefix(name: str, default: str) -> str:
    """Return a URL path prefix like ``ops/``: no leading slash, one trailing slash."""
    value = env_str(name, default).strip("/")
    if not value or any(ch in value for ch in " ?#"):
        raise ImproperlyConfigured(f"{name} must be a URL path such as 'ops/', got {value!r}.")
    if value.split("/")[0].lower() == "admin":
        raise ImproperlyConfigured(f"{name} must not be served under /admin/, got {value!r}.")
    return value + "/"


def env_database(name: str, default: str) -> dict:
    """Return a Django DATABASES entry parsed from a ``postgres://`` URL."""
    url = env_str(name, default)
    parsed = urlparse(url)
    if parsed.scheme not in ("postgres", "postgresql"):
        raise ImproperlyConfigured(f"{name} must be a postgres:// URL, got scheme {parsed.scheme!r}.")
    database = unquote(parsed.path.lstrip("/"))
    if not database:
        raise ImproperlyConfigured(f"{name} must name a database, e.g. postgres://127.0.0.1/ops_console.")
    try:
        port = parsed.port
    except ValueError:
        raise ImproperlyConfigured(f"{name} has an invalid port.") from None
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": database,
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": parsed.hostname or "",
        "PORT": str(port or ""),
    }


def env_redis_url(name: str, default: str) -> str:
    """Return a ``redis://`` or ``rediss://`` URL."""
    url = env_str(name, default)
    if urlparse(url).scheme not in ("redis", "rediss", "unix"):
        raise ImproperlyConfigured(f"{name} must be a redis:// URL, got {url!r}.")
    return url


def env_networks(name: str, default: list[str]) -> list:
    """Return the variable as a comma-separated list of IP networks (CIDR, or single addresses)."""
    import ipaddress

    networks = []
    for item in env_list(name, default):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ImproperlyConfigured(f"{name} must list IP networks such as 10.0.0.0/8, got {item!r}.") from None
    return networks
