"""The fault suite's table: every scenario run in this session, printed at the end."""

from __future__ import annotations

from .harness import format_table

ROWS: list[dict[str, str]] = []


def pytest_terminal_summary(terminalreporter):
    if ROWS:
        terminalreporter.write_sep("=", "fault scenarios")
        terminalreporter.write_line(format_table(ROWS))
