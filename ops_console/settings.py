"""Settings for Ops Console, read from the environment (see README.md#settings)."""

import logging
import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from core.env import (
    env_bool,
    env_choice,
    env_database,
    env_int,
    env_list,
    env_networks,
    env_path_prefix,
    env_redis_url,
    env_str,
)
from core.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent


def _load_dotenv(path: Path) -> None:
    """Read KEY=VALUE lines from the local, git-ignored .env without overriding the environment."""
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.strip().startswith("#"):
            os.environ.setdefault(key.strip(), value.strip())


_load_dotenv(BASE_DIR / ".env")

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off "
            "(`make run` writes a local one to .env on first run)."
        )
    SECRET_KEY = "django-insecure-debug-only-key"  # noqa: S105 (only with DJANGO_DEBUG on)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
# Encrypts secrets at rest (ops_console/fieldcrypt.py); `make run` writes a local one to .env.
OPS_FIELD_KEY = env_str("OPS_FIELD_KEY")
OPS_FIELD_OLD_KEYS = env_list("OPS_FIELD_OLD_KEYS", [])
if not OPS_FIELD_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "OPS_FIELD_KEY must be set when DJANGO_DEBUG is off (a Fernet key; `make run` writes a local one to .env)."
        )
    OPS_FIELD_KEY = "ZGVidWctb25seS1rZXktZG8tbm90LXVzZS0zMmJ5dGU="  # noqa: S105 (only with DJANGO_DEBUG on)

OPS_ADMIN_PATH = env_path_prefix("OPS_ADMIN_PATH", "ops/")
OPS_HTTPS = env_bool("OPS_HTTPS", True)
OPS_DEBUG_TOOLBAR = env_bool("OPS_DEBUG_TOOLBAR", False)
OPS_DEMO_PASSWORD = env_str("OPS_DEMO_PASSWORD", "ops-demo-2026")
REDIS_URL = env_redis_url("REDIS_URL", "redis://127.0.0.1:6379/0")
ELASTICSEARCH_URL = env_str("ELASTICSEARCH_URL")

# Sign-in and sessions (ops_console/signin.py): see README.md#settings.
OPS_LOGIN_MAX_FAILURES = env_int("OPS_LOGIN_MAX_FAILURES", 5, minimum=1)
OPS_LOGIN_WINDOW_MINUTES = env_int("OPS_LOGIN_WINDOW_MINUTES", 15, minimum=1)
OPS_LOGIN_LOCK_MINUTES = env_int("OPS_LOGIN_LOCK_MINUTES", 15, minimum=1)
OPS_SESSION_IDLE_MINUTES = env_int("OPS_SESSION_IDLE_MINUTES", 15, minimum=1)
# Two-factor sign-in for the editing roles (ops_console/twofactor): on in production.
OPS_REQUIRE_2FA = env_bool("OPS_REQUIRE_2FA", True)

# JSON API (clinical/api): token lifetime, rate limits, probing alerts. See README.md#settings.
OPS_API_TOKEN_DAYS = env_int("OPS_API_TOKEN_DAYS", 90, minimum=1)
API_RATE_PER_TOKEN = env_int("API_RATE_PER_TOKEN", 600, minimum=1)  # requests a minute
API_RATE_PER_ADDRESS = env_int("API_RATE_PER_ADDRESS", 6000, minimum=1)  # requests a minute
API_PROBE_THRESHOLD = env_int("API_PROBE_THRESHOLD", 20, minimum=1)  # 401/403/404 answers in 10 minutes

# Push over websockets (clinical/push, /ws/): the relay's heartbeat; the channel layer on Redis.
OPS_PUSH_HEARTBEAT_SECONDS = env_int("OPS_PUSH_HEARTBEAT_SECONDS", 20, minimum=1)
# Threads per web worker running the console's and the API's HTTP requests (ops_console/asgi.py).
OPS_WEB_THREADS = env_int("OPS_WEB_THREADS", 4, minimum=1)
CHANNEL_LAYERS = {
    "default": {
        # Redis pub/sub: a group message is one PUBLISH, and each web process reads every message
        # for its sockets from one connection as a stream, then hands it to them in memory.
        # channels-redis's list-based layer read one message per Redis round trip, so a server's
        # event loop fell seconds behind at a few hundred messages a second (bench_push: the
        # layer's own delay p50 4.7 s -> 18 ms). Pub/sub keeps nothing for a process that is not
        # connected: a message published while one reconnects to Redis is not delivered, and its
        # sockets' clients catch up by resuming (or by the poll their silence triggers).
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        # redis-py's 5 s default read timeout is too short for a connection that waits; thousands
        # of sockets joining at once (a server restart) need more than its 100 connections.
        "CONFIG": {
            "hosts": [
                {"address": REDIS_URL, "socket_timeout": 15, "socket_connect_timeout": 2, "max_connections": 1000}
            ],
            "prefix": "ops:asgi",
        },
    }
}

