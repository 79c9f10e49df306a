"""The systemd units pass `systemd-analyze verify` and keep the properties we rely on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .conftest import BASE_DIR, DEPLOY

UNITS = [
    "tvtrader-web.socket",
    "tvtrader-web.service",
    "tvtrader-worker.service",
    "tvtrader-beat.service",
    "tvtrader.target",
    "tvtrader-backup.service",
    "tvtrader-backup.timer",
]


def render_units(directory: Path) -> dict[str, str]:
    """The installer's templates, with paths that exist here (this checkout and its venv)."""
    venv_bin = Path(sys.executable).parent
    values = [
        "USER=daemon",
        "GROUP=daemon",
        f"APP_DIR={BASE_DIR}",
        f"VENV_BIN={venv_bin}",
        f"ENV_FILE={directory / 'tvtrader.env'}",
        f"VAR_DIR={directory / 'var'}",
        f"BACKUP_DIR={directory / 'backups'}",
        "LISTEN=127.0.0.1:8000",
    ]
    for unit in UNITS:
        subprocess.run(
            [
                sys.executable,
                str(DEPLOY / "render.py"),
                str(DEPLOY / "templates" / unit),
                str(directory / unit),
                *values,
            ],
            check=True,
            capture_output=True,
        )
    return {unit: (directory / unit).read_text() for unit in UNITS}


def test_units_pass_systemd_analyze_verify(systemd_analyze_bin, tmp_path):
    render_units(tmp_path)
    done = subprocess.run(
        [systemd_analyze_bin, "verify", *[f"./{u}" for u in UNITS]], cwd=tmp_path, capture_output=True, text=True
    )
    # Warnings (unknown keys, bad specifiers, unsafe users) are printed without failing: none allowed.
    assert done.returncode == 0 and done.stdout.strip() == "" and done.stderr.strip() == "", done.stderr


def test_worker_shuts_down_warm_and_waits_for_running_orders(tmp_path):
    unit = render_units(tmp_path)["tvtrader-worker.service"]
    assert "KillSignal=SIGTERM" in unit  # Celery's warm shutdown; SIGQUIT would be cold
    assert "KillMode=mixed" in unit
    assert "-P threads" in unit and "-Q ${WORKER_QUEUES}" in unit
    assert "-n tvtrader@%%h" in unit  # %%h: Celery's %h survives systemd's own specifiers
    stop = int(unit.split("TimeoutStopSec=")[1].split()[0])
    assert stop >= 60


def test_services_restart_and_are_confined(tmp_path):
    units = render_units(tmp_path)
    for name in ("tvtrader-web.service", "tvtrader-worker.service", "tvtrader-beat.service"):
        unit = units[name]
        for line in (
            "Restart=always",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "PrivateTmp=yes",
            "StateDirectory=tvtrader",
            "User=daemon",
        ):
            assert line in unit.splitlines(), (name, line)
        assert "MemoryMax=" in unit and "TasksMax=" in unit, name


def test_the_web_socket_outlives_the_web_process(tmp_path):
    """systemd holds the listening socket; gunicorn is started on it and restarted into it."""
    units = render_units(tmp_path)
    socket_unit = units["tvtrader-web.socket"].splitlines()
    assert "ListenStream=127.0.0.1:8000" in socket_unit
    assert "WantedBy=sockets.target tvtrader.target" in socket_unit
    web = units["tvtrader-web.service"].splitlines()
    assert "Requires=tvtrader-web.socket" in web and "Restart=always" in web
    assert "tvtrader-web.socket" in units["tvtrader.target"]
    # Restarting the target (an upgrade) must not close the socket.
    assert not any(line.startswith("PartOf=") for line in socket_unit)
