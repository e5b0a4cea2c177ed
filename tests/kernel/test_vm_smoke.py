"""Smoke test of the VM harness: a real kernel with a working drop monitor.

Runs in the project's VM (``python tests/vm/harness.py pytest``); skipped on
hosts without NET_DM (see conftest.py).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path

import pytest
from pyroute2.netlink import genlmsg
from pyroute2.netlink.generic import GenericNetlinkSocket

NET_DM_GRP_ALERT = 1  # include/uapi/linux/net_dropmon.h: the "events" group
IFF_UP = 0x1

pytestmark = pytest.mark.kernel


def test_modprobe_drop_monitor() -> None:
    subprocess.run(["modprobe", "drop_monitor"], check=True, timeout=60)
    assert Path("/sys/module/drop_monitor").is_dir()


def _resolve_net_dm() -> tuple[int, dict[str, int]]:
    sock = GenericNetlinkSocket()
    try:
        sock.bind("NET_DM", genlmsg)
        return int(sock.prid), dict(sock.mcast_groups)
    finally:
        sock.close()


def test_net_dm_resolves_by_name() -> None:
    family_id, _ = _resolve_net_dm()
    # Dynamic ids start at GENL_MIN_ID (16) and differ between boots.
    assert family_id >= 16
    assert _resolve_net_dm()[0] == family_id


def test_events_group_is_1() -> None:
    _, groups = _resolve_net_dm()
    assert groups.get("events") == NET_DM_GRP_ALERT


def test_kernel_is_debian(kernel_release: str, in_vm: bool) -> None:
    if not in_vm:
        pytest.skip("only meaningful in the project's VM")
    assert re.fullmatch(r"\d+\.\d+\.\d+[-+].*amd64", kernel_release), kernel_release
    assert "Debian" in os.uname().version
    expected = os.environ.get("NETDM_VM_KERNEL_RELEASE")
    assert expected is None or kernel_release == expected


def test_loopback_works() -> None:
    flags = int(Path("/sys/class/net/lo/flags").read_text(), 16)
    assert flags & IFF_UP

    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client,
    ):
        server.bind(("127.0.0.1", 0))
        server.settimeout(10)
        client.sendto(b"ping", server.getsockname())
        data, _ = server.recvfrom(16)
        assert data == b"ping"

        # Port of the closed socket: the datagram is sent, then dropped by the
        # kernel, which answers with ICMP port unreachable -> ECONNREFUSED.
        closed = server.getsockname()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(10)
        probe.connect(closed)
        assert probe.send(b"drop me") == len(b"drop me")
        with pytest.raises((ConnectionRefusedError, TimeoutError)):
            probe.recv(16)
