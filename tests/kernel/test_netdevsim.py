"""Hardware drops: netdevsim's devlink traps, reported by the kernel's NET_DM.

netdevsim fakes a device with packet traps.  Every 100 ms, for each port that is
up, it reports one made-up UDP packet (192.0.2.1 -> 198.51.100.1, 100 bytes of
payload) through every trap whose action is not ``drop``; devlink hands the
drop and exception traps among them to the drop monitor's hardware side.  By
default the drop traps (``blackhole_route`` ...) are set to ``drop`` and the
exception traps (``fid_miss``, ``ttl_value_is_too_small``) to ``trap``; the
kernel refuses to set a non-drop trap to ``drop``.

These talk to NET_DM through netdm's own layers (transport, control, decoder),
in this process: no netdm subprocesses, whose start-up is slow under TCG.  The
drop monitor is global and other tests run in the same boot, so the ``monitor``
fixture stops it and restores its default configuration afterwards, and the
``netdevsim`` fixture (conftest.py) deletes the device.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from kernel_helpers import DEFAULT_CONFIG

from netdm.netlink.control import KernelControl
from netdm.netlink.transport import NetlinkTransport
from netdm.proto import decode_datagram
from netdm.proto.constants import AlertMode
from netdm.proto.events import Event, PacketAlert, SummaryAlert

if TYPE_CHECKING:
    from conftest import NetdevsimDevice

pytestmark = pytest.mark.kernel

TRAP = "blackhole_route"
TRAP_GROUP = "l3_drops"
ORIGIN_HW = 1  # NET_DM_ORIGIN_HW
ETH_P_IP = 0x0800
# netdevsim's fake packet: Ethernet + IPv4 (20) + UDP (8) + 100 bytes of zeroes.
PACKET_LENGTH = 14 + 20 + 8 + 100
# Upper bound for something that takes a second or two on real hardware; TCG is slow.
WAIT = 20.0


@dataclass
class Monitor:
    """NET_DM control, plus a second socket that joined ``events`` (alerts arrive there)."""

    control: KernelControl
    events: NetlinkTransport

    def receive(
        self, seconds: float, until: Callable[[list[Event]], bool] | None = None
    ) -> list[Event]:
        """Decoded events for `seconds`, or until `until(events so far)` holds."""
        seen: list[Event] = []
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            datagram = self.events.receive(remaining)
            if datagram is None:
                continue
            seen.extend(decode_datagram(datagram, self.events.family_id))
            if until is not None and until(seen):
                break
        assert self.events.losses.enobufs == 0, "the events socket lost messages"
        return seen


@pytest.fixture
def monitor() -> Iterator[Monitor]:
    """Afterwards hardware and software monitoring are off and the configuration is the default."""
    control_socket = NetlinkTransport(receive_buffer=1 << 20)
    events = NetlinkTransport(receive_buffer=8 << 20)
    control = KernelControl(control_socket)
    try:
        events.join_events()
        yield Monitor(control, events)
    finally:
        try:
            control.stop(sw=True, hw=True)
            control.set_config(
                alert_mode=DEFAULT_CONFIG.alert_mode,
                trunc_len=DEFAULT_CONFIG.trunc_len,
                queue_len=DEFAULT_CONFIG.queue_len,
            )
        finally:
            events.close()
            control_socket.close()


def hw_counts(events: list[Event]) -> dict[str, int]:
    """Trap name -> summed count over the hardware entries of the summary alerts."""
    counts: dict[str, int] = {}
    for event in events:
        if isinstance(event, SummaryAlert):
            for entry in event.hw_entries:
                counts[entry.trap_name] = counts.get(entry.trap_name, 0) + entry.count
    return counts


def packets(events: list[Event], trap: str | None = None) -> list[PacketAlert]:
    return [e for e in events if isinstance(e, PacketAlert) and trap in (None, e.hw_trap_name)]


def test_devlink_lists_the_traps_and_their_default_actions(netdevsim: NetdevsimDevice) -> None:
    traps = netdevsim.traps()
    assert traps[TRAP].type == "drop" and traps[TRAP].group == TRAP_GROUP
    drop_traps = {t.name for t in traps.values() if t.type == "drop"}
    exceptions = {t.name for t in traps.values() if t.type == "exception"}
    assert {TRAP, "tail_drop", "ingress_vlan_filter"} <= drop_traps
    assert {"fid_miss", "ttl_value_is_too_small"} <= exceptions
    assert {traps[t].action for t in drop_traps} == {"drop"}
    assert {traps[t].action for t in exceptions} == {"trap"}

    assert netdevsim.set_trap_action(TRAP, "trap") == ""
    assert netdevsim.traps()[TRAP].action == "trap"
    # An exception trap cannot be dropped: devlink warns and leaves it alone (exit status 0).
    warning = netdevsim.set_trap_action("ttl_value_is_too_small", "drop")
    assert "Cannot change action of non-drop traps" in warning
    assert netdevsim.traps()["ttl_value_is_too_small"].action == "trap"


def test_summary_counts_hardware_drops_by_trap(
    netdevsim: NetdevsimDevice, monitor: Monitor
) -> None:
    netdevsim.set_trap_action(TRAP, "trap")
    monitor.control.start(sw=False, hw=True)
    events = monitor.receive(WAIT, until=lambda seen: hw_counts(seen).get(TRAP, 0) > 0)
    monitor.control.stop(sw=False, hw=True)

    counts = hw_counts(events)
    assert counts.get(TRAP, 0) > 0, f"no {TRAP} in the hardware summaries: {events}"
    summaries = [e for e in events if isinstance(e, SummaryAlert)]
    # Only hardware monitoring is on: no software drop points.
    assert all(s.drop_points == () and s.hw_entries for s in summaries), summaries
    assert set(counts) <= {TRAP, "fid_miss", "ttl_value_is_too_small"}, counts


def test_packet_alerts_name_the_trap_group_and_input_port(
    netdevsim: NetdevsimDevice, monitor: Monitor
) -> None:
    netdevsim.set_trap_action(TRAP, "trap")
    monitor.control.set_config(alert_mode=AlertMode.PACKET)
    monitor.control.start(sw=False, hw=True)
    events = monitor.receive(WAIT, until=lambda seen: bool(packets(seen, TRAP)))
    monitor.control.stop(sw=False, hw=True)

    alert = packets(events, TRAP)[0] if packets(events, TRAP) else None
    assert alert is not None, f"no {TRAP} packet alert: {events}"
    assert alert.origin == ORIGIN_HW
    assert alert.hw_trap_group_name == TRAP_GROUP
    assert alert.in_port is not None
    assert (alert.in_port.name, alert.in_port.ifindex) == (netdevsim.ifname, netdevsim.ifindex)
    assert alert.pc is None and alert.symbol is None  # software-drop fields
    assert alert.proto == ETH_P_IP
    assert alert.orig_len == PACKET_LENGTH
    assert alert.payload is not None and len(alert.payload) == PACKET_LENGTH
    ethertype = struct.unpack_from("!H", alert.payload, 12)[0]
    ip = alert.payload[14:34]
    assert ethertype == ETH_P_IP and ip[9] == socket.IPPROTO_UDP
    assert (socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])) == (
        "192.0.2.1",
        "198.51.100.1",
    )
    assert alert.timestamp_ns is not None and alert.timestamp_ns > 0
    groups = {p.hw_trap_name: p.hw_trap_group_name for p in packets(events)}
    assert groups.get("ttl_value_is_too_small", "l3_exceptions") == "l3_exceptions"
    assert groups.get("fid_miss", "l2_drops") == "l2_drops"


def test_packet_alerts_are_truncated_to_trunc_len(
    netdevsim: NetdevsimDevice, monitor: Monitor
) -> None:
    netdevsim.set_trap_action(TRAP, "trap")
    monitor.control.set_config(alert_mode=AlertMode.PACKET, trunc_len=64)
    monitor.control.start(sw=False, hw=True)
    events = monitor.receive(WAIT, until=lambda seen: bool(packets(seen, TRAP)))
    monitor.control.stop(sw=False, hw=True)

    alerts = packets(events, TRAP)
    assert alerts, f"no {TRAP} packet alert: {events}"
    assert alerts[0].payload is not None and len(alerts[0].payload) == 64
    assert alerts[0].orig_len == PACKET_LENGTH


def test_traps_set_to_drop_are_not_reported(netdevsim: NetdevsimDevice, monitor: Monitor) -> None:
    netdevsim.set_trap_action(TRAP, "trap")  # and back to drop below
    traps = netdevsim.traps()
    for trap in traps.values():
        netdevsim.set_trap_action(trap.name, "drop")  # a warning, no change, for non-drop traps
    traps = netdevsim.traps()
    dropped = {t.name for t in traps.values() if t.action == "drop"}
    exceptions = {t.name for t in traps.values() if t.type == "exception"}
    assert TRAP in dropped and {t.type for t in traps.values() if t.name in dropped} == {"drop"}
    assert {traps[t].action for t in exceptions} == {"trap"}

    monitor.control.start(sw=False, hw=True)
    # Reports do flow (the exception traps'); give the dropped ones two summaries to show up.
    events = monitor.receive(
        WAIT,
        until=lambda seen: (
            sum(isinstance(e, SummaryAlert) for e in seen) >= 2
            and set(hw_counts(seen)) >= exceptions
        ),
    )
    monitor.control.stop(sw=False, hw=True)

    counts = hw_counts(events)
    assert not set(counts) & dropped, counts
    assert set(counts) == exceptions, counts
