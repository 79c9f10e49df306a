"""The operator's commands: check_silence, check_certificate (against a local TLS server),
send_test_signal (against a live server), rotate_credentials_key; and JSON logs."""

from __future__ import annotations

import io
import json
import logging
import socket
import ssl
import threading
from datetime import UTC, datetime, timedelta

import pytest
import redis
from cryptography import x509
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from execution.models import ExchangeAccount
from signals.models import Signal
from tests.factories import ExchangeAccountFactory, SignalFactory, StrategyFactory
from tvtrader.api.services import api_token_create
from tvtrader.logformat import JsonFormatter
from tvtrader.ops.watchdogs import SILENT_SET_KEY, silence_check_and_notify
from tvtrader.redisconn import key


def run(*args) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command(*args, stdout=out, stderr=io.StringIO())
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue()
    return 0, out.getvalue()


# --- check_silence ------------------------------------------------------------------------


@pytest.mark.django_db
def test_check_silence_flags_quiet_strategies_and_exits_non_zero(settings):
    settings.SILENCE_ENDPOINT_MINUTES = 0
    quiet = StrategyFactory(strategy_id="quiet", expected_interval_minutes=30)
    chatty = StrategyFactory(strategy_id="chatty", expected_interval_minutes=30)
    StrategyFactory(strategy_id="no-expectation")
    SignalFactory(strategy=quiet, received_at=timezone.now() - timedelta(minutes=45))
    SignalFactory(strategy=chatty, received_at=timezone.now() - timedelta(minutes=5))
    SignalFactory(strategy=quiet, is_test=True)  # a test signal is not TradingView speaking

    code, out = run("check_silence")
    assert code == 1
    assert "strategy quiet: silent for 45 min" in out
    assert "chatty" not in out and "no-expectation" not in out

    SignalFactory(strategy=quiet)
    assert run("check_silence")[0] == 0


@pytest.mark.django_db
def test_a_silent_endpoint_is_flagged(settings):
    settings.SILENCE_ENDPOINT_MINUTES = 60
    SignalFactory(received_at=timezone.now() - timedelta(hours=3))
    code, out = run("check_silence")
    assert code == 1 and "webhook endpoint: silent for 180 min" in out


@pytest.mark.django_db
def test_an_endpoint_that_never_heard_an_alert_is_flagged_only_once_it_has_had_the_time(settings):
    settings.SILENCE_ENDPOINT_MINUTES = 60
    strategy = StrategyFactory(strategy_id="fresh")
    code, out = run("check_silence")
    assert code == 0 and "webhook endpoint" not in out, "a fresh install has not had the time to hear one"

    type(strategy).objects.filter(pk=strategy.pk).update(created_at=timezone.now() - timedelta(minutes=90))
    code, out = run("check_silence")
    assert code == 1 and "webhook endpoint: never received an alert" in out


@pytest.mark.django_db(transaction=True)
def test_silence_is_notified_once_when_it_starts(settings):
    settings.SILENCE_ENDPOINT_MINUTES = 0
    settings.DISCORD_WEBHOOK_URL = "http://127.0.0.1:9/x"
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(key(SILENT_SET_KEY), key("notifications"))
    strategy = StrategyFactory(expected_interval_minutes=10)
    SignalFactory(strategy=strategy, received_at=timezone.now() - timedelta(minutes=20))

    assert silence_check_and_notify() == 1
    assert silence_check_and_notify() == 1  # still silent: no second message
    assert client.llen(key("notifications")) == 1
    SignalFactory(strategy=strategy)
    assert silence_check_and_notify() == 0
    assert client.llen(key("notifications")) == 2  # "receiving alerts again"


# --- check_certificate ----------------------------------------------------------------------


def make_cert(tmp_path, days: int):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"cert{days}.pem", tmp_path / f"key{days}.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture
def tls_server(tmp_path):
    """A TLS server on 127.0.0.1 with a self-signed certificate valid for `days`."""
    servers = []

    def _start(days: int):
        cert_path, key_path = make_cert(tmp_path, days)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_path, key_path)
        sock = socket.create_server(("127.0.0.1", 0))
        stop = threading.Event()

        def serve():
            sock.settimeout(0.2)
            while not stop.is_set():
                try:
                    conn, _ = sock.accept()
                except OSError:
                    continue
                try:
                    with ctx.wrap_socket(conn, server_side=True) as tls:
                        tls.recv(1)
                except (OSError, ssl.SSLError):
                    pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        servers.append((stop, sock, thread))
        return sock.getsockname()[1], cert_path

    yield _start
    for stop, sock, thread in servers:
        stop.set()
        thread.join(timeout=2)
        sock.close()


