"""Fixtures for deploy/: the tools the checks need (skipped when missing, see
tests/system_tools.py), free loopback ports, and one installer run into a throwaway root that
the tests then inspect (nginx files, units, env file)."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.system_tools import require_tool

BASE_DIR = Path(__file__).resolve().parents[2]
DEPLOY = BASE_DIR / "deploy"
VENV = Path(sys.executable).parent.parent


@pytest.fixture(scope="session")
def nginx_bin() -> str:
    return require_tool("nginx", package="nginx", needed_for="the nginx site checks")


@pytest.fixture(scope="session")
def openssl_bin() -> str:
    return require_tool("openssl", package="openssl", needed_for="test certificates")


@pytest.fixture(scope="session")
def systemd_analyze_bin() -> str:
    return require_tool("systemd-analyze", package="systemd", needed_for="checking the unit files")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_installer(root: Path, *extra: str, source: Path = BASE_DIR) -> subprocess.CompletedProcess:
    """deploy/install.sh of `source` (a checkout) into the throwaway root `root`."""
    require_tool("openssl", package="openssl", needed_for="the installer's self-signed certificate")
    return subprocess.run(
        ["bash", str(source / "deploy" / "install.sh"), "--root", str(root), "--venv", str(VENV), *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )


def tree_state(root: Path) -> dict[str, tuple]:
    """Every path under root with its type, mode, link target and content hash."""
    state = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        st = path.lstat()
        if path.is_symlink():
            state[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            state[rel] = ("dir", oct(st.st_mode & 0o7777))
        else:
            state[rel] = ("file", oct(st.st_mode & 0o7777), hashlib.sha256(path.read_bytes()).hexdigest())
    return state


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


@pytest.fixture(scope="session")
def installed(tmp_path_factory):
    """deploy/install.sh run twice into a throwaway root (the webhook allowlist also admits
    127.0.0.1 so the live nginx test can post through it; 127.0.0.1 is the operator, 127.0.0.2
    a stranger). The second run passes no options, as the documented upgrade does: the
    remembered ones apply. Returns (root, first run, second run, state after the first run)."""
    root = tmp_path_factory.mktemp("installroot")
    first = run_installer(
        root, "--extra-webhook-ips", "127.0.0.1", "--public-ip", "127.0.0.1", "--operator-ips", "127.0.0.1"
    )
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    state = tree_state(root)
    second = run_installer(root)
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    return root, first, second, state
