"""Distribution tools some tests drive for real (nginx, chromium, systemd-analyze, openssl).

Tests never install them: `.ci/run` does, as root, before `make test`. Where a tool is missing
the test is skipped with the package to install, unless TVTRADER_REQUIRE_SYSTEM_TOOLS=1 (set
by `.ci/run`), where a missing tool fails the test instead of hiding it.
"""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRE_ENV = "TVTRADER_REQUIRE_SYSTEM_TOOLS"


def find_tool(name: str) -> str | None:
    """`name` on PATH, or in the sbin/bin directories a non-root PATH often lacks."""
    found = shutil.which(name)
    if found:
        return found
    for directory in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        path = os.path.join(directory, name)
        if os.access(path, os.X_OK):
            return path
    return None


def require_tool(name: str, *, package: str, needed_for: str) -> str:
    """The tool's path; else skip (or fail under TVTRADER_REQUIRE_SYSTEM_TOOLS=1) naming the
    package that provides it."""
    found = find_tool(name)
    if found:
        return found
    reason = f"{name} is not installed (Debian package {package}; .ci/run installs it), needed for {needed_for}"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason}; {REQUIRE_ENV}=1 requires it", pytrace=False)
    pytest.skip(reason)
