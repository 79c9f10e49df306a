"""firewall.sh (dry run) and backup.sh / restore.sh against a scratch PostgreSQL database."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import psycopg
import pytest
from django.db import connection

from .conftest import BASE_DIR, DEPLOY


def firewall(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, APP_DIR=str(BASE_DIR), PYTHON=sys.executable, ENV_FILE="/nonexistent")
    return subprocess.run(
        ["bash", str(DEPLOY / "firewall.sh"), "--dry-run", *args], env=env, capture_output=True, text=True
    )


def test_firewall_keeps_ssh_open_before_enabling():
    done = firewall()
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines.index("ufw limit 22/tcp comment ssh") < lines.index("ufw --force enable")
    assert "ufw allow 443/tcp comment tvtrader: https" in lines
    assert lines[0] == "ufw default deny incoming"


def test_firewall_can_open_443_only_to_tradingview_and_operators():
    from django.conf import settings

    done = firewall("--restrict-443", "--operator-ips", "203.0.113.7", "--ssh-port", "2222")
    assert done.returncode == 0, done.stderr
    opened = [line.split()[3] for line in done.stdout.splitlines() if line.startswith("ufw allow from ")]
    assert opened == [*settings.TRADINGVIEW_WEBHOOK_IPS, *settings.WEBHOOK_EXTRA_ALLOWED_IPS, "203.0.113.7"]
    assert "ufw allow 443/tcp comment tvtrader: https" not in done.stdout
    assert "ufw limit 2222/tcp comment ssh" in done.stdout


@pytest.fixture
def scratch_db(django_db_setup, django_db_blocker):
    s = connection.settings_dict
    if not s["ENGINE"].endswith("postgresql"):
        pytest.fail("backup/restore needs PostgreSQL (the production database)")
    name = f"deploy_scratch_{uuid.uuid4().hex[:8]}"
    auth = f"{s.get('USER') or 'postgres'}{':' + s['PASSWORD'] if s.get('PASSWORD') else ''}"
    base = f"postgresql://{auth}@{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_backup_then_restore_brings_rows_back_and_old_dumps_rotate(scratch_db, tmp_path):
    with psycopg.connect(scratch_db, autocommit=True) as db:
        db.execute("CREATE TABLE fills (id int PRIMARY KEY, qty numeric)")
        db.execute("INSERT INTO fills VALUES (1, 0.01), (2, 0.02)")
    dest = tmp_path / "backups"
    dest.mkdir()
    for stamp in ("20260101T000000Z", "20260102T000000Z", "20260103T000000Z"):
        (dest / f"tvtrader-{stamp}.dump").write_bytes(b"old")
    done = subprocess.run(
        ["bash", str(DEPLOY / "backup.sh"), "--dest", str(dest), "--keep", "2", "--database-url", scratch_db],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    dumps = sorted(p.name for p in dest.iterdir())
    assert len(dumps) == 2 and dumps[0] == "tvtrader-20260103T000000Z.dump"
    newest = dest / dumps[1]
    assert oct(newest.stat().st_mode & 0o777) == "0o600"

    with psycopg.connect(scratch_db, autocommit=True) as db:
        db.execute("DELETE FROM fills WHERE id = 2")
        db.execute("INSERT INTO fills VALUES (3, 0.03)")
    done = subprocess.run(
        ["bash", str(DEPLOY / "restore.sh"), str(newest), "--database-url", scratch_db, "--no-stop", "--yes"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    with psycopg.connect(scratch_db) as db:
        assert db.execute("SELECT id FROM fills ORDER BY id").fetchall() == [(1,), (2,)]


def test_restore_refuses_a_file_that_is_not_a_dump(tmp_path):
    bogus = tmp_path / "x.dump"
    bogus.write_text("not a dump")
    done = subprocess.run(
        ["bash", str(DEPLOY / "restore.sh"), str(bogus), "--no-stop", "--yes"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "not a pg_dump" in done.stderr
