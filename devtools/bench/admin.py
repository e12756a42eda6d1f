"""``bench_admin``: every console changelist and change form against its vanilla twin.

Pages are rendered in-process through the full middleware stack with Django's test client, as
a signed-in ops lead, so the numbers are server time (no network). Each page is requested
``repeat`` times after one warm-up; p50/p95 in milliseconds and the SQL query count are kept.
"""

import http.client
import statistics
import time
from dataclasses import dataclass
from importlib import import_module
from urllib.parse import urlsplit

from django.apps import apps
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client, override_settings

from core.timing import percentile
from ops_console import roles
from ops_console.admin_site import ops_site
from oversight import history

MODELS = ("clinical.visit", "clinical.patient", "clinical.provider", "clinical.providerlicense",
          "clinical.visitevent", "support.supportcase", "core.securityevent", "clinical.apiclient")  # fmt: skip


SLOW_PAGE_SECONDS = 2.0


@dataclass
class Page:
    name: str
    path: str  # under the site's root, e.g. "clinical/visit/?status__exact=waiting"
    baseline: bool = True  # False: a page only the tuned console has (its own filters)


@dataclass
class Timing:
    p50_ms: float
    p95_ms: float
    queries: int
    status: int


def bench_user():
    """Return a lead to sign in as (the demo ``lead``, or a dedicated bench user)."""
    user = get_user_model().objects.filter(username="lead", is_active=True).first()
    if user is None:
        user, _ = get_user_model().objects.get_or_create(username="bench-lead", defaults={"is_staff": True})
        user.groups.add(Group.objects.get(name=roles.OPS_LEAD))
    return user


def pages(*, deep_page: int, terms: dict[str, str | None] | None = None) -> list[Page]:
    """Return every page to render: each changelist (default, filters, a search, a deep page) and form.

    ``terms``: what each list's search types (``search_terms()``), by default this data set's own.
    """
    terms = search_terms() if terms is None else terms
    out = []
    for label in MODELS:
        model = apps.get_model(label)
        model_admin = ops_site.get_model_admin(model)
        base = f"{model._meta.app_label}/{model._meta.model_name}/"
        out.append(Page(f"{label} list", base))
        out += [Page(f"{label} filter {name}", f"{base}?{query}") for name, query in _filters(model_admin)]
        out += [Page(f"{label} filter {n}", f"{base}?{q}", baseline=False) for n, q in _own_filters(model_admin)]
        term = terms.get(label)
        if term:
            out.append(Page(f"{label} search", f"{base}?q={term}"))
        page = _last_page_up_to(model_admin, deep_page)
        out.append(Page(f"{label} page {page}", f"{base}?p={page}"))
        sample = model._default_manager.order_by("-pk").values_list("pk", flat=True).first()
        if sample:
            out.append(Page(f"{label} form", f"{base}{sample}/change/"))
    # The statistics pages (issue #16): the live queues with each period of the queue history.
    out += [Page(f"statistics {period}", f"live/?period={period}", baseline=False) for period in STAT_PERIODS]
    return out


STAT_PERIODS = ("1h", "24h", "7d", "30d")