def test_certificate_with_plenty_of_time_is_ok(tls_server):
    port, ca = tls_server(90)
    code, out = run("check_certificate", "localhost", "--port", str(port), "--cafile", str(ca))
    assert code == 0, out
    assert "OK  localhost" in out and "CN=localhost" in out


def test_certificate_close_to_expiry_warns(tls_server):
    port, ca = tls_server(10)
    code, out = run("check_certificate", "localhost", "--port", str(port), "--cafile", str(ca), "--warn-days", "14")
    assert code == 1
    assert "WARNING" in out and "days (< 14)" in out


def test_untrusted_or_unreachable_certificate_is_an_error(tls_server):
    port, _ = tls_server(90)
    code, out = run("check_certificate", "localhost", "--port", str(port))
    assert code == 2 and "does not verify" in out and "self-signed" in out
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    closed_port = free.getsockname()[1]
    free.close()
    code, out = run("check_certificate", "127.0.0.1", "--port", str(closed_port), "--timeout", "2")
    assert code == 2 and "cannot connect" in out


# --- send_test_signal ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_send_test_signal_reports_the_answer_and_follows_the_signal(live_server, django_user_model, settings):
    strategy = StrategyFactory(strategy_id="paper-demo")
    _, token = api_token_create(user=django_user_model.objects.create_user("ops"), scope="read")

    def engine_stand_in():
        try:
            mark_executed()
        finally:
            connection.close()

    def mark_executed():
        # The execution engine's part, played by the test: the signal reaches a final state.
        for _ in range(100):
            signal = Signal.objects.filter(strategy=strategy).first()
            if signal:
                Signal.objects.filter(pk=signal.pk).update(
                    status=Signal.Status.EXECUTED,
                    started_at=signal.committed_at + timedelta(milliseconds=3),
                    sent_at=signal.received_at + timedelta(milliseconds=8),
                )
                return
            threading.Event().wait(0.05)

    thread = threading.Thread(target=engine_stand_in)
    thread.start()
    url = f"{live_server.url}/tv-webhook"
    code, out = run(
        "send_test_signal", "--url", url, "--strategy", "paper-demo", "--token", token, "--yes", "--wait", "10"
    )
    thread.join()
    signal = Signal.objects.get(strategy=strategy)
    assert code == 0, out
    assert "answer: HTTP 202" in out and f'"signal_id": {signal.pk}' in out
    assert f"signal #{signal.pk}: executed" in out and "to exchange 8 ms" in out
    assert (
        signal.action == "buy" and signal.content_type.startswith("text/plain") and signal.comment == "send_test_signal"
    )
    assert settings.WEBHOOK_PASSPHRASE not in out


@pytest.mark.django_db(transaction=True)
def test_send_test_signal_with_a_wrong_passphrase_fails(live_server):
    StrategyFactory(strategy_id="paper-demo")
    code, out = run(
        "send_test_signal", "--url", f"{live_server.url}/tv-webhook", "--strategy", "paper-demo",
        "--passphrase", "wrong", "--yes",
    )  # fmt: skip
    assert code == 1 and "answer: HTTP 401" in out and "unauthorized" in out
    assert not Signal.objects.exists()


# --- rotate_credentials_key --------------------------------------------------------------------


@pytest.mark.django_db
def test_rotate_credentials_key_moves_every_secret_to_the_newest_key(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.CREDENTIALS_ENCRYPTION_KEYS = [old]
    account = ExchangeAccountFactory()
    account.set_credentials(api_key="k", api_secret="s")
    account.save()
    settings.CREDENTIALS_ENCRYPTION_KEYS = [new, old]
    code, out = run("rotate_credentials_key")
    assert code == 0 and "Re-encrypted 2" in out
    settings.CREDENTIALS_ENCRYPTION_KEYS = [new]
    assert ExchangeAccount.objects.get(pk=account.pk).credentials()["secret"] == "s"


# --- logs --------------------------------------------------------------------------------------


def test_json_log_lines_lift_the_key_value_pairs():
    record = logging.LogRecord(
        "tvtrader.signals", logging.INFO, __file__, 1,
        "event=signal_accepted strategy=%s signal=%s reason=%r", ("trend", 42, "it's ok"), None,
    )  # fmt: skip
    line = json.loads(JsonFormatter().format(record))
    assert line["event"] == "signal_accepted" and line["strategy"] == "trend" and line["signal"] == "42"
    assert line["reason"] == "it's ok"
    assert line["level"] == "INFO" and line["logger"] == "tvtrader.signals"
