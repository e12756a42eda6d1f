"""Two-factor sign-in (TOTP, RFC 6238) for the console's editing roles.

``policy`` says who needs it and whether this session has passed it, ``totp`` computes codes,
``actions`` writes devices (audited), ``middleware`` refuses every console page until the code
is given, and ``views`` are the setup and verify pages. Only with ``OPS_REQUIRE_2FA`` on.
"""
