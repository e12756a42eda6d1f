"""The production files in deploy/, read as their programs read them, for the tests that use them.

The systemd units' command lines and environments (with their specifiers filled in), env.example's
settings (secrets filled in), and the nginx site with its host name, certificate, ports, static
root and log directory replaced by a test's own. Nothing else is changed: what a test runs is what
production runs.
"""

import configparser
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
SITE = DEPLOY / "nginx" / "ops-console.conf"
ENV_EXAMPLE = DEPLOY / "env.example"
INSTALL_DIR = "/opt/ops-console"
SITE_HOST = "ops.example.com"
SITE_UPSTREAMS = ("127.0.0.1:8001", "127.0.0.1:8002")
SITE_STATIC = "/opt/ops-console/staticfiles/"
SITE_TLS = "/etc/ops-console/tls/"
SITE_LOGS = "/var/log/nginx/"


def unit(path: Path) -> configparser.ConfigParser:
    """Return a systemd unit file parsed (its keys keep their case)."""
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # systemd's keys are case-sensitive
    parser.read_string(path.read_text())
    return parser


def exec_start(path: Path, *, instance: str = "", host: str = "app-1", env: dict[str, str] | None = None) -> list[str]:
    """Return the unit's command line as systemd would run it for ``instance`` on ``host``, from this checkout.

    ``%i`` and ``%H`` are filled in, the install directory is this checkout (its virtualenv the
    running Python's), and ``${NAME}`` is taken from ``env`` when given.
    """
    line = unit(path)["Service"]["ExecStart"].replace("\\\n", " ").replace("%i", instance).replace("%H", host)
    line = line.replace(f"{INSTALL_DIR}/.venv/bin/", f"{Path(sys.executable).parent}/").replace(INSTALL_DIR, str(ROOT))
    if env is not None:
        line = re.sub(r"\$\{([A-Z][A-Z0-9_]*)\}", lambda match: env[match.group(1)], line)
    return shlex.split(line)


def unit_environment(path: Path) -> dict[str, str]:
    """Return the variables the unit's ``Environment=`` line sets."""
    line = unit(path)["Service"].get("Environment", "")
    return dict(item.split("=", 1) for item in shlex.split(line))


def example() -> dict[str, str | None]:
    """Return every name in env.example: its value when set, None when only listed (commented out)."""
    names: dict[str, str | None] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if match := re.match(r"^(#?)([A-Z][A-Z0-9_]*)=(.*)$", line):
            commented, name, value = match.groups()
            assert name not in names, f"{name} twice in env.example"
            names[name] = None if commented else value
    return names


def production_env() -> dict[str, str]:
    """Return env.example's set values with the secrets filled in: a production environment."""
    env = {name: value for name, value in example().items() if value is not None}
    env["DJANGO_SECRET_KEY"] = secrets.token_urlsafe(50)[:50]
    env["OPS_FIELD_KEY"] = Fernet.generate_key().decode()
    return {name: value.replace("CHANGE_ME", secrets.token_hex(8)) for name, value in env.items()}


def make_certificate(directory: Path, host: str) -> tuple[Path, Path]:
    """Make a self-signed certificate for ``host`` with openssl; return (certificate, key) paths."""
    certificate, key = directory / "fullchain.pem", directory / "privkey.pem"
    openssl = shutil.which("openssl") or "/usr/bin/openssl"
    subprocess.run(  # noqa: S603 - a throwaway certificate, made for one test
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={host}",
         "-addext", f"subjectAltName=DNS:{host}", "-keyout", str(key), "-out", str(certificate)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return certificate, key


def nginx_site(
    *, directory: Path, host: str = SITE_HOST, upstreams: tuple[str, ...] = SITE_UPSTREAMS,
    static_root: str = SITE_STATIC, http_port: int = 80, https_port: int = 443, ipv6: bool = True,
) -> str:  # fmt: skip
    """Return the nginx site with a test's host name, app servers, ports and static root.

    The certificate and key are ``directory``'s (``make_certificate``), the access log goes there.
    """
    site = SITE.read_text()
    assert all(upstream in site for upstream in SITE_UPSTREAMS), "the site's upstream servers moved"
    for production, test in zip(SITE_UPSTREAMS, upstreams, strict=True):
        site = site.replace(f"server {production} ", f"server {test} ")
    site = site.replace(SITE_HOST, host).replace(SITE_TLS, f"{directory}/").replace(SITE_LOGS, f"{directory}/")
    site = site.replace(SITE_STATIC, static_root.rstrip("/") + "/")
    site = re.sub(r"listen (\[::\]:)?80\b", lambda match: f"listen {match.group(1) or ''}{http_port}", site)
    site = re.sub(r"listen (\[::\]:)?443\b", lambda match: f"listen {match.group(1) or ''}{https_port}", site)
    if not ipv6:
        site = re.sub(r"(?m)^\s*listen \[::\]:.*\n", "", site)
    return site


def nginx_main(*, directory: Path, site: Path, daemon: bool = False) -> str:
    """Return an nginx main configuration that includes ``site``, with every path under ``directory``.

    As root, the workers run as root too: the test's directories are private to it.
    """
    temp = "\n".join(
        f"    {kind}_temp_path {directory}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;\n" if os.geteuid() == 0 else ""
    return (
        f"{user}daemon {'on' if daemon else 'off'};\nworker_processes 2;\npid {directory}/nginx.pid;\n"
        f"error_log {directory}/error.log;\nevents {{}}\n"
        f"http {{\n    include /etc/nginx/mime.types;\n{temp}\n    include {site};\n}}\n"
    )
