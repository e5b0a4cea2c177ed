"""Hardware drops through `netdm watch`, from netdevsim's devlink traps."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from kernel_helpers import NetdmProcess, kernel_control

from netdm.netlink.control import KernelControl

if TYPE_CHECKING:
    from conftest import NetdevsimDevice


@pytest.fixture(name="control")
def control_fixture() -> Iterator[KernelControl]:
    yield from kernel_control()


def test_hardware_summary_names_the_trap(
    control: KernelControl, netdevsim: NetdevsimDevice
) -> None:
    netdevsim.set_trap_action("blackhole_route", "trap")
    netdm = NetdmProcess("watch", "--origin", "hw", "--interval", "1", "--duration", "4")
    netdm.wait_for_line("Monitoring for dropped packets")
    returncode, lines, stderr = netdm.finish()
    assert returncode == 0, stderr
    trap_lines = [line for line in lines if "dropped by hardware trap blackhole_route" in line]
    assert trap_lines, lines
    # netdevsim reports each trapped packet every 100 ms: a few per second.
    assert sum(int(line.split()[0]) for line in trap_lines) >= 5


def test_hardware_packets_show_trap_and_port(
    control: KernelControl, netdevsim: NetdevsimDevice
) -> None:
    netdevsim.set_trap_action("blackhole_route", "trap")
    netdm = NetdmProcess("watch", "--origin", "all", "--packets", "--duration", "3")
    netdm.wait_for_line("Monitoring for dropped packets")
    returncode, lines, stderr = netdm.finish()
    assert returncode == 0, stderr
    ours = [line for line in lines if " hw:l3_drops/blackhole_route " in line]
    assert ours, lines
    assert all(f" {netdevsim.ifname}({netdevsim.ifindex}) " in line for line in ours)