# PHI access log: the youngest rows prune_access_log may delete (HIPAA keeps six years).
OPS_ACCESS_LOG_MIN_RETENTION = env_str("OPS_ACCESS_LOG_MIN_RETENTION", "6y")

# Routing worker (clinical/routing): see README.md#routing.
ROUTING_OFFER_TIMEOUT = env_int("ROUTING_OFFER_TIMEOUT", 120, minimum=1)
ROUTING_MAX_WAIT = env_int("ROUTING_MAX_WAIT", 30 * 60, minimum=60)
ROUTING_POLICY = env_choice("ROUTING_POLICY", "longest_idle", ("longest_idle", "scarcity_aware"))
ROUTING_SWEEP_SECONDS = env_int("ROUTING_SWEEP_SECONDS", 5, minimum=1)
ROUTING_REBUILD_SECONDS = env_int("ROUTING_REBUILD_SECONDS", 60, minimum=5)
ROUTING_LEASE_SECONDS = env_int("ROUTING_LEASE_SECONDS", 5, minimum=2)
ROUTING_BATCH_SIZE = env_int("ROUTING_BATCH_SIZE", 200, minimum=1)
# Target waits per priority: past its target a waiting visit moves up the line (aging).
ROUTING_SLA_URGENT = env_int("ROUTING_SLA_URGENT", 120, minimum=1)
ROUTING_SLA_ELEVATED = env_int("ROUTING_SLA_ELEVATED", 600, minimum=1)
ROUTING_SLA_ROUTINE = env_int("ROUTING_SLA_ROUTINE", 30 * 60, minimum=1)
# Queue history (oversight.history): kept this many days, each minute recorded this long after it ends
# (a request committed just after its minute ended still counts in it).
OPS_STATS_DAYS = env_int("OPS_STATS_DAYS", 30, minimum=1)
OPS_STATS_GRACE_SECONDS = env_int("OPS_STATS_GRACE_SECONDS", 5, minimum=0)
# How often the oversight worker ranks the providers' acceptance over 24 hours, 7 and 30 days (the pages
# rank them themselves when the ranking is older than twice this).
OPS_STATS_PROVIDERS_SECONDS = env_int("OPS_STATS_PROVIDERS_SECONDS", 300, minimum=10)
# How often the oversight worker records history, evaluates alerts and sends notifications.
OPS_OVERSIGHT_TICK_SECONDS = env_int("OPS_OVERSIGHT_TICK_SECONDS", 10, minimum=1)
# A provider who declined or ignored a visit may be offered it again after this, if nobody else is free.
ROUTING_REOFFER_AFTER = env_int("ROUTING_REOFFER_AFTER", 10 * 60, minimum=0)
# Accepted or connecting visits that never connect, and visits running past the longest visit, fail.
ROUTING_CONNECT_TIMEOUT = env_int("ROUTING_CONNECT_TIMEOUT", 5 * 60, minimum=10)
ROUTING_MAX_VISIT_MINUTES = env_int("ROUTING_MAX_VISIT_MINUTES", 120, minimum=1)
# Test-only: shift the router process's own clock (soak_routing proves nothing depends on it).
ROUTING_TEST_CLOCK_SKEW_SECONDS = env_int("ROUTING_TEST_CLOCK_SKEW_SECONDS", 0)