def _last_page_up_to(model_admin, deep_page: int) -> int:
    """Return ``deep_page``, or the list's last page when it has fewer (a page past the end redirects)."""
    rows = model_admin.model._default_manager.count()
    return max(1, min(deep_page, -(-rows // model_admin.list_per_page)))


def _filters(model_admin) -> list[tuple[str, str]]:
    found = []
    for name in model_admin.list_filter:
        if not isinstance(name, str):
            continue
        field = model_admin.model._meta.get_field(name)
        if field.choices:
            found.append((name, f"{name}__exact={field.choices[0][0]}"))
        elif field.get_internal_type() == "BooleanField":
            found.append((name, f"{name}__exact=1"))
    return found


def _own_filters(model_admin) -> list[tuple[str, str]]:
    found = []
    for spec in model_admin.list_filter:
        if isinstance(spec, type) and hasattr(spec, "parameter_name"):
            lookups = spec.lookups(spec, None, model_admin)
            if lookups:
                found.append((spec.parameter_name, f"{spec.parameter_name}={list(lookups)[0][0]}"))
    return found


def search_terms() -> dict[str, str | None]:
    """Return what a support agent types in each list's search box, read from this data set.

    ``--sizes`` reads them on the first data set and types the same words at every size: a
    surname twice as common at one size would otherwise pass for growth.
    """
    return {label: _search_term(label) for label in MODELS}


def _search_term(label: str) -> str | None:
    """Return what a support agent would type for this list: a surname, or a subject word."""
    if label in ("clinical.visit", "clinical.patient"):
        return _latest("clinical_patient", "last_name")
    if label in ("clinical.provider", "clinical.providerlicense"):
        return _latest("clinical_provider", "last_name")
    if label == "support.supportcase":
        return "expired"
    return None


def _latest(table: str, column: str) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} ORDER BY id DESC LIMIT 1")  # noqa: S608 - fixed names
        row = cursor.fetchone()
    return row[0] if row else None


def measure(client: Client, url: str, repeat: int) -> Timing:
    """GET ``url`` once (counting its queries), then ``repeat`` times; return p50/p95 and the count.

    A page that takes more than ``SLOW_PAGE_SECONDS`` (a vanilla form rendering a million
    <option>s) is timed by that first render alone.
    """
    queries = [0]

    def count(execute, sql, params, many, context):
        queries[0] += 1
        return execute(sql, params, many, context)

    started = time.perf_counter()
    with connection.execute_wrapper(count):  # the test client resets connection.queries per request
        status = client.get(url).status_code
    first = (time.perf_counter() - started) * 1000
    if first > SLOW_PAGE_SECONDS * 1000:
        return Timing(round(first, 1), round(first, 1), queries[0], status)
    durations = []
    for _ in range(repeat):
        started = time.perf_counter()
        client.get(url)
        durations.append((time.perf_counter() - started) * 1000)
    durations.sort()
    return Timing(round(percentile(durations, 50), 1), round(percentile(durations, 95), 1), queries[0], status)


def run(
    *,
    repeat: int,
    deep_page: int,
    only: str = "",
    progress=lambda message: None,
    terms: dict | None = None,
    vanilla_repeat: int | None = None,
) -> list[dict]:
    """Render every page through the console and the vanilla baseline; return one row per page.

    ``terms``: the search boxes' words (``search_terms()``; by default this data set's).
    ``vanilla_repeat``: renders of each vanilla twin (``repeat`` by default).
    """
    rows = []
    storages = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    # The bench signs in with force_login: it times pages, not sign-in, so no second factor
    # (with OPS_REQUIRE_2FA every page would time the redirect to the code page instead).
    with override_settings(
        ROOT_URLCONF="devtools.bench.urls",
        ALLOWED_HOSTS=["*"],
        SECURE_SSL_REDIRECT=False,
        STORAGES=storages,
        OPS_REQUIRE_2FA=False,
    ):
        client = Client()
        client.force_login(bench_user())
        chosen = [page for page in pages(deep_page=deep_page, terms=terms) if only in page.name]
        if any(page.path.startswith("live/?period=") for page in chosen):
            # What the oversight worker keeps fresh in production (every OPS_STATS_PROVIDERS_SECONDS):
            # without it, the 24 h, 7 d and 30 d pages would time the ranking they do only when it is stale.
            history.rank_providers()
        for page in chosen:
            progress(page.name)
            ours = measure(client, f"/ops/{page.path}", repeat)
            twin = repeat if vanilla_repeat is None else vanilla_repeat
            vanilla = measure(client, f"/baseline/{page.path}", twin) if page.baseline else None
            rows.append(_row(page, ours, vanilla))
    return rows


def _row(page: Page, ours: Timing, vanilla: Timing | None) -> dict:
    row = {"page": page.name, "ours": ours.__dict__, "vanilla": vanilla.__dict__ if vanilla else None}
    row["ratio_p50"] = round(vanilla.p50_ms / ours.p50_ms, 1) if vanilla and ours.p50_ms else None
    return row


def run_over_http(
    *, base_url: str, repeat: int, deep_page: int, only: str = "", progress=lambda message: None
) -> list[dict]:
    """Time every console page through a running server (``--base-url``), as a signed-in lead.

    The server must read this process's database (same ``DATABASE_URL``): the bench writes the
    lead's session there and sends its cookie. It times what the browser waits for, server and
    protocol included (gunicorn's sync workers, or uvicorn's), so it compares serving set-ups;
    query counts and the vanilla twins are the in-process run's.
    """
    parts = urlsplit(base_url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"--base-url: give http://host:port of a running console, got {base_url!r}.")
    cookie = f"{settings.SESSION_COOKIE_NAME}={_session_for(bench_user())}"
    connection_ = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=30)
    rows = []
    try:
        for page in pages(deep_page=deep_page):
            if only not in page.name:
                continue
            progress(page.name)
            ours = _measure_http(connection_, f"/{settings.OPS_ADMIN_PATH}{page.path}", cookie, repeat)
            rows.append(_row(page, ours, None))
    finally:
        connection_.close()
    return rows


def _session_for(user) -> str:
    session = import_module(settings.SESSION_ENGINE).SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


def _measure_http(conn: http.client.HTTPConnection, path: str, cookie: str, repeat: int) -> Timing:
    def get() -> int:
        conn.request("GET", path, headers={"Cookie": cookie})
        response = conn.getresponse()
        response.read()
        return response.status

    status = get()  # warm-up
    durations = []
    for _ in range(repeat):
        started = time.perf_counter()
        get()
        durations.append((time.perf_counter() - started) * 1000)
    durations.sort()
    return Timing(round(percentile(durations, 50), 1), round(percentile(durations, 95), 1), 0, status)


def median_rounds(rounds: list[list[dict]]) -> list[dict]:
    """Return one row per page from several rounds' rows: each timing the median round's (p50 and p95 apart)."""
    merged = []
    for rows in zip(*rounds, strict=True):
        ours = _median_timing([row["ours"] for row in rows])
        vanilla = _median_timing([row["vanilla"] for row in rows]) if rows[0]["vanilla"] else None
        merged.append(_row(Page(rows[0]["page"], ""), ours, vanilla))
    return merged


def _median_timing(timings: list[dict]) -> Timing:
    return Timing(
        p50_ms=round(statistics.median(timing["p50_ms"] for timing in timings), 1),
        p95_ms=round(statistics.median(timing["p95_ms"] for timing in timings), 1),
        queries=timings[0]["queries"],
        status=timings[0]["status"],
    )


def visit_count() -> int:
    """Return the data set's visits (PostgreSQL's estimate, exact after generate_data's ANALYZE)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'clinical_visit'::regclass")
        return cursor.fetchone()[0]


def size_table(runs: list[dict]) -> dict:
    """Return each page's p50/p95 at every size, its p50 growth from the first size to the last, and vanilla's p50."""
    labels = [_size_label(run["visits"]) for run in runs]
    header = ["page", *(f"{label} p50/p95" for label in labels), "growth", *(f"vanilla {label}" for label in labels)]
    by_page = [{row["page"]: row for row in run["pages"]} for run in runs]
    rows, growths = [header], []
    for page in [row["page"] for row in runs[0]["pages"]]:
        found = [pages.get(page) for pages in by_page]
        if any(row is None for row in found):
            continue
        first, last = found[0]["ours"]["p50_ms"], found[-1]["ours"]["p50_ms"]
        growth = round(last / first, 2) if first else None
        growths.append((growth or 0, page))
        vanilla = [f"{row['vanilla']['p50_ms']}" if row["vanilla"] else "-" for row in found]
        rows.append([page, *(f"{row['ours']['p50_ms']}/{row['ours']['p95_ms']}" for row in found), growth, *vanilla])
    worst_growth, worst_page = max(growths, default=(None, None))
    worst_p95 = [max((row["ours"]["p95_ms"] for row in run["pages"]), default=None) for run in runs]
    return {"sizes": labels, "rows": rows, "worst_p95_ms": worst_p95, "worst_growth": worst_growth,
            "worst_growth_page": worst_page}  # fmt: skip


def _size_label(visits: int) -> str:
    return f"{visits / 1e6:.3g}M" if visits >= 1e6 else f"{visits / 1e3:.3g}k"  # 9,999,155 reads "10M"
