"""Install a hashed lock into the running Python's environment with one progress line.

`python deploy/pip_install.py requirements.lock` runs `pip install --require-hashes -r
requirements.lock` and, instead of pip's page of output (or a minute of silence under -q),
shows what it is doing: one line rewritten in place on a terminal, a line per step elsewhere.
On failure pip's own last lines are printed. Standard library only: it runs before anything
else is installed.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", re.MULTILINE)
# pip's lines: a package fetched from an index, or from a local file (a find-links folder).
COLLECTING = re.compile(r"^(?:Collecting (\S+?)(?:==|\s|$)|Processing \S*?([A-Za-z0-9._]+?)-\d)")
# A lock entry for another platform or Python (its marker is false here): not installed.
IGNORING = re.compile(r"^Ignoring \S+: markers")


def locked_packages(lock: Path) -> int:
    return len(PIN.findall(lock.read_text()))


class Progress:
    def __init__(self, stream) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.width = 0

    def show(self, text: str, *, step: bool = False) -> None:
        """On a terminal every update rewrites the line; elsewhere only steps are printed."""
        if self.tty:
            self.stream.write("\r" + text.ljust(self.width))
            self.width = len(text)
        elif step:
            self.stream.write(text + "\n")
        self.stream.flush()

    def done(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r" + text.ljust(self.width) + "\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def install(lock: Path, *, stream=sys.stdout) -> int:
    total = locked_packages(lock)
    progress = Progress(stream)
    started = time.monotonic()
    progress.show(f"==> installing {lock.name} into {sys.prefix} (once)", step=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--require-hashes",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
        "-r",
        str(lock),
    ]
    tail: deque[str] = deque(maxlen=40)
    seen = 0
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as pip:
        assert pip.stdout is not None
        for line in pip.stdout:
            tail.append(line.rstrip("\n"))
            match = COLLECTING.match(line)
            if match:
                seen += 1
                progress.show(f"==> fetching {seen}/{total}: {match.group(1) or match.group(2)}")
            elif IGNORING.match(line):
                total -= 1
            elif line.startswith("Installing collected packages"):
                progress.show(f"==> unpacking and compiling {seen} packages (the longest step)", step=True)
    if pip.returncode != 0:
        progress.done("==> pip failed; its last lines:")
        stream.write("\n".join(tail) + "\n")
        return pip.returncode
    progress.done(f"==> installed {lock.name} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python deploy/pip_install.py LOCKFILE")
    sys.exit(install(Path(sys.argv[1])))
