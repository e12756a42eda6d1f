"""The client's address, as the last trusted proxy saw it.

Behind a TLS proxy ``REMOTE_ADDR`` is the proxy's address. When it is one of
``OPS_TRUSTED_PROXIES``, ``X-Forwarded-For`` is read from right to left, past every trusted proxy,
and the first address that is not one is the client's. A header arriving from any other address
is ignored: a client cannot name itself someone else. The sign-in lockout, the API rate limits, the
PHI access log and security events all use this address.
"""

import ipaddress

from django.conf import settings

_CACHE = "_ops_client_ip"


def _trusted(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in settings.OPS_TRUSTED_PROXIES)


def client_ip(request) -> str:
    """Return the client's address for ``request`` (``""`` if unknown)."""
    cached = request.__dict__.get(_CACHE)
    if cached is not None:
        return cached
    address = request.META.get("REMOTE_ADDR") or ""
    if _trusted(address):
        for hop in reversed(request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")):
            hop = hop.strip()
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                break  # a malformed hop: trust nothing further left
            address = hop
            if not _trusted(hop):
                break
    request.__dict__[_CACHE] = address
    return address
