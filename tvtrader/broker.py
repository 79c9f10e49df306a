"""Our Redis broker transport: kombu's, with two changes.

A lost connection is an error Celery recovers from. When a connection to Redis dies, kombu
tears it down and clears the connection's link to its settings; a channel closed after that
(a consumer restarting, a queue deleted on close) asks for them and got an AttributeError
(`'NoneType' object has no attribute 'hostname'`), which Celery does not know as a
connection error: "Unrecoverable error", and the worker stopped. It is now a
`redis.ConnectionError`, which Celery ignores on close and recovers from elsewhere. The
worker uses this transport through `broker_transport` (tvtrader/settings.py).

The webhook's publishing connection to a Redis broker:

kombu's Redis channel builds a new `redis.Redis` client object for every message it
publishes (its constructor fills a table of ~170 response callbacks: ~0.2 ms of CPU per
alert on this machine, a quarter of the enqueue). The webhook keeps one producer per
process and thread, so its channel can keep one client too. Same connection pool, same
commands, same message format: only the per-message client construction goes.
"""

from __future__ import annotations

from urllib.parse import urlparse

import redis
from kombu.transport import redis as kombu_redis


class ResilientChannel(kombu_redis.Channel):
    def _connparams(self, asynchronous=False):
        if self.connection.client is None:
            raise redis.exceptions.ConnectionError("the broker connection this channel belonged to is closed")
        return super()._connparams(asynchronous=asynchronous)


class ResilientTransport(kombu_redis.Transport):
    Channel = ResilientChannel


class KeptClientChannel(ResilientChannel):
    _kept_client = None

    def _create_client(self, asynchronous=False):
        if asynchronous:  # consumers (BRPOP, pub/sub) are untouched
            return super()._create_client(asynchronous=True)
        if self._kept_client is None:
            self._kept_client = super()._create_client()
        return self._kept_client


class KeptClientTransport(ResilientTransport):
    Channel = KeptClientChannel


def publishing_transport(broker_url: str):
    """The transport class for the webhook's kept producer: ours for plain `redis://`
    brokers, kombu's own choice (None) for anything else."""
    return KeptClientTransport if urlparse(broker_url).scheme == "redis" else None
