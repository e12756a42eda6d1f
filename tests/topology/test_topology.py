"""The production topology on one machine (``tests.topology.stack``), used through its TLS proxy.

nginx (deploy/nginx/ops-console.conf, a certificate made for this run) in front of two app servers;
a PostgreSQL primary and a hot standby streaming from it (``pg_basebackup -R``); the two routers,
the push relay and the job worker, each started from its systemd unit's command line. The tests
run in order on the one topology, as people would use it: sign in with two-factor, read a list
from the replica, save a license and read it back from the primary, lock out an address, follow a
push over ``wss://``, lose the replica, lose an app server, restart the web servers during an import.

Which server answered a page is read from the servers' own statement logs: each line names the
connection's ``application_name`` (``ops-console/default`` or ``ops-console/replica``).
"""

import csv
import io
import json
import re
import secrets
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest

from ops_console.twofactor import totp
from tests.topology import clusters, stack
from tests.topology.client import Client, form_fields

pytestmark = pytest.mark.topology

ADMIN = "/ops/"  # env.example's OPS_ADMIN_PATH
PASSWORD = "ops-demo-2026"  # the demo seed's (OPS_DEMO_PASSWORD unset)
PRIMARY_APP, REPLICA_APP = "app=ops-console/default", "app=ops-console/replica"


@pytest.fixture(scope="module")
def topology():
    """Build the topology once for the module; tear it down, leaving no process, after."""
    if reason := stack.why_not_available():
        pytest.skip(reason)
    started = time.monotonic()
    directory = Path(tempfile.mkdtemp(prefix="ops-topology-"))
    directory.chmod(0o711)  # the postgres OS user reaches its clusters' directories inside
    primary = clusters.Primary(directory, "primary")
    standby = clusters.Standby(directory, "standby", primary)
    topology = stack.Topology(directory=directory, primary=primary, standby=standby)
    try:
        primary.create()
        topology.configure()
        topology.prepare_database()
        standby.create()
        topology.start_all()
        print(f"\ntopology up in {time.monotonic() - started:.1f} s: {directory}")
        yield topology
    finally:
        left = topology.teardown()
        print(f"\ntopology: {time.monotonic() - started:.1f} s from start to torn down")
        shutil.rmtree(directory, ignore_errors=True)
        assert not left, f"processes left behind: {left}"


def sign_in(topology, username: str, *, source: str = "127.0.0.1") -> Client:
    """Return ``username``'s browser signed in through the proxy (once per person and address).

    A role that needs two-factor sets it up at its first sign-in; the browser then stays signed
    in, as a person's does, rather than spending another code of the same 30 s step.
    """
    key = (username, source)
    if key not in topology.people:
        topology.people[key] = _sign_in(topology, username, source)
    return topology.people[key]


def _sign_in(topology, username: str, source: str) -> Client:
    client = topology.client(source)
    assert client.get(f"{ADMIN}login/").status == 200
    answer = client.post(f"{ADMIN}login/", {"username": username, "password": PASSWORD, "next": ADMIN})
    assert answer.status == 302, answer.body[:2000]
    page = client.follow(answer)
    if "two-factor-secret" in page.body:
        secret = re.search(r'id="two-factor-secret">([^<]+)<', page.body).group(1).replace(" ", "")
        done = client.post(f"{ADMIN}two-factor/setup/", {"code": totp.code_at(secret, time.time()), "next": ADMIN})
        assert done.status == 200 and "backup codes" in done.body.lower(), done.body[:2000]
    return client


def until_write_mark_expires(topology, client: Client) -> None:
    """Wait until the person's last POST no longer sends their reads to the primary (read-your-writes)."""
    topology.wait_until(lambda: not topology.redis().keys("ops:replica:wrote:*"), "read-your-writes expiring")


