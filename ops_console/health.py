"""``/healthz`` and ``/readyz``, for load balancers and supervisors: JSON, no session, no PHI.

``/healthz`` says the process answers HTTP; it asks nothing else (a supervisor restarts a process
that fails it, and restarting a web process cures no database outage).

``/readyz`` says whether this web instance should get traffic. It answers 503 when it cannot serve
a page: the PostgreSQL primary does not answer, or takes no writes (a standby), or Redis does not
answer (sign-in's lockout counters, the websockets' channel layer). Everything else it reports,
with 200: a replica that is down or lagging (pages read the primary instead), no router leading
(visits wait, but the console is where people see that and act; taking every web instance out of
the load balancer would turn a routing outage into a console outage), the search outbox's backlog
(Elasticsearch behind: search is stale, pages serve), a job that no worker has taken for
``OPS_JOBS_ALERT_SECONDS`` (large license imports wait; pages serve). The body's ``status`` is ``ok``,
``degraded`` (a reported check is not ok) or ``unavailable`` (503).

Every check has ``OPS_HEALTH_TIMEOUT_SECONDS`` (``core.health``): with PostgreSQL, its replica and
Redis all hung, the answer still comes within four times that (8 s by default).

Both answer GET and HEAD (405 otherwise) to anyone: no sign-in, no two-factor
(``ops_console.twofactor.middleware``), no redirect to HTTPS (``SECURE_REDIRECT_EXEMPT``), no
CSRF token, no cookie, no access-log row, and no sample in the slow pages report (it times the
console's and the API's views only).
"""

import logging

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from clinical.routing import lease
from core import health
from core.health import OK, SKIPPED, WARN, Check, Probe

# The checks whose failure takes this instance out of the load balancer (503).
REQUIRED = frozenset({"postgresql", "redis"})
logger = logging.getLogger(__name__)


# Exempt from CSRF only so that a POST gets the 405 below rather than CSRF's 403: nothing is written.
@csrf_exempt
@require_safe
@never_cache
def healthz(request):
    """Answer that the process is alive."""
    return JsonResponse({"status": "ok"})


@csrf_exempt
@require_safe
@never_cache
def readyz(request):
    """Answer whether this instance can serve: 200 with every check, 503 when a required one fails."""
    checks = readiness()
    shown = {name: check.as_json(required=name in REQUIRED) for name, check in checks.items()}
    failing = sorted(name for name in REQUIRED if checks[name].status != OK)
    if failing:
        logger.warning("not ready: %s", "; ".join(f"{name}: {checks[name].reason}" for name in failing))
        return JsonResponse({"status": "unavailable", "checks": shown}, status=503)
    healthy = all(check.status in (OK, SKIPPED) for check in checks.values())
    return JsonResponse({"status": "ok" if healthy else "degraded", "checks": shown})


def readiness() -> dict[str, Check]:
    """Return every check: the primary (and on its connection the router's lease and the outbox), the replica, Redis."""
    timeout = settings.OPS_HEALTH_TIMEOUT_SECONDS
    then = {"router": router_leading, "jobs": health.check_jobs}
    if settings.ELASTICSEARCH_URL:
        then["outbox"] = health.check_outbox
    checks = health.check_primary(timeout=timeout, then=then)
    checks.setdefault("outbox", Check(SKIPPED, "search reads PostgreSQL: nothing is queued for Elasticsearch"))
    primary_lsn = checks["postgresql"].details.get("wal_lsn")
    checks["replica"] = health.check_replica(primary_lsn=primary_lsn, timeout=timeout)
    checks["redis"] = health.check_redis(timeout=timeout)
    return checks


def router_leading(probe: Probe) -> Check:
    """Check a router holds a lease that has not run out by the database's clock."""
    row = probe.fetchone(lease.CURRENT_SQL)
    current = dict(zip(lease.CURRENT_FIELDS, row, strict=True)) if row else None
    if current is None or not current["holder"]:
        return Check(WARN, "no router has led yet: visits are not routed")
    details = {"holder": current["holder"], "epoch": current["epoch"]}
    if not current["live"]:
        return Check(WARN, f"no router leading: {current['holder']}'s lease has run out", details=details)
    return Check(OK, f"{current['holder']} leads", details=details)
