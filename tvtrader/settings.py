"""Settings, all from the environment (django-environ; an optional `.env` beside manage.py).

The defaults are the embedded, paper-trading setup that `make run` brings up with no
configuration: SQLite in WAL mode under `var/`, Redis on localhost, live trading off.
Production sets DATABASE_URL (PostgreSQL), REDIS_URL, SECRET_KEY, ALLOWED_HOSTS and the
webhook settings; see `deploy/` and docs/configuration.md.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import environ
from cryptography.fernet import Fernet

from tvtrader.redisconn import namespace_for as _redis_namespace_for

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    env.read_env(BASE_DIR / ".env")

# Runtime state the project owns: SQLite database, generated secrets, embedded Redis data.
VAR_DIR = Path(env("TVTRADER_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _persisted_secret(name: str, make) -> str:
    """A secret generated on first use and kept (mode 600) under var/, so restarts keep it."""
    path = VAR_DIR / name
    if path.exists():
        return path.read_text().strip()
    value = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)
    return value


DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env("SECRET_KEY", default="") or _persisted_secret("secret_key", lambda: secrets.token_urlsafe(50))
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # The admin is the operator console: our AdminSite (dashboard index, kill switches).
    "strategies.admin_config.ConsoleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "strategies",
    "signals",
    "execution",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "tvtrader.api",
    "tvtrader.ops",
]

MIDDLEWARE = [
    "tvtrader.middleware.TrustedProxyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "tvtrader.urls"
WSGI_APPLICATION = "tvtrader.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

# --- Database -------------------------------------------------------------------------
# PostgreSQL in production; SQLite (WAL) is the embedded default. Persistent connections
# matter: reconnecting per request costs more than the whole webhook insert.
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'tvtrader.sqlite3'}"),
}
_db = DATABASES["default"]
_db["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=600)
_db["CONN_HEALTH_CHECKS"] = True
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so that a real Celery worker process sees the test database too.
    _db["TEST"] = {"NAME": str(VAR_DIR / "test_db.sqlite3")}
    _db.setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
    )
elif "postgresql" in _db["ENGINE"]:
    # Fail fast when PostgreSQL is down so the webhook answers 503 (TradingView resends on
    # 5xx) well inside its 3-second budget instead of hanging.
    # (libpq's floor is 2 s; the webhook's own deadline, WEBHOOK_DEADLINE_SECONDS, is shorter.)
    _db.setdefault("OPTIONS", {}).setdefault("connect_timeout", env.int("DB_CONNECT_TIMEOUT", default=2))
    # A query that hangs is cut: by the server after DB_STATEMENT_TIMEOUT_SECONDS (a lock, a
    # stalled disk), by the kernel when sent data stays unacknowledged for
    # DB_TCP_USER_TIMEOUT_MS (packets dropped), so a worker thread gets an error it recovers
    # from instead of waiting for TCP for minutes. 0 turns either off (a long migration).
    _statement_timeout_ms = int(env.float("DB_STATEMENT_TIMEOUT_SECONDS", default=30) * 1000)
    if _statement_timeout_ms > 0:
        _db["OPTIONS"].setdefault("options", f"-c statement_timeout={_statement_timeout_ms}")
    _tcp_user_timeout_ms = env.int("DB_TCP_USER_TIMEOUT_MS", default=10000)
    if _tcp_user_timeout_ms > 0:
        _db["OPTIONS"].setdefault("tcp_user_timeout", _tcp_user_timeout_ms)
        _db["OPTIONS"].setdefault("keepalives_idle", 30)
    if env.bool("DB_SERVER_SIDE_BINDING", default=True):
        # Parameters bound by the server and statements prepared after a few uses: the
        # webhook's lookup and insert are parsed and planned once per connection instead of
        # once per alert (-0.3 ms per alert, docs/performance.md). Turn off behind a
        # transaction-pooling pgbouncer, which cannot keep prepared statements.
        _db["OPTIONS"].setdefault("server_side_binding", True)
        _db["OPTIONS"].setdefault("prepare_threshold", env.int("DB_PREPARE_THRESHOLD", default=5))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Admin login hardening -------------------------------------------------------------
# django-axes (https://django-axes.readthedocs.io/en/latest/4_configuration.html) locks a
# client address out after repeated failed logins. It reads REMOTE_ADDR only, which
# tvtrader.middleware.TrustedProxyMiddleware rewrites solely for TRUSTED_PROXIES.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("ADMIN_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("ADMIN_LOGIN_LOCKOUT_HOURS", default=1.0)
AXES_LOCKOUT_PARAMETERS = ["ip_address"]
AXES_CLIENT_IP_CALLABLE = "strategies.admin_security.client_ip"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "admin/locked_out.html"
# Second factor (django-otp TOTP) for the admin; enrol with `manage.py admin_otp_enrol`.
ADMIN_REQUIRE_2FA = env.bool("ADMIN_REQUIRE_2FA", default=False)
OTP_TOTP_ISSUER = "tvtrader"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", default="UTC")
USE_I18N = False
# Times with seconds and the time zone everywhere in the console (tvtrader/formats/en).
FORMAT_MODULE_PATH = ["tvtrader.formats"]
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# gunicorn serves the admin's static files itself (WhiteNoise), so `make run` needs no nginx
# and the admin never depends on a CDN.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# TradingView messages are small; anything large is not an alert.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=65536)
WEBHOOK_MAX_BODY_BYTES = env.int("WEBHOOK_MAX_BODY_BYTES", default=16384)

# --- Redis and Celery -----------------------------------------------------------------
REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/0")
# Every key and queue of this install lives under this prefix (tvtrader/redisconn.py): two
# installs sharing a Redis database never take each other's work. Derived from the database
# unless set (set it on workers that reach the database under another host name).
REDIS_NAMESPACE = env("REDIS_NAMESPACE", default="") or _redis_namespace_for(DATABASES["default"])

CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL)
if CELERY_BROKER_URL.startswith("redis://"):
    # kombu's Redis transport, with a lost connection kept a recoverable error (tvtrader/broker.py).
    CELERY_BROKER_TRANSPORT = "tvtrader.broker:ResilientTransport"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_EVENT_SERIALIZER = "json"
# At-least-once delivery; every task is idempotent (conditional claims in the database).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The database is the outbox; the sweeper re-queues what the broker loses, so the
# visibility timeout is only a backstop. Kept well above any task's time limit.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # kombu prefixes every key it writes (queues, unacked sets, bindings) with this.
    "global_keyprefix": REDIS_NAMESPACE,
    "visibility_timeout": 900,
    "socket_connect_timeout": 1,
    "socket_timeout": 5,
}
# A publish must never hold up an answer to TradingView: fail fast, the sweeper retries.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.1}
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Webhook ---------------------------------------------------------------------------
# The global passphrase. When unset, one is generated and kept under var/ (and printed by
# `make run`); a strategy may also carry its own passphrase (stored hashed).
WEBHOOK_PASSPHRASE = env("WEBHOOK_PASSPHRASE", default="") or _persisted_secret(
    "webhook_passphrase", lambda: secrets.token_urlsafe(24)
)
# Source-IP allowlist, applied to the real peer address. TradingView's published webhook
# addresses (https://www.tradingview.com/support/solutions/43000529348/) are built in.
WEBHOOK_IP_ALLOWLIST_ENABLED = env.bool("WEBHOOK_IP_ALLOWLIST_ENABLED", default=False)
TRADINGVIEW_WEBHOOK_IPS = ["52.89.214.238", "34.212.75.30", "54.218.53.128", "52.32.178.7"]
WEBHOOK_EXTRA_ALLOWED_IPS = env.list("WEBHOOK_EXTRA_ALLOWED_IPS", default=[])
# X-Forwarded-For (and nginx's X-Request-Start, the alert's arrival time) is honoured only
# when the direct peer is one of these (e.g. local nginx).
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])
# The webhook answers within this many seconds whatever the database does: a database that
# does not answer in time makes it a 503 (TradingView gives up at 3 s). signals/deadline.py
WEBHOOK_DEADLINE_SECONDS = env.float("WEBHOOK_DEADLINE_SECONDS", default=1.5)
# How many rejected (unauthenticated) sources are tracked individually per day before the
# rest are folded into one row, so a flood cannot fill the disk.
WEBHOOK_REJECTION_MAX_SOURCES_PER_DAY = env.int("WEBHOOK_REJECTION_MAX_SOURCES_PER_DAY", default=500)
# Entries fired ({{timenow}}) longer ago than this are refused as stale unless the strategy
# sets its own `max_signal_age_seconds` (0 there: no limit); exits always pass. 0 here: no
# default limit. A time further in the future than the skew tolerance is refused too.
# docs/webhook.md "Halted strategies and stale alerts".
SIGNAL_MAX_AGE_SECONDS = env.int("SIGNAL_MAX_AGE_SECONDS", default=300)
SIGNAL_CLOCK_SKEW_SECONDS = env.int("SIGNAL_CLOCK_SKEW_SECONDS", default=60)

# --- Trading ---------------------------------------------------------------------------
# Live accounts are refused unless this is switched on explicitly.
LIVE_TRADING = env.bool("LIVE_TRADING", default=False)
# Fernet keys for exchange credentials at rest, newest first (MultiFernet: rotate by
# prepending a new key and running `manage.py rotate_credentials_key`).
CREDENTIALS_ENCRYPTION_KEYS = env.list("CREDENTIALS_ENCRYPTION_KEYS", default=[]) or [
    _persisted_secret("credentials_key", lambda: Fernet.generate_key().decode())
]
# Signals committed but not started after this many seconds are re-queued by the sweeper.
SIGNAL_REQUEUE_AFTER_SECONDS = env.int("SIGNAL_REQUEUE_AFTER_SECONDS", default=10)
# Execution. Exchange HTTP timeout; how long a lookup must keep saying "not found" before an
# order whose creation failed ambiguously counts as never received (and is resent, once,
# with the same client order id); how long a worker owns a signal before another may take
# it over (renewed while it works).
# Scale-out: route each signal's execution to a queue of its exchange account
# ("orders.account-<id>"), so workers on other hosts can each serve some accounts
# (`celery worker -Q orders.account-3`). Ordering and rate limits hold either way: both live
# in PostgreSQL and Redis, not in a worker.
EXECUTION_QUEUE_PER_ACCOUNT = env.bool("EXECUTION_QUEUE_PER_ACCOUNT", default=False)
# Pool threads a worker prepares at start-up (database connection + exchange client each), so
# the first burst of alerts does not pay for them. `make run` and the systemd unit set it to
# the worker's concurrency; 0 (the default) prepares none.
WORKER_PREWARM = env.int("WORKER_PREWARM", default=0)
EXCHANGE_TIMEOUT_SECONDS = env.float("EXCHANGE_TIMEOUT_SECONDS", default=10.0)
ORDER_NOT_FOUND_GRACE_SECONDS = env.float("ORDER_NOT_FOUND_GRACE_SECONDS", default=5.0)
# The same on venues that accept a reused client order id once the first order is closed
# (Binance): "not found" must hold much longer there before a resend is safe.
ORDER_NOT_FOUND_GRACE_REUSABLE_ID_SECONDS = env.float("ORDER_NOT_FOUND_GRACE_REUSABLE_ID_SECONDS", default=30.0)
SIGNAL_LEASE_SECONDS = env.int("SIGNAL_LEASE_SECONDS", default=60)
# The order-rate bucket counts each second as 1 s + this guard, so jitter between taking a
# slot and the request reaching the venue cannot put one order too many into the venue's
# second (execution/ratelimit.py). Raise it when the venue is far away on a jittery network.
ORDER_RATE_GUARD_MS = env.int("ORDER_RATE_GUARD_MS", default=50)
# Threads per worker process that record what the exchange says about acknowledged orders
# (from its stream, or a poll) and carry their runs on, so the Celery pool threads only send
# (docs/execution.md). Each holds a database connection.
EXECUTION_FOLLOW_THREADS = env.int("EXECUTION_FOLLOW_THREADS", default=4)
# Threads that start the runs of an alert fanned out to several accounts, all at once
# (docs/execution.md, "One strategy, many accounts").
EXECUTION_FANOUT_THREADS = env.int("EXECUTION_FANOUT_THREADS", default=10)
# Arrival order under a stalled database (engine/statements.py): a signal whose commit lagged
# its arrival by more than INTAKE_LAG_SECONDS waits until INTAKE_HOLD_SECONDS after its
# arrival before it may run, so every alert that arrived before it has been recorded (or
# refused) by then. The hold must exceed the webhook's answer deadline.
INTAKE_LAG_SECONDS = env.float("INTAKE_LAG_SECONDS", default=0.5)
INTAKE_HOLD_SECONDS = env.float("INTAKE_HOLD_SECONDS", default=2.5)
WORKER_HEARTBEAT_MAX_AGE_SECONDS = env.int("WORKER_HEARTBEAT_MAX_AGE_SECONDS", default=60)

# --- Logging ---------------------------------------------------------------------------
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
# "kv" (one key=value line per event) or "json" (one JSON object per line, the key=value
# pairs of the message lifted into fields); see docs/operations.md.
LOG_FORMAT = env("LOG_FORMAT", default="kv")
if LOG_FORMAT not in ("kv", "json"):
    raise ValueError(f"LOG_FORMAT must be kv or json, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "kv": {"format": "%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"},
        "json": {"()": "tvtrader.logformat.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # One line per refused webhook request would let a flood of forged requests fill the
        # disk; the webhook counts and throttles its own refusal logs instead.
        "django.request": {"level": "ERROR"},
        "ccxt": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
        # One line per successful task (heartbeats every 10 s) buries the events that matter.
        "celery.app.trace": {"level": "WARNING"},
        # Likewise one line per task received: the sweeper's every 5 s, and one per pool thread
        # warmed at start-up (64 under systemd) that scrolled `make run`'s banner away.
        "celery.worker.strategy": {"level": "WARNING"},
    },
}

# --- Security (production values come from the environment; see deploy/) ----------------
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
if env.bool("BEHIND_TLS_PROXY", default=False):
    # Only safe because nginx overwrites X-Forwarded-Proto (deploy/nginx); see TRUSTED_PROXIES.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
X_FRAME_OPTIONS = "DENY"

REST_FRAMEWORK = {
    # API tokens (api.ApiToken, scoped read/control) for scripts; the admin's session for
    # staff browsing the docs. See docs/api.md.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tvtrader.api.authentication.ApiTokenAuthentication",
        "tvtrader.api.authentication.StaffSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["tvtrader.api.permissions.ReadScope"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}

# Checks an operator has decided about (deploy/install.sh silences security.W021: HSTS preload
# is the domain owner's call). https://docs.djangoproject.com/en/5.2/ref/settings/#silenced-system-checks
SILENCED_SYSTEM_CHECKS = env.list("SILENCED_SYSTEM_CHECKS", default=[])
SPECTACULAR_SETTINGS = {
    "TITLE": "tvtrader API",
    "DESCRIPTION": "Read signals, orders, fills and positions; steer strategies and kill switches. See docs/api.md.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Docs are served from our own static files: the operator console never depends on a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["tvtrader.api.permissions.ReadScope"],
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "SignalStatusEnum": "signals.models.Signal.Status",
        "OrderStatusEnum": "execution.models.Order.Status",
        "ActionEnum": "strategies.models.ACTIONS",
    },
}

# --- Operations: notifications, metrics, watchdogs (docs/operations.md) -----------------
# Telegram: a bot token from @BotFather and the chat it posts to. The API base is a setting
# so tests (and a relay, if you use one) can stand in for api.telegram.org.
TELEGRAM_BOT_TOKEN = env("TELEGRAM_BOT_TOKEN", default="")
TELEGRAM_CHAT_ID = env("TELEGRAM_CHAT_ID", default="")
TELEGRAM_API_URL = env("TELEGRAM_API_URL", default="https://api.telegram.org").rstrip("/")
# Telegram commands (/status, /positions, /halt, /halt_all, /resume) are obeyed only from these
# chat ids (comma-separated; your private chat with the bot: send it /start, then read the id
# from a refused reply or the log). Empty: commands are off. docs/operations.md.
TELEGRAM_COMMAND_CHAT_IDS = env.list("TELEGRAM_COMMAND_CHAT_IDS", default=[])
# Long polling: how long one getUpdates call waits for a command.
TELEGRAM_POLL_SECONDS = env.int("TELEGRAM_POLL_SECONDS", default=20)
# Discord: a channel webhook URL (Server settings > Integrations > Webhooks).
DISCORD_WEBHOOK_URL = env("DISCORD_WEBHOOK_URL", default="")
# Per channel: at most this many messages a minute (Telegram allows about 20/min in a group,
# Discord about 30/min per webhook); the rest wait their turn on the notifications queue.
NOTIFY_RATE_PER_MINUTE = env.int("NOTIFY_RATE_PER_MINUTE", default=20)
NOTIFY_HTTP_TIMEOUT_SECONDS = env.float("NOTIFY_HTTP_TIMEOUT_SECONDS", default=10.0)
# A failed delivery (channel unreachable, 5xx, its own 429) is retried this many times with
# exponential backoff (2, 4, 8 ... s, at most NOTIFY_RETRY_BACKOFF_MAX_SECONDS), then given up.
# Waiting for our own per-minute allowance is not a failure and never counts against it.
NOTIFY_MAX_RETRIES = env.int("NOTIFY_MAX_RETRIES", default=6)
NOTIFY_RETRY_BACKOFF_MAX_SECONDS = env.float("NOTIFY_RETRY_BACKOFF_MAX_SECONDS", default=300.0)
if NOTIFY_MAX_RETRIES < 0 or NOTIFY_RETRY_BACKOFF_MAX_SECONDS <= 0 or NOTIFY_RATE_PER_MINUTE < 1:
    raise ValueError(
        "NOTIFY_MAX_RETRIES must be >= 0, NOTIFY_RETRY_BACKOFF_MAX_SECONDS > 0 and NOTIFY_RATE_PER_MINUTE >= 1"
    )
# /metrics: a bearer token (in addition to API tokens with read scope), and/or addresses
# allowed without one (e.g. the Prometheus host).
METRICS_TOKEN = env("METRICS_TOKEN", default="")
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=[])
# The whole webhook counts as silent when no alert at all arrived for this long (0: never).
SILENCE_ENDPOINT_MINUTES = env.int("SILENCE_ENDPOINT_MINUTES", default=1440)
# Hosts whose TLS certificate beat checks daily (what TradingView sees), and the threshold.
CERTIFICATE_CHECK_HOSTS = env.list("CERTIFICATE_CHECK_HOSTS", default=[])
CERTIFICATE_WARN_DAYS = env.int("CERTIFICATE_WARN_DAYS", default=14)