# License import (clinical/imports/): see README.md#license-import-and-export.
IMPORT_MAX_MB = env_int("IMPORT_MAX_MB", 20, minimum=1)
IMPORT_MAX_ROWS = env_int("IMPORT_MAX_ROWS", 100_000, minimum=1)
# An .xlsx is a zip: what it may unzip to, and how tightly one part may be packed (a zip bomb).
IMPORT_MAX_UNZIPPED_MB = env_int("IMPORT_MAX_UNZIPPED_MB", 200, minimum=1)
IMPORT_MAX_ZIP_RATIO = env_int("IMPORT_MAX_ZIP_RATIO", 100, minimum=2)
IMPORT_PREVIEW_MINUTES = env_int("IMPORT_PREVIEW_MINUTES", 30, minimum=1)
IMPORT_BACKGROUND_BYTES = env_int("IMPORT_BACKGROUND_BYTES", 256 * 1024, minimum=0)

# Search (search/): see README.md#search. PostgreSQL unless Elasticsearch is configured.
if ELASTICSEARCH_URL and not ELASTICSEARCH_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(f"ELASTICSEARCH_URL must be an http(s):// URL, got {ELASTICSEARCH_URL!r}.")
SEARCH_BACKEND = env_choice(
    "SEARCH_BACKEND", "elasticsearch" if ELASTICSEARCH_URL else "postgres", ("postgres", "elasticsearch")
)
if SEARCH_BACKEND == "elasticsearch" and not ELASTICSEARCH_URL:
    raise ImproperlyConfigured("SEARCH_BACKEND=elasticsearch needs ELASTICSEARCH_URL.")
SEARCH_INDEX_PREFIX = env_str("SEARCH_INDEX_PREFIX", "ops")
SEARCH_ES_TIMEOUT = env_int("SEARCH_ES_TIMEOUT", 5, minimum=1)
SEARCH_MAX_HITS = env_int("SEARCH_MAX_HITS", 1000, minimum=10)
SEARCH_WORKER_BATCH_SIZE = env_int("SEARCH_WORKER_BATCH_SIZE", 500, minimum=1)
SEARCH_WORKER_POLL_SECONDS = env_int("SEARCH_WORKER_POLL_SECONDS", 1, minimum=1)
SEARCH_RETRY_MAX_SECONDS = env_int("SEARCH_RETRY_MAX_SECONDS", 300, minimum=1)
# An outbox entry waiting longer than this opens an alert (oversight.alerts): Elasticsearch is behind.
SEARCH_OUTBOX_ALERT_MINUTES = env_int("SEARCH_OUTBOX_ALERT_MINUTES", 10, minimum=1)

# Alerts (oversight/): who is told of an alert opening, and how hard delivery tries. See README.md#alerts.
OPS_ALERT_EMAILS = env_list("OPS_ALERT_EMAILS", [])  # recipients; no e-mail is sent when empty
# A receiver of one signed JSON POST per alert opening (HMAC-SHA256 with the secret); none when unset.
OPS_ALERT_WEBHOOK_URL = env_str("OPS_ALERT_WEBHOOK_URL")
OPS_ALERT_WEBHOOK_SECRET = env_str("OPS_ALERT_WEBHOOK_SECRET")
if OPS_ALERT_WEBHOOK_URL and not OPS_ALERT_WEBHOOK_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(f"OPS_ALERT_WEBHOOK_URL must be an http(s):// URL, got {OPS_ALERT_WEBHOOK_URL!r}.")
if OPS_ALERT_WEBHOOK_URL and not OPS_ALERT_WEBHOOK_SECRET:
    raise ImproperlyConfigured(
        "OPS_ALERT_WEBHOOK_URL needs OPS_ALERT_WEBHOOK_SECRET (the key its POSTs are signed with)."
    )
OPS_ALERT_WEBHOOK_TIMEOUT = env_int("OPS_ALERT_WEBHOOK_TIMEOUT", 5, minimum=1)  # seconds per POST
# Attempts per notification before giving up; retries wait 10 s, doubling up to the maximum.
OPS_ALERT_DELIVERY_ATTEMPTS = env_int("OPS_ALERT_DELIVERY_ATTEMPTS", 8, minimum=1)
OPS_ALERT_RETRY_MAX_SECONDS = env_int("OPS_ALERT_RETRY_MAX_SECONDS", 600, minimum=10)
# The console's address as people reach it (e.g. https://ops.example.com), for links in notifications.
OPS_CONSOLE_URL = (env_str("OPS_CONSOLE_URL") or "").rstrip("/")
if OPS_CONSOLE_URL and not OPS_CONSOLE_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(f"OPS_CONSOLE_URL must be an http(s):// URL, got {OPS_CONSOLE_URL!r}.")
# Outgoing mail (alert e-mails) through Django's SMTP backend.
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)  # STARTTLS
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)  # seconds; Django's default waits forever
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "ops-console@localhost")

