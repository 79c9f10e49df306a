"""The nginx site, for real: `nginx -t` on the rendered configuration, then nginx on loopback
with a self-signed certificate in front of gunicorn running the installer's production
environment on the test database."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from signals.models import Signal, WebhookRejection
from tests import conftest as root_conftest
from tests.factories import StrategyFactory

from .conftest import DEPLOY, free_port, read_env_file

PASSPHRASE_KEY = "WEBHOOK_PASSPHRASE"


def make_cert(openssl: str, directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def write_nginx_tree(tmp: Path, install_root: Path, *, cert: Path, key: Path, upstream: str, http_port: int,
                     https_port: int, mtls_ca: Path | None = None) -> Path:  # fmt: skip
    """The installer's site and snippets, with loopback ports and every path under tmp."""
    snippets = tmp / "snippets"
    snippets.mkdir(parents=True, exist_ok=True)
    for name in ("tvtrader-webhook-allow.conf", "tvtrader-operator-allow.conf"):
        (snippets / name).write_text((install_root / "etc/nginx/snippets" / name).read_text())
    render = [sys.executable, str(DEPLOY / "render.py")]
    if mtls_ca:
        subprocess.run([*render, str(DEPLOY / "templates/nginx-mtls-server.conf"), str(snippets / "tvtrader-mtls-server.conf"),
                        f"CLIENT_CA={mtls_ca}"], check=True, capture_output=True)  # fmt: skip
        subprocess.run([*render, str(DEPLOY / "templates/nginx-mtls-location.conf"),
                        str(snippets / "tvtrader-mtls-location.conf")], check=True, capture_output=True)  # fmt: skip
    else:
        for name in ("tvtrader-mtls-server.conf", "tvtrader-mtls-location.conf"):
            (snippets / name).write_text((install_root / "etc/nginx/snippets" / name).read_text())
    subprocess.run(
        [*render, str(DEPLOY / "templates/nginx-site.conf"), str(tmp / "site.conf"), f"UPSTREAM={upstream}",
         f"HTTP_LISTEN=127.0.0.1:{http_port}", f"HTTPS_LISTEN=127.0.0.1:{https_port}", "SERVER_NAME=_",
         f"SSL_CERT={cert}", f"SSL_KEY={key}", f"ACME_ROOT={tmp / 'acme'}", f"SNIPPETS={snippets}"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
        (tmp / sub).mkdir(exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must reach the files under tmp
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"{user}worker_processes 1;\npid {tmp}/nginx.pid;\nerror_log {tmp}/logs/error.log warn;\n"
        "events { worker_connections 128; }\n"
        f"http {{\n  access_log {tmp}/logs/access.log;\n  client_body_temp_path {tmp}/body;\n"
        f"  proxy_temp_path {tmp}/proxy;\n  fastcgi_temp_path {tmp}/fastcgi;\n  uwsgi_temp_path {tmp}/uwsgi;\n"
        f"  scgi_temp_path {tmp}/scgi;\n  include {tmp}/site.conf;\n}}\n"
    )
    return conf


def nginx_test(nginx: str, conf: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [nginx, "-t", "-c", str(conf), "-p", str(conf.parent), "-e", str(conf.parent / "logs/error.log")],
        capture_output=True,
        text=True,
    )


def wait_port(port: int, proc: subprocess.Popen, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited: {log.read_text()[-3000:] if log else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{what} did not listen on {port}")


def test_rendered_site_passes_nginx_t(nginx_bin, openssl_bin, installed, tmp_path):
    cert, key = make_cert(openssl_bin, tmp_path)
    conf = write_nginx_tree(tmp_path, installed[0], cert=cert, key=key, upstream="127.0.0.1:9", http_port=free_port(),
                            https_port=free_port())  # fmt: skip
    done = nginx_test(nginx_bin, conf)
    assert done.returncode == 0, done.stderr
    assert "syntax is ok" in done.stderr and "test is successful" in done.stderr


def test_site_with_tradingview_client_certificate_check_passes_nginx_t(nginx_bin, openssl_bin, installed, tmp_path):
    cert, key = make_cert(openssl_bin, tmp_path)
    conf = write_nginx_tree(tmp_path, installed[0], cert=cert, key=key, upstream="127.0.0.1:9", http_port=free_port(),
                            https_port=free_port(), mtls_ca=cert)  # fmt: skip
    done = nginx_test(nginx_bin, conf)
    assert done.returncode == 0, done.stderr
    site = (tmp_path / "snippets/tvtrader-mtls-location.conf").read_text()
    assert "$ssl_client_verify != SUCCESS" in site and "CN=TradingView Webhooks" in site


@pytest.fixture(scope="module")
def stack(nginx_bin, openssl_bin, installed, tmp_path_factory, django_db_setup):
    """gunicorn (production env from the installer, test database) behind nginx on loopback."""
    tmp = tmp_path_factory.mktemp("nginx-stack")
    root = installed[0]
    env = dict(os.environ)
    env.update(read_env_file(root / "etc/tvtrader/tvtrader.env"))
    app_port, http_port, https_port = free_port(), free_port(), free_port()
    env.update(
        DATABASE_URL=root_conftest.test_database_url(),
        REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"),
        TVTRADER_VAR_DIR=str(tmp / "var"),
        STATIC_ROOT=str(tmp / "static"),
        GUNICORN_WORKERS="1",
        GUNICORN_BIND=f"127.0.0.1:{app_port}",
    )
    env.pop("CELERY_BROKER_URL", None)
    app_log = tmp / "gunicorn.log"
    app = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "tvtrader.wsgi", "-c", str(DEPLOY / "gunicorn.conf.py")],
        cwd=DEPLOY.parent,
        env=env,
        stdout=app_log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    cert, key = make_cert(openssl_bin, tmp)
    conf = write_nginx_tree(tmp, root, cert=cert, key=key, upstream=f"127.0.0.1:{app_port}", http_port=http_port,
                            https_port=https_port)  # fmt: skip
    nginx = subprocess.Popen(
        [nginx_bin, "-c", str(conf), "-p", str(tmp), "-e", str(tmp / "logs/error.log"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "nginx.out").open("wb"),
        start_new_session=True,
    )
    try:
        wait_port(app_port, app, "gunicorn", app_log)
        wait_port(https_port, nginx, "nginx", tmp / "nginx.out")
        ctx = ssl.create_default_context(cafile=str(cert))
        yield {
            "env": env,
            "ctx": ctx,
            "app_port": app_port,
            "http_port": http_port,
            "https_port": https_port,
            "passphrase": env[PASSPHRASE_KEY],
        }
    finally:
        for proc in (nginx, app):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in (nginx, app):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def request(stack, method, path, *, body=None, headers=None, source="127.0.0.1", scheme="https", port=None):
    """One request from a chosen loopback source address (127.0.0.2 is 'a stranger')."""
    if scheme == "https":
        conn = http.client.HTTPSConnection(
            "127.0.0.1", port or stack["https_port"], context=stack["ctx"], timeout=10, source_address=(source, 0)
        )
    else:
        conn = http.client.HTTPConnection(
            "127.0.0.1", port or stack["http_port"], timeout=10, source_address=(source, 0)
        )
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def alert(stack, **overrides) -> str:
    body = {
        "passphrase": stack["passphrase"],
        "action": "buy",
        "ticker": "BTCUSDT.P",
        "exchange": "BYBIT",
        "price": 65000.5,
        "volume": 0.01,
        "strategy_id": "demo",
        "bar_time": "2026-11-24T02:00:00Z",
    }
    body.update(overrides)
    return json.dumps(body)


@pytest.mark.slow
def test_webhook_through_nginx_over_https_is_accepted_with_the_real_peer_address(stack, transactional_db):
    StrategyFactory(strategy_id="demo")
    status, _, body = request(
        stack,
        "POST",
        "/tv-webhook",
        body=alert(stack),
        # Forged by the client: nginx overwrites it with the TCP peer.
        headers={"Content-Type": "text/plain", "X-Forwarded-For": "52.89.214.238"},
    )
    assert status == 202, body
    answer = json.loads(body)
    assert answer["status"] == "accepted"
    signal = Signal.objects.get(pk=answer["signal_id"])
    assert signal.remote_addr == "127.0.0.1"


@pytest.mark.slow
def test_forged_forwarded_for_from_a_stranger_is_refused_by_nginx(stack, transactional_db):
    StrategyFactory(strategy_id="demo")
    status, _, body = request(
        stack,
        "POST",
        "/tv-webhook",
        body=alert(stack, bar_time="2026-11-24T02:15:00Z"),
        headers={"Content-Type": "application/json", "X-Forwarded-For": "52.89.214.238", "X-Real-IP": "52.89.214.238"},
        source="127.0.0.2",
    )
    assert status == 403
    assert b"nginx" in body  # refused at the proxy, before the app
    assert not Signal.objects.exists()


@pytest.mark.slow
def test_oversized_webhook_body_is_refused_by_nginx(stack, transactional_db):
    StrategyFactory(strategy_id="demo")
    big = alert(stack, comment="x" * 20_000)
    status, _, body = request(stack, "POST", "/tv-webhook", body=big, headers={"Content-Type": "text/plain"})
    assert status == 413
    assert b"nginx" in body  # nginx's page, not the app's JSON: the body never reached gunicorn
    assert not Signal.objects.exists()
    assert not WebhookRejection.objects.filter(reason="body_too_large").exists()


@pytest.mark.slow
def test_plain_http_with_forged_https_header_is_redirected_not_served(stack, transactional_db):
    StrategyFactory(strategy_id="demo")
    status, headers, _ = request(
        stack,
        "POST",
        "/tv-webhook",
        body=alert(stack),
        headers={"Content-Type": "text/plain", "X-Forwarded-Proto": "https"},
        scheme="http",
    )
    assert status == 301
    assert headers["Location"].startswith("https://")
    assert not Signal.objects.exists()


@pytest.mark.slow
def test_app_ignores_forwarding_headers_from_anyone_but_the_proxy(stack, transactional_db):
    """Straight to gunicorn from another address: its X-Forwarded-Proto cannot make the
    request look like HTTPS (so it is redirected), and its X-Forwarded-For is not used."""
    StrategyFactory(strategy_id="demo")
    status, headers, _ = request(
        stack,
        "POST",
        "/tv-webhook",
        body=alert(stack),
        headers={"Content-Type": "text/plain", "X-Forwarded-Proto": "https", "X-Forwarded-For": "52.89.214.238"},
        source="127.0.0.2",
        scheme="http",
        port=stack["app_port"],
    )
    assert status == 301 and headers["Location"].startswith("https://")
    assert not Signal.objects.exists()


@pytest.mark.slow
def test_admin_login_through_nginx_is_served_as_https_with_hsts(stack, transactional_db):
    status, headers, body = request(stack, "GET", "/admin/login/")
    assert status == 200, body[:500]
    assert "max-age=31536000" in headers.get("Strict-Transport-Security", "")
    assert "Secure" in headers.get("Set-Cookie", "Secure")


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/admin/login/", "/admin/", "/api/health/", "/api/schema/", "/metrics"])
def test_console_api_and_metrics_refuse_a_stranger_at_the_proxy(stack, transactional_db, path):
    """Installed with --operator-ips 127.0.0.1: 127.0.0.2 gets nginx's 403, the operator the app."""
    status, _, body = request(stack, "GET", path, source="127.0.0.2")
    assert status == 403 and b"nginx" in body
    status, _, body = request(stack, "GET", path)
    assert status != 403 and b"nginx" not in body, body[:300]
