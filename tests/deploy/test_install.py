"""deploy/install.sh, end to end in a throwaway root: what it writes, that a second run
changes nothing, that the documented command runs to the end, that certbot itself accepts the
command line it builds, and that it refuses to leave the console protected by a password only."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

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
    operators = (installed[0] / "etc/nginx/snippets/tvtrader-operator-allow.conf").read_text()
    assert re.findall(r"^allow (\S+);$", operators, re.M) == ["127.0.0.1"]
    assert operators.strip().endswith("deny all;")


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


# --- The documented command and certbot's own parser ------------------------------------------


def documented_install_command() -> list[str]:
    """The `sudo deploy/install.sh ...` command of docs/deploy.md's Install section, as argv."""
    text = (BASE_DIR / "docs/deploy.md").read_text()
    section = text.split("## Install", 1)[1]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    joined = block.replace("\\\n", " ")
    line = next(ln for ln in joined.splitlines() if "deploy/install.sh" in ln)
    argv = shlex.split(line.split("#", 1)[0])
    assert argv[:2] == ["sudo", "deploy/install.sh"], line
    return argv[2:]


def would_run(output: str, program: str) -> list[str]:
    """The argv of the `[would run] program ...` line the installer printed (shell-quoted)."""
    lines = [ln for ln in output.splitlines() if ln.startswith(f"[would run] {program} ")]
    assert len(lines) == 1, output[-3000:]
    return shlex.split(lines[0].removeprefix("[would run] "))


def certbot_parse(argv: list[str], root: Path):
    """certbot's own command-line parser on `argv` (no network, nothing written). The webroot
    path is looked up under the throwaway root, where the installer created it: certbot's
    webroot plugin insists that the directory exists while parsing."""
    from certbot._internal import cli
    from certbot._internal.plugins import disco, selection

    assert argv[0] == "certbot"
    args = list(argv[1:])
    i = args.index("-w")
    args[i + 1] = str(root) + args[i + 1]
    try:
        config = cli.prepare_and_parse_args(disco.PluginsRegistry.find_all(), args)
    except SystemExit as exc:  # argparse: "unrecognized arguments" and the like
        raise AssertionError(f"certbot refused {shlex.join(argv)} (exit {exc.code})") from None
    return config, selection.cli_plugin_requests(config)


def test_the_documented_install_command_runs_to_the_end_and_certbot_accepts_its_line(tmp_path, capsys):
    argv = documented_install_command()
    assert "--domain" in argv and "--email" in argv
    done = run_installer(tmp_path, *argv)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "==> done:" in done.stdout and "WARNING (--insecure-open-admin)" not in done.stderr

    config, (authenticator, installer) = certbot_parse(would_run(done.stdout, "certbot"), tmp_path)
    email = argv[argv.index("--email") + 1]
    domain = argv[argv.index("--domain") + 1]
    assert config.verb == "certonly"
    assert config.email == email and not config.register_unsafely_without_email
    assert [str(d) for d in config.domains] == [domain]
    assert authenticator == "webroot" and installer is None
    assert config.webroot_path == [str(tmp_path / "var/www/letsencrypt")]
    assert config.noninteractive_mode and config.tos
    assert "unrecognized" not in capsys.readouterr().err


def test_without_an_email_certbot_registers_without_one(tmp_path):
    done = run_installer(tmp_path, "--domain", "bot.example.com", "--operator-ips", "203.0.113.7")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    config, _ = certbot_parse(would_run(done.stdout, "certbot"), tmp_path)
    assert config.register_unsafely_without_email and not config.email


def test_certbot_parse_refuses_the_line_with_the_repeated_email(tmp_path):
    """The check above can fail: the line the old `${EMAIL:---register-unsafely-without-email}`
    produced is refused by certbot."""
    (tmp_path / "var/www/letsencrypt").mkdir(parents=True)
    broken = ["certbot", "certonly", "--webroot", "-w", "/var/www/letsencrypt", "-d", "bot.example.com",
              "--non-interactive", "--agree-tos", "--email", "you@example.com", "you@example.com"]  # fmt: skip
    with pytest.raises(AssertionError, match="certbot refused"):
        certbot_parse(broken, tmp_path)