INSTALLED_APPS = [
    "core.apps.CoreConfig",
    "ops_console.apps.OpsConsoleConfig",
    "clinical.apps.ClinicalConfig",
    "support.apps.SupportConfig",
    "search.apps.SearchConfig",
    "oversight.apps.OversightConfig",
    "devtools.apps.DevtoolsConfig",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "simple_history",
    "import_export",
    "django_tasks",  # the backport of Django 6's tasks framework: @task, enqueue, results
    "django_tasks_db",  # its PostgreSQL queue and the db_worker that run_jobs wraps
]

MIDDLEWARE = [
    # First: every response carries X-Request-ID (a redirect to HTTPS too) and one "ops.request" log line.
    "core.request_id.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "core.timing.TimingMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "ops_console.signin.IdleSessionMiddleware",
    "ops_console.twofactor.middleware.TwoFactorMiddleware",
    "ops_console.replica.ReplicaReadsMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "ops_console.headers.ContentSecurityPolicyMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
]

if OPS_DEBUG_TOOLBAR:
    # Shown only to users with the profiling capability (ops_console.toolbar.show_toolbar).
    INSTALLED_APPS.append("debug_toolbar")
    # After every middleware that settles who the user is: the callback decides by request.user,
    # which earlier on is not set yet, so the toolbar would show to nobody.
    MIDDLEWARE.insert(
        MIDDLEWARE.index("django.contrib.messages.middleware.MessageMiddleware"),
        "debug_toolbar.middleware.DebugToolbarMiddleware",
    )
    DEBUG_TOOLBAR_CONFIG = {
        "SHOW_TOOLBAR_CALLBACK": "ops_console.toolbar.show_toolbar",
        "IS_RUNNING_TESTS": False,
        # Usable on a changelist over a million rows: no per-query stack traces or template
        # context capture, and the costly panels start switched off (each can be enabled).
        "ENABLE_STACKTRACES": False,
        "SHOW_TEMPLATE_CONTEXT": False,
        "SQL_WARNING_THRESHOLD": 100,
        "RESULTS_CACHE_SIZE": 25,
        # Panels in the page itself: the toolbar's default in-memory store lives in one gunicorn
        # worker, and a panel fetched later by Ajax mostly reaches another one that never saw it.
        "RENDER_PANELS": True,
        "DISABLE_PANELS": {
            "debug_toolbar.panels.profiling.ProfilingPanel",
            "debug_toolbar.panels.templates.TemplatesPanel",
            "debug_toolbar.panels.redirects.RedirectsPanel",
            "debug_toolbar.panels.staticfiles.StaticFilesPanel",
        },
    }

ROOT_URLCONF = "ops_console.urls"
WSGI_APPLICATION = "ops_console.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "ops_console" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env_database("DATABASE_URL", "postgres://127.0.0.1:5432/ops_console")}
DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Name search (search/backends/postgres.py) forgives one wrong letter in a short surname
# ("garsia"): pg_trgm's default word-similarity threshold (0.6) does not.
# JIT compilation off: the console's statements are short, and compiling them costs more than it
# saves (at 10M visits a visit search spent 74 ms of its 314 compiling its expressions).
DATABASES["default"]["OPTIONS"] = {
    "options": "-c pg_trgm.word_similarity_threshold=0.5 -c jit=off",
    # Who served a read, in pg_stat_activity (core.replica).
    "application_name": "ops-console/default",
}
# A streaming replica of the primary (core.replica): the console's read-only pages read from it.
if env_str("DATABASE_REPLICA_URL"):
    DATABASES["replica"] = {
        **env_database("DATABASE_REPLICA_URL", ""),
        "CONN_MAX_AGE": DATABASES["default"]["CONN_MAX_AGE"],
        "CONN_HEALTH_CHECKS": True,
        # A replica that does not answer is skipped quickly, not waited for.
        "OPTIONS": {**DATABASES["default"]["OPTIONS"], "application_name": "ops-console/replica", "connect_timeout": 2},
        "TEST": {"MIRROR": "default"},  # the test run has one database: the replica reads it
    }