def served_by(cluster: clusters.Cluster, term: str) -> set[str]:
    """Return the application names of the connections that ran a SELECT naming ``term`` on ``cluster``."""
    lines = [line for line in cluster.statements(term) if re.search(r"statement: (WITH|SELECT)\b", line)]
    print("\n".join(line[:400] for line in lines))
    return {re.search(r"app=\S+", line).group(0) for line in lines}


# --- the tests, in order --------------------------------------------------------------------------


def test_it_serves_https_only_with_hsts_behind_the_proxy(topology):
    plain = topology.client()
    redirect = plain.get(f"http://{stack.HOST}:{topology.http_port}{ADMIN}")
    assert redirect.status == 301 and redirect.headers["Location"].startswith(f"https://{stack.HOST}")
    assert plain.get(f"http://{stack.HOST}:{topology.http_port}/healthz").status == 200  # for a load balancer

    page = plain.get(f"{ADMIN}login/")
    assert page.status == 200
    assert page.headers.get_all("Strict-Transport-Security") == ["max-age=31536000; includeSubDomains; preload"]
    assert re.fullmatch(r"[0-9a-f]{32}", page.headers["X-Request-ID"])  # nginx's $request_id, kept by the app
    assert plain.cookie("csrftoken").secure
    ready = topology.wait_until(lambda: (body := plain.get("/readyz").json())["status"] == "ok" and body, "/readyz ok")
    statuses = {name: check["status"] for name, check in ready["checks"].items()}
    assert statuses == {
        "postgresql": "ok", "replica": "ok", "redis": "ok", "router": "ok", "jobs": "ok", "outbox": "skipped",
    }  # fmt: skip


def test_it_signs_in_with_two_factor_through_the_proxy(topology):
    client = sign_in(topology, "clinops", source="127.0.0.2")
    assert client.cookie("sessionid").secure
    assert client.get(ADMIN).status == 200


def test_it_reads_a_list_from_the_replica(topology):
    client = sign_in(topology, "support", source="127.0.0.2")
    until_write_mark_expires(topology, client)
    [(last_name,)] = topology.query("SELECT last_name FROM clinical_patient ORDER BY id LIMIT 1")
    term = f"{last_name.lower()}"

    page = client.get(f"{ADMIN}clinical/patient/?q={term}")

    assert page.status == 200 and last_name in page.body
    assert REPLICA_APP in served_by(topology.standby, term)
    assert PRIMARY_APP not in served_by(topology.primary, term)
    live = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ops-console/replica'"
    assert topology.standby.query(live)[0][0] >= 1  # the console's connections are on the standby itself


def test_it_saves_a_license_and_reads_it_back_from_the_primary(topology):
    client = sign_in(topology, "clinops", source="127.0.0.2")
    [(license_id, npi)] = topology.query(
        "SELECT l.id, p.npi FROM clinical_providerlicense l JOIN clinical_provider p ON p.id = l.provider_id "
        "ORDER BY l.id LIMIT 1"
    )
    url = f"{ADMIN}clinical/providerlicense/{license_id}/change/"
    note = f"checked by phone {secrets.token_hex(4)}"
    fields = {**form_fields(client.get(url).body, "providerlicense_form"), "notes": note, "_save": "Save"}

    saved = client.post(url, fields)

    assert saved.status == 302, saved.body[:3000]
    assert topology.redis().keys("ops:replica:wrote:*")  # still inside the read-your-writes window
    listed = client.get(f"{ADMIN}clinical/providerlicense/?q={npi}")
    assert listed.status == 200
    assert PRIMARY_APP in served_by(topology.primary, npi) and REPLICA_APP not in served_by(topology.standby, npi)
    assert note in client.get(url).body  # a form reads the primary
    assert topology.query("SELECT notes FROM clinical_providerlicense WHERE id = %s", (license_id,)) == [(note,)]