# --- The console is never protected by a password alone ---------------------------------------


def test_installer_stops_when_neither_operator_ips_nor_2fa_is_chosen(tmp_path):
    done = run_installer(tmp_path / "root", "--domain", "bot.example.com", "--email", "you@example.com")
    assert done.returncode != 0
    for option in ("--operator-ips", "--admin-2fa", "--insecure-open-admin"):
        assert option in done.stderr
    assert not any((tmp_path / "root").iterdir())  # stopped before writing anything


def test_admin_2fa_alone_is_enough_and_switches_the_second_factor_on(tmp_path):
    done = run_installer(tmp_path, "--admin-2fa", "--public-ip", "127.0.0.1")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    env = read_env_file(tmp_path / "etc/tvtrader/tvtrader.env")
    assert env["ADMIN_REQUIRE_2FA"] == "true"
    assert "admin_otp_enrol" in done.stdout  # every superuser gets an authenticator on the real system
    assert "WARNING" not in done.stderr
    # Remembered: the documented upgrade (no options) keeps it on and changes nothing.
    again = run_installer(tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "==> done: 0 change(s)" in again.stdout
    assert read_env_file(tmp_path / "etc/tvtrader/tvtrader.env")["ADMIN_REQUIRE_2FA"] == "true"


def test_operator_ips_install_keeps_2fa_off_and_restricts_the_console(installed):
    root = installed[0]
    assert read_env_file(root / "etc/tvtrader/tvtrader.env")["ADMIN_REQUIRE_2FA"] == "false"
    site = (root / "etc/nginx/sites-available/tvtrader.conf").read_text()
    # On HTTPS everything but the webhook and /health goes through the operator include.
    catch_all = site.rsplit("location / {", 1)[1].split("}", 1)[0]
    assert "tvtrader-operator-allow.conf" in catch_all


def test_the_explicit_opt_out_is_loud_on_every_run(tmp_path):
    done = run_installer(tmp_path, "--insecure-open-admin", "--public-ip", "127.0.0.1")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert done.stderr.count("WARNING (--insecure-open-admin)") == 2  # at the start and at the end
    assert "allow all;" in (tmp_path / "etc/nginx/snippets/tvtrader-operator-allow.conf").read_text()
    again = run_installer(tmp_path)
    assert again.returncode == 0 and "WARNING (--insecure-open-admin)" in again.stderr
    # Withdrawn: back to refusing until an operator list or 2FA is given.
    withdrawn = run_installer(tmp_path, "--no-insecure-open-admin")
    assert withdrawn.returncode != 0 and "--operator-ips" in withdrawn.stderr


# --- A checkout's .env ----------------------------------------------------------------------


def copy_checkout(dest: Path) -> Path:
    ignore = shutil.ignore_patterns(".git", ".venv", "var", "staticfiles", "artifacts", "__pycache__", ".*_cache")
    shutil.copytree(BASE_DIR, dest, ignore=ignore)
    return dest


def test_a_checkouts_env_file_reaches_the_release_mode_600_for_the_service_user(tmp_path):
    checkout = copy_checkout(tmp_path / "checkout")
    (checkout / ".env").write_text("TELEGRAM_BOT_TOKEN=123:checkout-secret\n")
    (checkout / ".env").chmod(0o644)
    root = tmp_path / "root"
    done = run_installer(root, "--operator-ips", "203.0.113.7", "--public-ip", "127.0.0.1", source=checkout)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    release = root / "opt/tvtrader" / os.readlink(root / "opt/tvtrader/current")
    copied = release / ".env"
    assert copied.read_text() == "TELEGRAM_BOT_TOKEN=123:checkout-secret\n"
    assert stat.S_IMODE(copied.stat().st_mode) == 0o600
    owner = f"[would run] chown tvtrader:tvtrader /opt/tvtrader/{os.readlink(root / 'opt/tvtrader/current')}/.env"
    assert owner in done.stdout

    # A release an older installer wrote with the checkout's mode is corrected on the next run.
    copied.chmod(0o644)
    again = run_installer(root, source=checkout)
    assert again.returncode == 0, again.stderr[-3000:]
    assert stat.S_IMODE(copied.stat().st_mode) == 0o600


@pytest.mark.django_db
def test_admin_2fa_install_step_lists_exactly_the_superusers_without_an_authenticator(capsys):
    """The Python the installer runs (real system, --admin-2fa) to pick who gets enrolled."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django_otp.plugins.otp_totp.models import TOTPDevice

    script = (BASE_DIR / "deploy/install.sh").read_text()
    code = script.split("LOGINS=$(manage shell -v 0 -c '", 1)[1].split("')", 1)[0]
    users = get_user_model().objects
    users.create_superuser("admin", "", "pw-admin-1")
    enrolled = users.create_superuser("enrolled", "", "pw-enrolled-1")
    TOTPDevice.objects.create(user=enrolled, name="phone", confirmed=True)
    users.create_superuser("gone", "", "pw-gone-1", is_active=False)
    users.create_user("staff", "", "pw-staff-1", is_staff=True)

    capsys.readouterr()
    call_command("shell", "-v", "0", "-c", code)
    logins = capsys.readouterr().out.split()
    assert logins == ["admin"]
    for login in logins:  # what the installer does next
        call_command("admin_otp_enrol", login)
    assert "otpauth://totp/" in capsys.readouterr().out
    call_command("shell", "-v", "0", "-c", code)
    assert capsys.readouterr().out.split() == []  # a re-run enrols nobody twice


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


def test_a_rerun_keeps_live_trading_and_settings_added_by_hand(tmp_path):
    """The documented upgrade re-runs the installer without options: an operator who switched
    live trading on (as docs/deploy.md says, by editing the env file) must not find it off."""
    first = run_installer(tmp_path, "--operator-ips", "203.0.113.7", "--public-ip", "127.0.0.1")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    env_file = tmp_path / "etc/tvtrader/tvtrader.env"
    before = read_env_file(env_file)
    assert before["LIVE_TRADING"] == "false"
    text = env_file.read_text().replace("LIVE_TRADING=false", "LIVE_TRADING=true")
    env_file.write_text(text.replace("WORKER_CONCURRENCY=22", "WORKER_CONCURRENCY=40") + "TELEGRAM_BOT_TOKEN=123:abc\n")

    again = run_installer(tmp_path)
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    after = read_env_file(env_file)
    assert after["LIVE_TRADING"] == "true"
    assert after["WORKER_CONCURRENCY"] == "40"
    assert after["TELEGRAM_BOT_TOKEN"] == "123:abc"
    assert after["SECRET_KEY"] == before["SECRET_KEY"]
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    # A third run changes nothing more (the kept lines are not added twice).
    third = run_installer(tmp_path)
    assert third.returncode == 0 and env_file.read_text().count("TELEGRAM_BOT_TOKEN") == 1


def test_a_generated_passphrase_starting_with_a_dash_is_printed_in_the_alert_message(tmp_path):
    """token_urlsafe() starts with "-" one time in 64: the installer must still pass it as the
    value of --passphrase (it once stopped with "expected one argument")."""
    env_file = tmp_path / "etc/tvtrader/tvtrader.env"
    env_file.parent.mkdir(parents=True)
    env_file.write_text("WEBHOOK_PASSPHRASE=-dash-first-passphrase-123\n")
    env_file.chmod(0o600)
    done = run_installer(tmp_path, "--operator-ips", "203.0.113.7", "--public-ip", "127.0.0.1")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert '"passphrase": "-dash-first-passphrase-123"' in done.stdout
    assert read_env_file(env_file)["WEBHOOK_PASSPHRASE"] == "-dash-first-passphrase-123"