DATABASE_ROUTERS = ["core.replica.ReplicaRouter"]
# A replica further behind than this is skipped (checked every OPS_REPLICA_CHECK_SECONDS per process).
OPS_REPLICA_MAX_LAG_SECONDS = env_int("OPS_REPLICA_MAX_LAG_SECONDS", 10, minimum=0)
OPS_REPLICA_CHECK_SECONDS = env_int("OPS_REPLICA_CHECK_SECONDS", 2, minimum=1)
# After a console user saves anything, their pages read the primary this long (read your writes).
OPS_READ_YOUR_WRITES_SECONDS = env_int("OPS_READ_YOUR_WRITES_SECONDS", 15, minimum=0)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Where collectstatic writes and whitenoise serves from; the end-to-end tests collect into a temp dir.
STATIC_ROOT = Path(env_str("OPS_STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

LOGIN_URL = f"/{OPS_ADMIN_PATH}login/"

# One uploaded file per request: the console takes one license file at a time (Django allows 100).
DATA_UPLOAD_MAX_NUMBER_FILES = 1

# Security: Django's defaults stay; these add HTTPS-only behaviour for production.
SECURE_SSL_REDIRECT = OPS_HTTPS
# Load balancers probe health over plain HTTP on the instance's own port; a redirect is no answer.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SESSION_COOKIE_SECURE = OPS_HTTPS
CSRF_COOKIE_SECURE = OPS_HTTPS
SECURE_HSTS_SECONDS = env_int("OPS_HSTS_SECONDS", 31536000 if OPS_HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = OPS_HTTPS
SECURE_HSTS_PRELOAD = OPS_HTTPS
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# No 'unsafe-inline' anywhere: the console's scripts are files, and so are its styles (the one
# exception, two style attributes on django-import-export's export page, only lose padding).
OPS_CONTENT_SECURITY_POLICY = env_str(
    "OPS_CONTENT_SECURITY_POLICY",
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'",
)
# Proxies whose X-Forwarded-For is believed (core/client_ip.py); none by default.
OPS_TRUSTED_PROXIES = env_networks("OPS_TRUSTED_PROXIES", [])
_proxy_header = env_str("OPS_SECURE_PROXY_SSL_HEADER")
if _proxy_header:
    SECURE_PROXY_SSL_HEADER = (_proxy_header, "https")

# django-simple-history: who made a change comes from the request, or from the action's actor.
SIMPLE_HISTORY_HISTORY_CHANGE_REASON_USE_TEXT_FIELD = True

# django-import-export: import and export need their own permissions, not just admin access.
IMPORT_EXPORT_IMPORT_PERMISSION_CODE = "import"
IMPORT_EXPORT_EXPORT_PERMISSION_CODE = "export"
IMPORT_EXPORT_USE_TRANSACTIONS = True

# Long jobs (background license imports) queue in PostgreSQL and run in `manage.py run_jobs`,
# so a web restart neither loses nor half-applies one.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

# /readyz (ops_console/health.py): how long each dependency may take to answer before it counts as down.
OPS_HEALTH_TIMEOUT_SECONDS = env_int("OPS_HEALTH_TIMEOUT_SECONDS", 2, minimum=1)
# A background job (a large license import) ready this long with no worker taking it: /readyz
# reports it and the import's page tells the person waiting that no job worker is running.
OPS_JOBS_ALERT_SECONDS = env_int("OPS_JOBS_ALERT_SECONDS", 60, minimum=1)

# Logs (core/logs.py) on stderr, one JSON object per line for collectors; "text" for a person at a terminal.
OPS_LOG_FORMAT = env_choice("OPS_LOG_FORMAT", "json", ("json", "text"))
LOGGING = logging_config(level=env_str("OPS_LOG_LEVEL", "INFO"), style=OPS_LOG_FORMAT)
# Python's warnings (a missing static root, a deprecation) go through logging too: every line is JSON.
logging.captureWarnings(True)
