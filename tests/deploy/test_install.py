"""deploy/install.sh, end to end in a throwaway root: what it writes, and that a second run
changes nothing."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys

from .conftest import BASE_DIR, read_env_file, run_installer, tree_state

SECRETS = ["SECRET_KEY", "WEBHOOK_PASSPHRASE", "REDIS_PASSWORD", "CREDENTIALS_ENCRYPTION_KEYS"]


def test_second_install_run_changes_nothing(installed):
    root, first, second, state_after_first = installed
    assert "change(s) this run" in first.stdout and "==> done: 0 change(s)" not in first.stdout
    assert "==> done: 0 change(s) this run" in second.stdout
    assert tree_state(root) == state_after_first


def test_env_file_is_root_only_with_real_generated_secrets(installed):
    root, first, _, _ = installed
    env_file = root / "etc/tvtrader/tvtrader.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "etc/tvtrader").stat().st_mode) == 0o750
    env = read_env_file(env_file)
    for key in SECRETS:
        value = env[key]
        assert len(value) >= 32, key
        assert not re.search(r"change|placeholder|example|@@|xxx|secret", value, re.I), key
    assert len(set(env[k] for k in SECRETS)) == len(SECRETS)
    # The Redis password in the URL and in redis.conf is the one generated.
    assert env["REDIS_URL"] == f"redis://:{env['REDIS_PASSWORD']}@127.0.0.1:6379/0"
    redis_conf = root / "etc/redis/tvtrader.conf"
    assert f"requirepass {env['REDIS_PASSWORD']}" in redis_conf.read_text()
    assert stat.S_IMODE(redis_conf.stat().st_mode) == 0o640
    # The passphrase to paste into TradingView is the one in the file.
    assert env["WEBHOOK_PASSPHRASE"] in first.stdout
    assert env["LIVE_TRADING"] == "false"
    assert env["TRUSTED_PROXIES"] == "127.0.0.1" and env["BEHIND_TLS_PROXY"] == "true"


def test_credentials_key_is_a_working_fernet_key(installed):
    from cryptography.fernet import Fernet

    root = installed[0]
    key = read_env_file(root / "etc/tvtrader/tvtrader.env")["CREDENTIALS_ENCRYPTION_KEYS"]
    assert Fernet(key).decrypt(Fernet(key).encrypt(b"api-secret")) == b"api-secret"


def test_redis_is_local_persistent_and_never_evicts(installed):
    conf = (installed[0] / "etc/redis/tvtrader.conf").read_text()
    for line in ("bind 127.0.0.1 -::1", "protected-mode yes", "appendonly yes", "appendfsync everysec"):
        assert line in conf.splitlines()
    assert "maxmemory-policy noeviction" in conf.splitlines()
    # Included last in the distribution's redis.conf, so these settings win.
    main = (installed[0] / "etc/redis/redis.conf").read_text().strip().splitlines()
    assert main[-1] == "include /etc/redis/tvtrader.conf"


def test_redis_actually_runs_with_the_generated_config(installed, tmp_path):
    """A real redis-server with the rendered config: password required, AOF on, noeviction."""
    import redis

    from .conftest import free_port

    root = installed[0]
    env = read_env_file(root / "etc/tvtrader/tvtrader.env")
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", str(root / "etc/redis/tvtrader.conf"), "--port", str(port), "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(host="127.0.0.1", port=port, password=env["REDIS_PASSWORD"], socket_timeout=2)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                import time

                time.sleep(0.05)
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        anonymous = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
        try:
            anonymous.ping()
            raise AssertionError("Redis answered without the password")
        except redis.AuthenticationError:
            pass
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_check_deploy_is_clean_with_the_installed_env_file(installed, tmp_path):
    root = installed[0]
    env = dict(os.environ)
    env.update(read_env_file(root / "etc/tvtrader/tvtrader.env"))
    env["TVTRADER_VAR_DIR"] = str(tmp_path / "var")
    env["STATIC_ROOT"] = str(tmp_path / "static")
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_check_deploy_fails_when_a_security_setting_is_dropped(installed, tmp_path):
    """The check above can fail: without SECURE_SSL_REDIRECT it reports security.W008."""
    root = installed[0]
    env = dict(os.environ)
    env.update(read_env_file(root / "etc/tvtrader/tvtrader.env"))
    env.update(TVTRADER_VAR_DIR=str(tmp_path / "var"), STATIC_ROOT=str(tmp_path / "static"))
    env["SECURE_SSL_REDIRECT"] = "false"
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "security.W008" in done.stdout + done.stderr


def test_webhook_allowlist_include_is_generated_from_the_app_settings(installed):
    from django.conf import settings

    text = (installed[0] / "etc/nginx/snippets/tvtrader-webhook-allow.conf").read_text()
    allowed = re.findall(r"^allow (\S+);$", text, re.M)
    assert allowed == [*settings.TRADINGVIEW_WEBHOOK_IPS, "127.0.0.1"]
    assert text.strip().endswith("deny all;")
    # No operator list given: the admin is open (its own login and lockouts apply).
    operators = (installed[0] / "etc/nginx/snippets/tvtrader-operator-allow.conf").read_text()
    assert "allow all;" in operators


def test_operator_ips_render_the_admin_include(capsys):
    from django.core.management import call_command

    call_command("render_nginx_allowlist", "--operator-ips", "203.0.113.7, 198.51.100.0/24")
    text = capsys.readouterr().out
    assert re.findall(r"^allow (\S+);$", text, re.M) == ["203.0.113.7", "198.51.100.0/24"]
    assert text.strip().endswith("deny all;")


def test_a_bad_operator_address_stops_the_installer_before_it_writes_anything(tmp_path):
    bad = run_installer(tmp_path, "--operator-ips", "203.0.113.999")
    assert bad.returncode != 0
    assert "203.0.113.999" in bad.stderr
    assert list(tmp_path.iterdir()) == []


def test_release_switch_points_units_at_the_current_release(installed):
    root = installed[0]
    current = root / "opt/tvtrader/current"
    assert current.is_symlink() and os.readlink(current).startswith("releases/")
    assert (current / "manage.py").is_file()
    web = (root / "etc/systemd/system/tvtrader-web.service").read_text()
    assert "WorkingDirectory=/opt/tvtrader/current" in web
    assert "EnvironmentFile=/etc/tvtrader/tvtrader.env" in web


def test_the_installers_alert_message_is_the_generated_one_and_goes_through_the_webhook(
    installed, client, settings, db
):
    import json
    import textwrap

    from signals.alert_message import alert_message
    from tests.factories import StrategyFactory
    from tests.signals.test_alert_template import send

    root, first, _, _ = installed
    passphrase = read_env_file(root / "etc/tvtrader/tvtrader.env")["WEBHOOK_PASSPHRASE"]
    after = first.stdout.split("admin shows its own, and an indicator variant):\n", 1)[1]
    shown = textwrap.dedent(after.split("\n  Secrets and settings:", 1)[0])
    assert shown == alert_message(passphrase=passphrase)
    assert json.loads(shown)["passphrase"] == passphrase

    settings.WEBHOOK_PASSPHRASE = passphrase
    StrategyFactory(strategy_id="demo")
    assert send(client, shown, passphrase).strategy_key == "demo"
