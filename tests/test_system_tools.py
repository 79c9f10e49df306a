"""Tests that need a distribution tool skip without it, or fail under TVTRADER_REQUIRE_SYSTEM_TOOLS=1."""

from __future__ import annotations

import pytest

from tests.system_tools import REQUIRE_ENV, require_tool


def test_a_missing_tool_skips_with_the_package_to_install(monkeypatch):
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-such-tool-7 is not installed .*Debian package pkg-7"):
        require_tool("no-such-tool-7", package="pkg-7", needed_for="this check")


def test_a_missing_tool_fails_when_ci_requires_system_tools(monkeypatch):
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="no-such-tool-7 is not installed"):
        require_tool("no-such-tool-7", package="pkg-7", needed_for="this check")


def test_a_present_tool_is_found_outside_path(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert require_tool("sh", package="dash", needed_for="this check") in ("/usr/bin/sh", "/bin/sh")
