"""What the real-kernel tests share: drop generators, netdm runners, a control channel."""

from __future__ import annotations

import os
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from netdm.netlink.control import KernelConfig, KernelControl
from netdm.netlink.transport import NetlinkTransport
from netdm.proto.constants import AlertMode

REPO = Path(__file__).resolve().parents[2]
UDP_DROP_FUNCTION = "__udp4_lib_rcv"
DEFAULT_CONFIG = KernelConfig(alert_mode=AlertMode.SUMMARY, trunc_len=0, queue_len=1000)
# Python starts slowly under software emulation; allow for it.
STARTUP_TIMEOUT = 60.0
WEEKDAYS = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}


def kernel_control() -> Iterator[KernelControl]:
    """A control channel; afterwards the monitor is stopped and in its default state.

    Use as a fixture body: ``yield from kernel_control()``.
    """
    transport = NetlinkTransport(receive_buffer=256 * 1024)
    kernel = KernelControl(transport)
    try:
        yield kernel
    finally:
        kernel.stop(sw=True)
        kernel.set_config(
            alert_mode=DEFAULT_CONFIG.alert_mode,
            trunc_len=DEFAULT_CONFIG.trunc_len,
            queue_len=DEFAULT_CONFIG.queue_len,
        )
        transport.close()


def send_udp_drops(count: int, *, cpu: int | None = None, port: int = 9) -> None:
    """``count`` datagrams to a closed port on 127.0.0.1, optionally from one CPU."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for _ in range(count):
                sender.sendto(b"netdm test", ("127.0.0.1", port))
    finally:
        if cpu is not None:
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))


class NetdmProcess:
    """`python -m netdm ...` in the background, with its output lines."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "netdm", *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []

    def wait_for_line(self, text: str, timeout: float = STARTUP_TIMEOUT) -> None:
        """Read stdout until a line containing ``text`` (monitoring has started)."""
        assert self.process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not selector.select(timeout=deadline - time.monotonic()):
                break
            line = self.process.stdout.readline()
            if not line:
                break
            self.lines.append(line.rstrip("\n"))
            if text in line:
                return
        self.process.kill()
        _, stderr = self.process.communicate()
        raise AssertionError(f"netdm never printed {text!r}; stdout {self.lines}, stderr {stderr}")

    def finish(self, timeout: float = 60.0) -> tuple[int, list[str], str]:
        stdout, stderr = self.process.communicate(timeout=timeout)
        self.lines.extend(stdout.splitlines())
        return self.process.returncode, self.lines, stderr


def run_netdm(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netdm", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def drops_at(lines: list[str], function: str) -> int:
    """Sum of the ``N packets dropped at FUNCTION`` lines."""
    total = 0
    for line in lines:
        for noun in ("packets", "packet"):
            suffix = f" {noun} dropped at {function}"
            if line.endswith(suffix):
                total += int(line[: -len(suffix)])
    return total


# Datagrams to this address and port are dropped by a tc flower rule on loopback's
# ingress (as the kernel selftest drop_monitor_tests.sh does on a dummy device).
TC_DROP_ADDRESS = ("127.0.0.2", 54321)


@contextmanager
def tc_drop_rule_on_loopback() -> Iterator[None]:
    """A clsact qdisc on lo with a flower rule dropping UDP to TC_DROP_ADDRESS; removed after."""
    address, port = TC_DROP_ADDRESS
    subprocess.run(["tc", "qdisc", "add", "dev", "lo", "clsact"], check=True)
    try:
        subprocess.run(
            [
                "tc",
                "filter",
                "add",
                "dev",
                "lo",
                "ingress",
                "pref",
                "1",
                "handle",
                "101",
                "proto",
                "ip",
                "flower",
                "dst_ip",
                address,
                "ip_proto",
                "udp",
                "dst_port",
                str(port),
                "action",
                "drop",
            ],
            check=True,
        )
        yield
    finally:
        subprocess.run(["tc", "qdisc", "del", "dev", "lo", "clsact"], check=False)
