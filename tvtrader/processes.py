"""Who holds a lease, and whether that process still exists.

A lease owner is `host|boot|pid|start`: the host's name and machine id, the kernel's boot id,
the process id and the process's start time (clock ticks since boot). On the same host and
boot, a process with that pid and that start time either is the owner or the owner is gone:
pids are reused, start times are not. Across a reboot every owner of the previous boot is
gone. An owner on another host is never judged from here.
"""

from __future__ import annotations

import os
import socket
from functools import cache
from pathlib import Path


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


@cache
def host_key() -> str:
    """This machine: its name and, where there is one, its machine id (two hosts may share a
    name; containers of one image may share a machine id, but not a name)."""
    machine = _read("/etc/machine-id") or _read("/var/lib/dbus/machine-id")
    return f"{socket.gethostname()}/{machine[:12]}"


def _boot_id() -> str:
    return _read("/proc/sys/kernel/random/boot_id")[:8]


def _start_ticks(pid: int) -> str:
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return ""
    # Field 22 (starttime); the command name (field 2) may contain spaces, so split after it.
    return stat.rsplit(")", 1)[1].split()[19]


_owner: tuple[int, str] | None = None


def lease_owner() -> str:
    """This process, as stored with the leases it takes (computed once per process)."""
    global _owner
    pid = os.getpid()
    if _owner is None or _owner[0] != pid:  # recomputed after a fork
        _owner = (pid, f"{host_key()}|{_boot_id()}|{pid}|{_start_ticks(pid)}")
    return _owner[1]


def owner_is_gone(owner: str) -> bool:
    """True only when `owner` was a process of this host that no longer exists; False for a
    live one, one of another host, or anything this cannot read with certainty."""
    parts = owner.split("|")
    if len(parts) != 4 or parts[0] != host_key() or not parts[2].isdigit() or not parts[3]:
        return False
    boot, pid, start = parts[1], int(parts[2]), parts[3]
    current_boot = _boot_id()
    if not boot or not current_boot:
        return False
    if boot != current_boot:
        return True  # the machine restarted since: that process is gone
    return _start_ticks(pid) != start  # gone, or its pid now belongs to another process
