"""This install's Redis: one client per process, and the namespace every key and queue of
this install lives under.

Two installs on one Redis database (a paper and a live checkout on one VPS, or any other
Celery app on db 0) must never see each other's queues, heartbeats or rate buckets. The
namespace is `REDIS_NAMESPACE` when set, else derived from the database the install uses:
an install *is* its database, so its web, worker and beat processes agree without
configuration, and two checkouts never do. (Workers on other hosts that reach the same
database under another host name must set `REDIS_NAMESPACE` explicitly.)
"""

from __future__ import annotations

import hashlib

import redis
from django.conf import settings

_client: redis.Redis | None = None


def namespace_for(database: dict) -> str:
    """`tv-<8 hex>:` from the database's identity (engine, host, port, name)."""
    identity = "|".join(str(database.get(k) or "") for k in ("ENGINE", "HOST", "PORT", "NAME"))
    return "tv-" + hashlib.sha256(identity.encode()).hexdigest()[:8] + ":"


def namespace() -> str:
    return settings.REDIS_NAMESPACE


def key(*parts: object) -> str:
    """A Redis key of this install: `<namespace><part>:<part>…`."""
    return namespace() + ":".join(str(p) for p in parts)


def redis_client() -> redis.Redis:
    """One client per process with short timeouts: health checks must answer quickly. Lua
    scripts run through `register_script` objects, which load themselves again when a
    restarted (empty) Redis answers NOSCRIPT."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(
            settings.REDIS_URL,
            socket_connect_timeout=0.5,
            socket_timeout=1.0,
            health_check_interval=30,
            retry_on_timeout=False,
        )
    return _client


def client_reset() -> None:
    """Forget the client (tests that point REDIS_URL elsewhere)."""
    global _client
    _client = None
