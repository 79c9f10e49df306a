"""Lease owners: a worker that died on this host is recognised as gone, a live one never
is, and neither is one of another host; only the dead one's leases are released."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from signals.models import Signal
from signals.outbox import leases_of_dead_workers_release
from tests.factories import SignalFactory
from tvtrader.processes import host_key, lease_owner, owner_is_gone


def _exited_process_owner() -> str:
    """The owner string a process that has since exited wrote for itself."""
    out = subprocess.run(
        [sys.executable, "-c", "from tvtrader.processes import lease_owner; print(lease_owner())"],
        capture_output=True,
        text=True,
        check=True,
        cwd=os.getcwd(),
    )
    return out.stdout.strip()


def test_this_process_is_alive_and_an_exited_one_is_gone():
    mine = lease_owner()
    host, boot, pid, start = mine.split("|")
    assert host == host_key() and int(pid) == os.getpid() and boot and start
    assert not owner_is_gone(mine)
    assert owner_is_gone(_exited_process_owner())
    # The same pid with another start time is another process: the owner is gone.
    assert owner_is_gone(f"{host}|{boot}|{pid}|{int(start) + 1}")
    # A previous boot's processes are all gone.
    assert owner_is_gone(f"{host}|00000000|{pid}|{start}")


@pytest.mark.parametrize("owner", ["", "garbage", "otherhost/abc|1234abcd|1|5", "a|b|c|d"])
def test_owners_of_other_hosts_or_unreadable_are_never_judged_gone(owner):
    assert not owner_is_gone(owner)


@pytest.mark.django_db
def test_only_the_leases_of_dead_workers_of_this_host_are_released():
    future = timezone.now() + timedelta(seconds=60)
    dead = SignalFactory(status=Signal.Status.PROCESSING, lease_until=future, lease_owner=_exited_process_owner())
    alive = SignalFactory(status=Signal.Status.PROCESSING, lease_until=future, lease_owner=lease_owner())
    remote = SignalFactory(status=Signal.Status.PROCESSING, lease_until=future, lease_owner="elsewhere/0|1234abcd|1|1")
    assert leases_of_dead_workers_release() == 1
    dead.refresh_from_db(), alive.refresh_from_db(), remote.refresh_from_db()
    assert dead.lease_until < timezone.now()
    assert alive.lease_until == future and remote.lease_until == future
    assert leases_of_dead_workers_release() == 0
