"""Our own small error hierarchy for exchange access. Gateways translate ccxt's exceptions
into these; nothing outside `execution/exchanges/` imports ccxt. Each docstring says what
an operator (and the engine) should do."""


class GatewayError(Exception):
    """Base class."""


class TemporaryError(GatewayError):
    """The venue could not be reached or answered ambiguously (timeout, 5xx, dropped
    connection, bad body). For a read: retry with backoff. For an order creation: the
    outcome is UNKNOWN — look the order up by its client order id, never resend blindly."""


class RateLimited(TemporaryError):
    """The venue refused because of its rate limit. Back off; for a creation, still look
    the order up before any resend."""


class OrderRejected(GatewayError):
    """A definitive refusal (insufficient funds, invalid order, below minimum, duplicate
    client id...). Do not retry; show the venue's reason to the trader."""


class OrderNotFound(GatewayError):
    """The venue does not know this order (lookup or cancel)."""


class Misconfigured(GatewayError):
    """Credentials, permissions, unknown symbol or account settings are wrong. Nothing
    will work until an operator fixes the account or strategy."""


class SendAborted(Exception):
    """Raised by a `before_send` hook to stop an order at the last moment, before anything
    was sent (the worker lost its lease, a kill switch was engaged while it waited for a
    rate-limit slot). Never translated: the order was not sent, and the caller knows why."""
