"""gunicorn settings shared by `make run` and the systemd unit.

Sync workers: measured on a 2-core box they beat gthread and ASGI for this short,
database-bound view (docs/performance.md). About cores + 1 workers.
"""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", multiprocessing.cpu_count() + 1))
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
