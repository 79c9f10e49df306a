"""Every alert that reaches the webhook, as a `Signal` row (the outbox execution works
from), and bounded counters for requests that failed authentication."""

from __future__ import annotations

from django.db import models


class Signal(models.Model):
    class Status(models.TextChoices):
        ACCEPTED = "accepted", "Accepted (waiting for execution)"
        PROCESSING = "processing", "Executing"
        EXECUTED = "executed", "Executed"
        PARTIAL = "partial", "Partly executed"
        SKIPPED = "skipped", "Nothing to do"
        FAILED = "failed", "Failed"
        REJECTED = "rejected", "Rejected"
        BLOCKED = "blocked", "Blocked (strategy halted)"
        FANNED_OUT = "fanned_out", "Sent to each subscription"

    PENDING_STATUSES = (Status.ACCEPTED, Status.PROCESSING)
    TERMINAL_STATUSES = (
        Status.EXECUTED,
        Status.PARTIAL,
        Status.SKIPPED,
        Status.FAILED,
        Status.REJECTED,
        Status.BLOCKED,
        Status.FANNED_OUT,
    )

    strategy = models.ForeignKey(
        "strategies.Strategy", null=True, blank=True, on_delete=models.PROTECT, related_name="signals"
    )
    strategy_key = models.CharField(max_length=64, blank=True, help_text="strategy_id as it arrived")
    status = models.CharField(max_length=12, choices=Status.choices, db_index=True)
    reason = models.TextField(blank=True)
    errors = models.JSONField(null=True, blank=True)

    action = models.CharField(max_length=16, blank=True)
    ticker = models.CharField(max_length=64, blank=True, help_text="Ticker without the exchange prefix, e.g. BTCUSDT.P")
    exchange = models.CharField(max_length=16, blank=True)
    price = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    volume = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    timeframe = models.CharField(max_length=16, blank=True)
    bar_time = models.DateTimeField(null=True, blank=True)
    tv_order_id = models.CharField(max_length=128, blank=True, help_text="{{strategy.order.id}}")
    comment = models.CharField(max_length=255, blank=True)
    market_position = models.CharField(max_length=16, blank=True)
    market_position_size = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    position_size = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    prev_market_position = models.CharField(max_length=16, blank=True)
    protection = models.JSONField(
        null=True,
        blank=True,
        help_text="The alert's stop_loss / take_profit / trailing_stop, normalised: "
        '{"stop_loss": {"price": "…"} or {"percent": "…"}, "trailing_stop": {"percent": "…"} or {"distance": "…"}}',
    )

    payload = models.JSONField(null=True, blank=True, help_text="Parsed body, passphrase removed")
    raw_body = models.TextField(blank=True, help_text="Body as received, passphrase redacted, truncated")
    content_type = models.CharField(max_length=100, blank=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)

    class Origin(models.TextChoices):
        WEBHOOK = "webhook", "TradingView webhook"
        TEST = "test", "Test signal"
        FLATTEN = "flatten", "Flatten (operator)"

    origin = models.CharField(
        max_length=8, choices=Origin.choices, default=Origin.WEBHOOK, help_text="Set by the server, never by a payload."
    )
    is_test = models.BooleanField(
        default=False, help_text="A test or replay signal: always executed on paper, whatever the account."
    )
    # Fan-out (a strategy on several accounts): the alert's signal is the parent; each enabled
    # subscription gets one child signal, run by the engine like any signal on that account.
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    subscription = models.ForeignKey(
        "strategies.Subscription", null=True, blank=True, on_delete=models.PROTECT, related_name="signals"
    )
    dedup_key = models.CharField(max_length=64, null=True, blank=True, unique=True)
    duplicate_count = models.PositiveIntegerField(default=0)
    last_duplicate_at = models.DateTimeField(null=True, blank=True)

    # The latency chain.
    fired_at = models.DateTimeField(null=True, blank=True, help_text="{{timenow}} from TradingView")
    received_at = models.DateTimeField(db_index=True)
    committed_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    acked_at = models.DateTimeField(null=True, blank=True)
    first_fill_at = models.DateTimeField(null=True, blank=True)
    filled_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    enqueue_count = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    lease_until = models.DateTimeField(null=True, blank=True)
    # Which worker process holds the lease (host, boot, pid, process start): a worker that
    # starts on the same host takes over the leases of one that died without releasing them
    # (SIGKILL, out of memory) at once, instead of after the lease runs out.
    lease_owner = models.CharField(max_length=160, blank=True, default="")

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["strategy", "-id"], name="signal_strategy_recent"),
            # The engine's claim: signals still pending, per strategy, in arrival order.
            models.Index(
                fields=["strategy", "received_at", "id"],
                condition=models.Q(status__in=["accepted", "processing"]),
                name="signal_pending_arrival",
            ),
            models.Index(fields=["ticker"], name="signal_ticker"),
            models.Index(fields=["action"], name="signal_action"),
            models.Index(fields=["exchange"], name="signal_exchange"),
            # Admin list filters and searches (newest first under each filter).
            models.Index(fields=["status", "-id"], name="signal_status_recent"),
            models.Index(fields=["tv_order_id"], name="signal_tv_order_id"),
            models.Index(fields=["id"], condition=models.Q(is_test=True), name="signal_test_only"),
        ]
        constraints = [
            # Exactly once per subscription: a fan-out run again (a crash mid-way) finds its children.
            models.UniqueConstraint(fields=["parent", "subscription"], name="signal_one_child_per_subscription"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.strategy_key} {self.action} {self.ticker} [{self.status}]"

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL_STATUSES

    @property
    def is_exit(self) -> bool:
        from strategies.models import EXIT_ACTIONS

        return self.action in EXIT_ACTIONS


class WebhookRejection(models.Model):
    """Requests refused before they became signals (bad passphrase, address not allowed,
    oversized body, a body that is not JSON), counted per day, source and reason. Rows are bounded: past
    WEBHOOK_REJECTION_MAX_SOURCES_PER_DAY sources a day, the rest fold into source "*"."""

    day = models.DateField()
    source = models.CharField(max_length=64)
    reason = models.CharField(max_length=32)
    count = models.PositiveIntegerField(default=0)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    last_strategy_key = models.CharField(max_length=64, blank=True)
    last_user_agent = models.CharField(max_length=200, blank=True)
    # What was wrong with the last one, in our words (e.g. where a body stopped being JSON);
    # never the body itself.
    last_detail = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-last_seen"]
        constraints = [
            models.UniqueConstraint(fields=["day", "source", "reason"], name="webhook_rejection_unique_bucket"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.source} {self.reason} x{self.count}"
