#!/usr/bin/env python3
"""Render one deploy template (or stdin) to a file, writing only when the content changes.

Used by install.sh and by the tests, so both produce exactly the same files. Stdlib only:
the installer runs it with the system python3 before any virtualenv exists.

    render.py TEMPLATE|- DEST [--mode 0644] [KEY=VALUE ...]

Placeholders are `@@KEY@@` (nginx and systemd both use `$` and `%` themselves). A missing
value or a placeholder left over is an error. Prints `changed DEST` or `unchanged DEST`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

PLACEHOLDER = re.compile(r"@@([A-Z][A-Z0-9_]*)@@")


def render(text: str, values: dict[str, str]) -> str:
    missing = sorted({m.group(1) for m in PLACEHOLDER.finditer(text)} - values.keys())
    if missing:
        raise SystemExit(f"render.py: no value for {', '.join(missing)}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def write_if_changed(dest: Path, content: str, mode: int) -> bool:
    """Atomically replace `dest` when its content or mode differs; True when it did."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and dest.read_text() == content:
        if (dest.stat().st_mode & 0o7777) != mode:
            os.chmod(dest, mode)
            return True
        return False
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        os.fchmod(fd, mode)  # before any byte is written: secrets are never world-readable
        with os.fdopen(fd, "w") as fh:
            fh.write(content)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("template")
    parser.add_argument("dest")
    parser.add_argument("--mode", default="0644")
    parser.add_argument("values", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_intermixed_args(argv)
    values: dict[str, str] = {}
    for item in args.values:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"expected KEY=VALUE, got {item!r}")
        values[key] = value
    text = sys.stdin.read() if args.template == "-" else Path(args.template).read_text()
    content = render(text, values) if args.template != "-" or values else text
    changed = write_if_changed(Path(args.dest), content, int(args.mode, 8))
    print(f"{'changed' if changed else 'unchanged'} {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