def test_it_logs_the_real_client_address_not_the_proxys_nor_a_forged_one(topology):
    client = sign_in(topology, "support", source="127.0.0.2")
    [(patient_id,)] = topology.query("SELECT id FROM clinical_patient ORDER BY id DESC LIMIT 1")

    forged = {"X-Forwarded-For": "198.51.100.7"}  # nginx appends the address it saw; the app reads that one
    page = client.request("GET", f"{ADMIN}clinical/patient/{patient_id}/change/", headers=forged)

    assert page.status == 200
    request_id = page.headers["X-Request-ID"]
    rows = topology.query("SELECT host(ip), kind FROM support_accesslog WHERE request_id = %s", (request_id,))
    assert rows and {ip for ip, _ in rows} == {"127.0.0.2"}, rows
    assert f"request_id={request_id}" in (topology.directory / "ops-console.access.log").read_text()


def test_it_locks_out_the_address_that_guessed_not_everyone_behind_the_proxy(topology):
    guesser = topology.client("127.0.0.3")
    guesser.get(f"{ADMIN}login/")
    for _ in range(5):  # OPS_LOGIN_MAX_FAILURES
        answer = guesser.post(f"{ADMIN}login/", {"username": "no-such-user", "password": "wrong", "next": ADMIN})
        assert answer.status == 200

    refused = guesser.post(f"{ADMIN}login/", {"username": "engineer", "password": PASSWORD, "next": ADMIN})

    assert refused.status == 200 and "Too many failed sign-ins" in refused.body
    failures = topology.query("SELECT DISTINCT host(ip) FROM support_securityevent WHERE kind = 'sign_in_failed'")
    assert failures == [("127.0.0.3",)], failures
    assert sign_in(topology, "engineer", source="127.0.0.4").get(ADMIN).status == 200


def test_it_pushes_a_visit_over_wss_through_the_proxy(topology):
    [(mrn,)] = topology.query(
        "SELECT mrn FROM clinical_patient p WHERE NOT EXISTS (SELECT 1 FROM clinical_visit v WHERE v.patient_id = p.id "
        "AND v.status IN ('waiting', 'offered', 'accepted', 'connecting', 'in_progress')) ORDER BY id LIMIT 1"
    )
    token = topology.manage("create_api_client", "--name", "app", "--scope", "patient", "--patient", mrn).strip()
    app = topology.client("127.0.0.5")
    with app.websocket("/ws/v1/", additional_headers={"Authorization": f"Bearer {token}"}) as socket:
        hello = json.loads(socket.recv(timeout=10))
        assert hello["type"] == "hello" and hello["scope"] == "patient"
        created = app.request(
            "POST", "/api/v1/visits", data=json.dumps({"located_state": "CA", "reason": "topology"}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )  # fmt: skip
        assert created.status == 201, created.body
        visit_id = created.json()["id"]
        deadline = time.monotonic() + 10
        while True:
            message = json.loads(socket.recv(timeout=max(deadline - time.monotonic(), 0.1)))
            if message["type"] == "visit" and message["visit"]["id"] == visit_id:
                break
        assert message["version"] > 0 and message["event"]["to"] == "waiting"


def test_it_serves_pages_from_the_primary_while_the_replica_is_down(topology):
    client = sign_in(topology, "support", source="127.0.0.2")
    until_write_mark_expires(topology, client)
    topology.standby.stop()
    try:
        term = "zzreplicadown"
        topology.wait_until(lambda: _replica_check(client) == "warn", "/readyz saying the replica is down")
        ready = client.get("/readyz")
        assert ready.status == 200 and ready.json()["status"] == "degraded"

        page = client.get(f"{ADMIN}clinical/patient/?q={term}")

        assert page.status == 200
        assert PRIMARY_APP in served_by(topology.primary, term)
    finally:
        topology.standby.start()
    topology.standby.wait_caught_up()
    topology.wait_until(lambda: _replica_check(client) == "ok", "/readyz saying the replica is back")


def _replica_check(client: Client) -> str:
    return client.get("/readyz").json()["checks"]["replica"]["status"]


def test_it_fails_over_to_the_other_app_server(topology):
    client = sign_in(topology, "support", source="127.0.0.2")
    access_log = topology.directory / "ops-console.access.log"
    seen = len(access_log.read_text().splitlines())
    dead, alive = (f"127.0.0.1:{port}" for port in topology.web_ports.values())
    topology.stop("web-1", signal.SIGKILL)  # a crash: no graceful shutdown
    try:
        answers = [client.get(ADMIN).status for _ in range(10)]
        assert answers == [200] * 10
        assert client.get("/readyz").status == 200
        lines = access_log.read_text().splitlines()[seen:]
        assert any(f"upstream={dead}, {alive} upstream_status=502, 200" in line for line in lines), "\n".join(lines)
    finally:
        topology.start_web("web-1")
    port = topology.web_ports["web-1"]
    topology.wait_until(lambda: topology.answers(f"http://{stack.HOST}:{port}/healthz"), "web-1 back")


def _license_file(topology, note: str) -> tuple[bytes, int]:
    """Return every license on record as a license file with a new note, and its row count."""
    rows = topology.query(
        "SELECT p.npi, l.state, l.license_number, l.license_type, l.status, l.issued_on, l.expires_on "
        "FROM clinical_providerlicense l JOIN clinical_provider p ON p.id = l.provider_id ORDER BY l.id"
    )
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["NPI", "State", "License number", "License type", "Status", "Issued on", "Expires on", "Notes"])
    writer.writerows([*row[:5], row[5].isoformat(), row[6].isoformat() if row[6] else "", note] for row in rows)
    return out.getvalue().encode(), len(rows)


