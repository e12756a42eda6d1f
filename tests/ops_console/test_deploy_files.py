"""The production files in deploy/: systemd units, the nginx site and the environment file.

Each unit parses, is hardened and supervised, and starts a command that exists with arguments it
accepts; systemd-analyze and Debian's nginx check their files when installed (skipped, saying so,
otherwise); env.example names exactly the settings the code reads, and with it `check --deploy`
is clean.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import get_commands, load_command_class

from tests.topology import deploy
from tests.topology.deploy import DEPLOY, INSTALL_DIR, ROOT, SITE, UNITS, exec_start, production_env, unit

# Two instances of each template unit, as README's "Running at scale" enables them.
INSTANCES = {"ops-console-router@.service": "router-1", "ops-console-oversight@.service": "oversight-1"}
# Read by settings.py but never set in production: the demo seed's password, a test-only clock skew.
NOT_FOR_PRODUCTION = {"OPS_DEMO_PASSWORD", "ROUTING_TEST_CLOCK_SKEW_SECONDS"}
# Read by gunicorn itself (its number of workers), not by the console.
GUNICORN_READS = {"WEB_CONCURRENCY"}
# Added with the durable jobs (issue #17); until then the job worker's unit names a command to come.
COMING = {"run_jobs"}


def _exec_start(path: Path) -> list[str]:
    """Return the unit's command line, its specifiers filled in as systemd would for one instance."""
    return exec_start(path, instance=INSTANCES.get(path.name, ""))


def _settings_read() -> set[str]:
    """Return the environment variables ops_console/settings.py reads."""
    source = (ROOT / "ops_console" / "settings.py").read_text()
    return set(re.findall(r"\benv_[a-z_]+\(\s*\"([A-Z][A-Z0-9_]*)\"", source))


def _units_read() -> set[str]:
    return {name for unit in UNITS for name in re.findall(r"\$\{([A-Z][A-Z0-9_]*)\}", unit.read_text())}


@pytest.mark.parametrize("path", UNITS, ids=lambda path: path.name)
def test_it_runs_each_service_hardened_and_supervised(path):
    parsed = unit(path)
    service = parsed["Service"]

    assert parsed["Unit"]["Description"]
    assert parsed["Unit"]["PartOf"] == "ops-console.target"
    assert parsed["Install"]["WantedBy"] == "ops-console.target"
    assert service["EnvironmentFile"] == "/etc/ops-console/env"
    assert service["User"] == service["Group"] == "ops-console"
    assert service["WorkingDirectory"] == INSTALL_DIR
    assert service["Restart"] == "always"
    assert service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"]) > 0
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["PrivateTmp"] == "yes"


def test_it_groups_every_unit_in_the_target():
    target = unit(DEPLOY / "systemd" / "ops-console.target")

    assert target["Install"]["WantedBy"] == "multi-user.target"
    assert {path.name for path in UNITS} == {
        "ops-console-web.service",
        "ops-console-router@.service",
        "ops-console-oversight@.service",
        "ops-console-push-relay.service",
        "ops-console-search-worker.service",
        "ops-console-jobs.service",
    }


@pytest.mark.parametrize("path", [unit for unit in UNITS if "manage.py" in unit.read_text()], ids=lambda p: p.name)
def test_it_starts_a_management_command_that_exists_with_its_arguments(path):
    python, manage, name, *args = _exec_start(path)
    assert (python, manage) == (f"{ROOT}/.venv/bin/python", "manage.py")
    commands = get_commands()
    if name in COMING and name not in commands:
        pytest.xfail(f"manage.py {name} comes with the durable jobs (issue #17)")
    assert name in commands, f"manage.py {name}: no such command"

    command = load_command_class(commands[name], name)
    command.create_parser("manage.py", name).parse_args(args)  # exits (fails the test) on a bad argument


def test_it_starts_gunicorn_with_a_configuration_it_accepts(tmp_path):
    web = DEPLOY / "systemd" / "ops-console-web.service"
    command = [arg.replace("${OPS_WEB_BIND}", "127.0.0.1:8001") for arg in _exec_start(web)]
    env = {**production_env(), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}

    done = subprocess.run(  # noqa: S603 - the unit's own command line
        [*command, "--check-config"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stdout + done.stderr


def test_it_passes_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not installed (Debian's systemd package)")
    env_file = tmp_path / "env"
    env_file.write_text("")
    names = []
    for path in [*UNITS, DEPLOY / "systemd" / "ops-console.target"]:
        name = path.name.replace("@.", f"@{INSTANCES[path.name]}.") if path.name in INSTANCES else path.name
        text = path.read_text().replace(INSTALL_DIR, str(ROOT)).replace("/etc/ops-console/env", str(env_file))
        (tmp_path / name).write_text(text)
        names.append(f"./{name}")

    done = subprocess.run(  # noqa: S603 - systemd's own checker
        [analyze, "verify", "--man=no", *names], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == "", "every directive known and valid"


def test_it_passes_nginx_config_test(tmp_path):
    nginx, openssl = shutil.which("nginx") or "/usr/sbin/nginx", shutil.which("openssl")
    if not Path(nginx).exists():
        pytest.skip("nginx is not installed (`apt-get install nginx`: Debian's)")
    if not openssl:
        pytest.skip("openssl is not installed: no certificate for the test")
    deploy.make_certificate(tmp_path, "ops.example.com")
    site = SITE.read_text().replace("/etc/ops-console/tls/", f"{tmp_path}/").replace("/var/log/nginx/", f"{tmp_path}/")
    (tmp_path / "ops-console.conf").write_text(site)
    main = deploy.nginx_main(directory=tmp_path, site=tmp_path / "ops-console.conf", daemon=True)
    (tmp_path / "nginx.conf").write_text(main)

    done = subprocess.run(  # noqa: S603 - nginx's own checker
        [nginx, "-t", "-p", f"{tmp_path}/", "-c", tmp_path / "nginx.conf"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert "[warn]" not in done.stderr, done.stderr


def test_it_takes_the_largest_license_file_at_the_proxy():
    from django.conf import settings

    [limit] = re.findall(r"client_max_body_size (\d+)m;", SITE.read_text())

    assert settings.IMPORT_MAX_MB < int(limit) <= settings.IMPORT_MAX_MB + 2


def test_it_names_only_settings_the_code_reads():
    unknown = set(deploy.example()) - _settings_read() - _units_read() - GUNICORN_READS

    assert not unknown, f"env.example names what nothing reads: {sorted(unknown)}"


def test_it_lists_every_production_setting():
    missing = _settings_read() - NOT_FOR_PRODUCTION - set(deploy.example())

    assert not missing, f"env.example lacks {sorted(missing)}"


def test_it_passes_the_deploy_check_with_the_example_settings(tmp_path):
    env = {**production_env(), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    assert env["DJANGO_DEBUG"] == "0" and env["OPS_HTTPS"] == "1"

    done = subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip

    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout
