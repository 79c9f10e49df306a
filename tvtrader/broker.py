"""The webhook's publishing connection to a Redis broker.

kombu's Redis channel builds a new `redis.Redis` client object for every message it
publishes (its constructor fills a table of ~170 response callbacks: ~0.2 ms of CPU per
alert on this machine, a quarter of the enqueue). The webhook keeps one producer per
process and thread, so its channel can keep one client too. Same connection pool, same
commands, same message format: only the per-message client construction goes.
"""

from __future__ import annotations

from urllib.parse import urlparse

from kombu.transport import redis as kombu_redis


class KeptClientChannel(kombu_redis.Channel):
    _kept_client = None

    def _create_client(self, asynchronous=False):
        if asynchronous:  # consumers (BRPOP, pub/sub) are untouched
            return super()._create_client(asynchronous=True)
        if self._kept_client is None:
            self._kept_client = super()._create_client()
        return self._kept_client


class KeptClientTransport(kombu_redis.Transport):
    Channel = KeptClientChannel


def publishing_transport(broker_url: str):
    """The transport class for the webhook's kept producer: ours for plain `redis://`
    brokers, kombu's own choice (None) for anything else."""
    return KeptClientTransport if urlparse(broker_url).scheme == "redis" else None
