"""Fixtures for deploy/: the tools the checks need, free loopback ports, and one installer
run into a throwaway root that the tests then inspect (nginx files, units, env file)."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]
DEPLOY = BASE_DIR / "deploy"
VENV = Path(sys.executable).parent.parent


def _apt_install(*candidates: str) -> None:
    """Install the first package apt can, non-interactively, without starting its service."""
    if os.geteuid() != 0:
        pytest.fail(f"{candidates[0]} is missing and the tests are not root: apt-get install {candidates[0]}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # Keep the package's own service (nginx on :80) from starting: Debian's policy-rc.d hook.
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = not policy.exists()
    if made_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        lock = ["-o", "DPkg::Lock::Timeout=300"]
        subprocess.run(["apt-get", *lock, "update", "-qq"], env=env, check=True, capture_output=True)
        errors = []
        for pkg in candidates:
            done = subprocess.run(
                ["apt-get", *lock, "install", "-y", "-qq", "--no-install-recommends", pkg],
                env=env,
                capture_output=True,
                text=True,
            )
            if done.returncode == 0:
                return
            errors.append(done.stderr[-2000:])
        pytest.fail(f"could not install any of {candidates}: {errors}")
    finally:
        if made_policy:
            policy.unlink()


def _tool(name: str, *packages: str) -> str:
    found = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None
    )
    if found:
        return found
    _apt_install(*packages)
    found = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None
    )
    if not found:
        pytest.fail(f"{name} still missing after installing {packages}")
    return found


@pytest.fixture(scope="session")
def nginx_bin() -> str:
    return _tool("nginx", "nginx-light", "nginx")


@pytest.fixture(scope="session")
def openssl_bin() -> str:
    return _tool("openssl", "openssl")


@pytest.fixture(scope="session")
def systemd_analyze_bin() -> str:
    return _tool("systemd-analyze", "systemd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_installer(root: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(DEPLOY / "install.sh"), "--root", str(root), "--venv", str(VENV), *extra],
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
    """deploy/install.sh run twice into a throwaway root (the allowlist also admits 127.0.0.1
    so the live nginx test can post through it). The second run passes no options, as the
    documented upgrade does: the remembered ones apply. Returns (root, first run, second run,
    state after the first run)."""
    root = tmp_path_factory.mktemp("installroot")
    first = run_installer(root, "--extra-webhook-ips", "127.0.0.1", "--public-ip", "127.0.0.1")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    state = tree_state(root)
    second = run_installer(root)
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    return root, first, second, state
