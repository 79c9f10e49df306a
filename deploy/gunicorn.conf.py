"""gunicorn settings shared by `make run` and the systemd unit.

Sync workers: measured on a 2-core box they beat gthread and ASGI for this short,
database-bound view (docs/performance.md). One per core, at least two (one answers while
another waits on the database): a third on two cores only competed with the worker for
the CPU, and held one more PostgreSQL connection.
"""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", max(2, multiprocessing.cpu_count())))
worker_class = "sync"
# Well under TradingView's 3 s cut-off is where the webhook lives; this only bounds a
# stuck admin page.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 30))
graceful_timeout = 20
max_requests = 0
# Loading the app once before forking shares its memory between workers.
preload_app = True
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "warning")
# nginx in front is the only trusted forwarder; Django decides (TRUSTED_PROXIES).
forwarded_allow_ips = "127.0.0.1"


def post_worker_init(worker):
    """Warm each worker before it takes an alert: database connection, statements, broker,
    and one request through Django (URL resolver, middleware chain), a GET the webhook
    refuses with 405 without touching anything. Cold, a worker's first alert took ~50 ms
    longer than the next ones."""
    import io

    from django.conf import settings

    from signals.outbox import intake_warm

    intake_warm()
    # A host Django accepts, so the warm-up never logs a DisallowedHost.
    host = next((h.lstrip(".") for h in settings.ALLOWED_HOSTS if h != "*"), "localhost")
    try:
        environ = {
            "HTTP_HOST": host,
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/tv-webhook",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.url_scheme": "http",
            "wsgi.errors": io.StringIO(),
        }
        result = worker.wsgi(environ, lambda status, headers, exc_info=None: None)
        b"".join(result)
        getattr(result, "close", lambda: None)()
    except Exception as exc:  # a cold first request is the only consequence
        worker.log.warning("warm-up request failed: %s", exc)