def test_it_finishes_a_background_import_once_across_web_restarts(topology):
    client = sign_in(topology, "clinops", source="127.0.0.2")
    note = f"board file {secrets.token_hex(4)}"
    data, rows = _license_file(topology, note)
    assert len(data) > int(stack.TEST_SETTINGS["IMPORT_BACKGROUND_BYTES"])
    page = f"{ADMIN}clinical/providerlicense/import/"
    client.get(page)

    uploaded = client.post(page, {}, files={"file": ("board.csv", data)})
    assert uploaded.status == 302, uploaded.body[:2000]
    job = uploaded.headers["Location"]
    restart_web(topology)
    progress = topology.wait_until(lambda: _finished(client, job), "the check", timeout=120)
    assert progress["phase"] == "previewed", progress

    confirmed = client.post(f"{job}confirm/", {})
    assert confirmed.status == 302
    restart_web(topology)
    progress = topology.wait_until(lambda: _finished(client, job), "the apply", timeout=120)

    assert progress["phase"] == "done", progress
    assert f"0 new, {rows} updated" in client.get(job).body
    assert topology.query("SELECT count(*) FROM clinical_providerlicense WHERE notes = %s", (note,)) == [(rows,)]
    history = "SELECT count(*) FROM clinical_historicalproviderlicense WHERE history_change_reason = 'import board.csv'"
    assert topology.query(history) == [(rows,)]  # applied once: one history record per license


def _finished(client: Client, job: str) -> dict | None:
    answer = client.get(f"{job}progress/")
    return answer.json() if answer.status == 200 and answer.json()["finished"] else None


def restart_web(topology) -> None:
    """Restart both app servers one after the other, as a deploy does; wait until each answers."""
    for name, port in topology.web_ports.items():
        topology.stop(name)
        topology.start_web(name)
        topology.wait_until(lambda port=port: topology.answers(f"http://{stack.HOST}:{port}/healthz"), f"{name} back")


def test_it_kept_every_process_running_with_one_router_leading(topology):
    topology.check_running()
    routers = topology.query(
        "SELECT name, is_leader FROM clinical_routerhealth WHERE seen_at > now() - interval '5 seconds' ORDER BY name"
    )
    assert [name for name, _ in routers] == ["router-1", "router-2"]
    assert sum(leader for _, leader in routers) == 1
