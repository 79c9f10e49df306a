"""Watchdogs for the failures nobody sees: alerts that stopped arriving, and a TLS
certificate about to expire. Used by the manage.py commands and by Celery beat."""

from __future__ import annotations

import logging
import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import OuterRef, Subquery
from django.utils import timezone

logger = logging.getLogger("tvtrader.ops")

SILENT_SET_KEY = "ops:silent"
CERT_WARNED_KEY = "ops:cert_warned:"


@dataclass
class Silence:
    key: str  # "strategy:<id>" or "endpoint"
    label: str
    minutes_silent: float | None  # None: never received anything
    limit_minutes: int

    def describe(self) -> str:
        since = (
            "never received an alert" if self.minutes_silent is None else f"silent for {self.minutes_silent:.0f} min"
        )
        return f"{self.label}: {since} (expected at least every {self.limit_minutes} min)"


def silences(*, now: datetime | None = None) -> list[Silence]:
    """Enabled strategies with an expected interval and no alert for longer than it, and the
    whole endpoint when no alert at all arrived for SILENCE_ENDPOINT_MINUTES. Test signals
    sent from the app do not count: they never crossed the internet."""
    from signals.models import Signal
    from strategies.models import Strategy

    now = now or timezone.now()
    found: list[Silence] = []
    latest = Signal.objects.filter(strategy=OuterRef("pk"), is_test=False).order_by("-id").values("received_at")[:1]
    strategies = (
        Strategy.objects.filter(enabled=True, halted=False, expected_interval_minutes__isnull=False)
        .annotate(last_at=Subquery(latest))
        .order_by("strategy_id")
    )
    for strategy in strategies:
        limit = strategy.expected_interval_minutes
        reference = strategy.last_at or strategy.created_at
        if now - reference > timedelta(minutes=limit):
            minutes = (now - strategy.last_at).total_seconds() / 60 if strategy.last_at else None
            found.append(
                Silence(f"strategy:{strategy.strategy_id}", f"strategy {strategy.strategy_id}", minutes, limit)
            )
    if settings.SILENCE_ENDPOINT_MINUTES:
        last = Signal.objects.filter(is_test=False).order_by("-id").values_list("received_at", flat=True).first()
        # Never received anything: counted from when the first strategy was set up, as for a
        # strategy (a fresh install, `make run`'s demo included, has not had the chance yet).
        reference = last or Strategy.objects.order_by("created_at").values_list("created_at", flat=True).first()
        if reference is not None and now - reference > timedelta(minutes=settings.SILENCE_ENDPOINT_MINUTES):
            minutes = (now - last).total_seconds() / 60 if last else None
            found.append(Silence("endpoint", "webhook endpoint", minutes, settings.SILENCE_ENDPOINT_MINUTES))
    return found


def silence_check_and_notify() -> int:
    """Notify when something falls silent and when it speaks again (transitions only, so a
    long silence is one message, not one every five minutes). Returns how many are silent."""
    from strategies.models import Strategy
    from tvtrader.redisconn import key as rkey
    from tvtrader.redisconn import redis_client

    from .notifications import notification_send

    current = {s.key: s for s in silences()}
    client = redis_client()
    before = {k.decode() for k in client.smembers(rkey(SILENT_SET_KEY))}
    for key in current.keys() - before:
        silence = current[key]
        logger.warning("event=silence key=%s detail=%r", key, silence.describe())
        strategy = None
        if key.startswith("strategy:"):
            strategy = Strategy.objects.filter(strategy_id=key.split(":", 1)[1]).first()
        notification_send(event="silence", text=f"🔇 {silence.describe()}", strategy=strategy)
    for key in before - current.keys():
        logger.info("event=silence_over key=%s", key)
        notification_send(event="silence", text=f"🔊 {key.replace(':', ' ')} is receiving alerts again")
    pipe = client.pipeline()
    pipe.delete(rkey(SILENT_SET_KEY))
    if current:
        pipe.sadd(rkey(SILENT_SET_KEY), *current.keys())
    pipe.execute()
    return len(current)


# --- TLS certificates ---------------------------------------------------------------------


@dataclass
class CertificateReport:
    host: str
    port: int
    not_after: datetime | None = None
    days_left: float | None = None
    subject: str = ""
    issuer: str = ""
    verified: bool = False
    verify_error: str = ""
    error: str = ""

    @property
    def reachable(self) -> bool:
        return self.not_after is not None


def certificate_check(
    host: str, port: int = 443, *, cafile: str | None = None, timeout: float = 10.0
) -> CertificateReport:
    """Fetch the certificate a client (TradingView) is served on host:port, and whether it
    verifies against the system's trust store (or `cafile`) for that host name."""
    from cryptography import x509

    report = CertificateReport(host=host, port=port)
    raw_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    raw_ctx.check_hostname = False
    raw_ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            with raw_ctx.wrap_socket(sock, server_hostname=host) as tls:
                der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        report.error = f"cannot connect: {exc}"
        return report
    if not der:
        report.error = "the server presented no certificate"
        return report
    cert = x509.load_der_x509_certificate(der)
    report.not_after = cert.not_valid_after_utc
    report.days_left = (report.not_after - datetime.now(UTC)).total_seconds() / 86400
    report.subject = cert.subject.rfc4514_string()
    report.issuer = cert.issuer.rfc4514_string()

    verify_ctx = ssl.create_default_context(cafile=cafile)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            with verify_ctx.wrap_socket(sock, server_hostname=host):
                report.verified = True
    except ssl.SSLCertVerificationError as exc:
        report.verify_error = exc.verify_message or str(exc)
    except (OSError, ssl.SSLError) as exc:
        report.verify_error = str(exc)
    return report


def certificates_check_and_notify() -> int:
    """For beat: check CERTIFICATE_CHECK_HOSTS ("host" or "host:port"); notify at most once
    a day per host while it is below the threshold or broken. Returns how many are bad."""
    from tvtrader.redisconn import key as rkey
    from tvtrader.redisconn import redis_client

    from .notifications import notification_send

    bad = 0
    for entry in settings.CERTIFICATE_CHECK_HOSTS:
        host, _, port = entry.strip().partition(":")
        if not host:
            continue
        report = certificate_check(host, int(port or 443))
        problem = ""
        if not report.reachable:
            problem = report.error
        elif report.days_left is not None and report.days_left < settings.CERTIFICATE_WARN_DAYS:
            problem = f"expires in {report.days_left:.1f} days ({report.not_after:%Y-%m-%d})"
        elif not report.verified:
            problem = f"does not verify: {report.verify_error}"
        if not problem:
            continue
        bad += 1
        logger.warning("event=certificate_warning host=%s port=%s problem=%r", host, report.port, problem)
        if redis_client().set(rkey(CERT_WARNED_KEY + entry), "1", nx=True, ex=20 * 3600):
            notification_send(event="certificate", text=f"🔐 TLS certificate of {host}:{report.port} {problem}")
    return bad
