"""Record the capture library in captures/ from a real kernel, in the project's VM.

    python captures/record.py [NAME...]  # boots the VM, records, copies the files here
    python captures/record.py --in-guest OUTDIR   # what runs inside the VM (as root)

Every capture is made by a scenario function below; its note
(``captures/NAME.md``) is written from the scenario's docstring and the
kernel release, so the note says exactly how the file was made.  The golden
replay outputs beside them (``NAME.txt``, ``NAME.json``) come from
``netdm watch -r`` on the host and are checked by tests/test_captures.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

INTERVAL = "2"  # seconds per summary in the recorded runs (short, so captures stay small)


def send_udp_drops(count: int, *, cpu: int | None = None, ipv6: bool = False) -> None:
    """``count`` datagrams to the closed port 9 on loopback, each one drop."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    family, address = (socket.AF_INET6, "::1") if ipv6 else (socket.AF_INET, "127.0.0.1")
    with socket.socket(family, socket.SOCK_DGRAM) as sender:
        for _ in range(count):
            sender.sendto(b"netdm capture", (address, 9))
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))


def start_netdm(*args: str, stdout: Path) -> subprocess.Popen[bytes]:
    """`netdm` in the background; returns once it printed its banner (monitoring is on)."""
    handle = stdout.open("wb")
    process = subprocess.Popen([sys.executable, "-m", "netdm", *args], cwd=REPO, stdout=handle)
    deadline = time.monotonic() + 60
    while b"Monitoring for dropped packets" not in stdout.read_bytes():
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError(f"netdm did not start: {stdout.read_text()}")
        time.sleep(0.1)
    return process


def summary_udp_loopback(out: Path) -> None:
    """Summary mode, UDP drops on loopback from two CPUs, recorded by `netdm watch -w`;
    at the same time `tcpdump -i nlmon0 -w summary-udp-nlmon.pcap` recorded the same
    netlink traffic independently.

    Commands (as root, in the VM):

        modprobe nlmon; ip link add nlmon0 type nlmon; ip link set nlmon0 up
        tcpdump -i nlmon0 -w summary-udp-nlmon.pcap &
        netdm watch --interval 2 --duration 9 -w summary-udp-loopback.pcapng
        # while it runs (Python, port 9 closed, sched_setaffinity per burst):
        #   t≈0.5 s: 40 UDP/IPv4 datagrams to 127.0.0.1:9 from CPU 0
        #   t≈3.5 s: 25 UDP/IPv4 datagrams to 127.0.0.1:9 from CPU 1
        #            and 6 UDP/IPv6 datagrams to [::1]:9 from CPU 1
        #   t≈6.5 s: 15 UDP/IPv4 datagrams to 127.0.0.1:9 from CPU 0

    A correct replay (`netdm watch --interval 2 -r summary-udp-loopback.pcapng`) shows
    80 drops at __udp4_lib_rcv, 6 at __udp6_lib_rcv and 6 at icmpv6_rcv (the ICMPv6
    port-unreachable replies to the IPv6 datagrams, which nobody receives), spread over
    the 2-second intervals in which their alerts arrived: exactly what the live run
    printed (summary-udp-loopback.live.txt).  The nlmon capture has no symbols: its
    replay prints raw addresses, the same counts, and says why.
    """
    subprocess.run(["modprobe", "nlmon"], check=True)
    subprocess.run(["ip", "link", "add", "nlmon0", "type", "nlmon"], check=True)
    subprocess.run(["ip", "link", "set", "nlmon0", "up"], check=True)
    tcpdump = subprocess.Popen(
        ["tcpdump", "-i", "nlmon0", "-w", str(out / "summary-udp-nlmon.pcap"), "-U"],
        stderr=subprocess.DEVNULL,
    )
    time.sleep(2)  # tcpdump is listening
    live = out / "summary-udp-loopback.live.txt"
    netdm = start_netdm(
        "watch",
        "--interval",
        INTERVAL,
        "--duration",
        "9",
        "-w",
        str(out / "summary-udp-loopback.pcapng"),
        stdout=live,
    )
    started = time.monotonic()
    for at, action in (
        (0.5, lambda: send_udp_drops(40, cpu=0)),
        (3.5, lambda: (send_udp_drops(25, cpu=1), send_udp_drops(6, cpu=1, ipv6=True))),
        (6.5, lambda: send_udp_drops(15, cpu=0)),
    ):
        time.sleep(max(0.0, started + at - time.monotonic()))
        action()
    netdm.wait(timeout=60)
    time.sleep(0.5)
    tcpdump.send_signal(signal.SIGINT)
    tcpdump.wait(timeout=30)
    subprocess.run(["ip", "link", "del", "nlmon0"], check=True)


def control_requests(out: Path) -> None:
    """CONFIG_GET / STATS_GET replies, configuration changes and error replies, recorded
    through netdm's own control layer (netdm.netlink.control.KernelControl with a CaptureWriter
    observing every request and answer).

    The sequence (as root, in the VM, drop monitor freshly loaded):

        GETFAMILY NET_DM (nlctrl)                 -> family reply + ack
        CONFIG_GET                                -> CONFIG_NEW summary/0/1000 + ack
        STATS_GET                                 -> STATS_NEW 0/0 + ack
        CONFIG alert_mode=packet trunc=96 queue=64 -> ack
        CONFIG_GET                                -> CONFIG_NEW packet/96/64 + ack
        START sw                                  -> ack
        START sw                                  -> error EAGAIN "Trace state already set..."
        CONFIG queue_len=10                       -> error EBUSY "Cannot configure ... monitoring"
        STOP sw                                   -> ack
        STOP sw                                   -> ack with extack warning
        CONFIG summary/0/1000                     -> ack

    No drops: replay prints no interval.  The test replays it and checks each reply
    decodes (tests/test_captures.py).
    """
    from netdm.capture import CaptureWriter
    from netdm.netlink.control import KernelControl
    from netdm.errors import NetdmError
    from netdm.proto.constants import AlertMode
    from netdm.netlink.transport import NetlinkTransport

    with (
        CaptureWriter.open(
            out / "control-requests.pcapng",
            kernel_release=os.uname().release,
            hostname=socket.gethostname(),
            application="netdm captures/record.py",
        ) as writer,
        NetlinkTransport(receive_buffer=256 * 1024) as transport,
    ):
        control = KernelControl(
            transport, observer=lambda out_, data: writer.write(data, time.time_ns(), outgoing=out_)
        )
        control.describe_family("NET_DM")
        control.get_config()
        control.get_stats()
        control.set_config(alert_mode=AlertMode.PACKET, trunc_len=96, queue_len=64)
        control.get_config()
        control.start(sw=True)
        for attempt in (lambda: control.start(sw=True), lambda: control.set_config(queue_len=10)):
            try:
                attempt()
            except NetdmError:
                pass
            else:
                raise RuntimeError("the kernel accepted what it should have refused")
        control.stop(sw=True)
        control.stop(sw=True)
        control.set_config(alert_mode=AlertMode.SUMMARY, trunc_len=0, queue_len=1000)


def packet_udp_loopback(out: Path) -> None:
    """Packet mode with truncation and drop reasons, recorded by `netdm watch -w`.

    Commands (as root, in the VM):

        tc qdisc add dev lo clsact
        tc filter add dev lo ingress pref 1 handle 101 proto ip flower \\
            dst_ip 127.0.0.2 ip_proto udp dst_port 54321 action drop
        netdm watch --packets --trunc-len 64 --interval 2 --duration 6 \\
            -w packet-udp-loopback.pcapng
        # while it runs (Python; each datagram carries a 100-byte payload):
        #   10 UDP/IPv4 datagrams to 127.0.0.1:9 (closed port: NO_SOCKET)
        #    3 UDP/IPv6 datagrams to [::1]:9 (NO_SOCKET, and the ICMPv6 errors they cause)
        #    5 UDP/IPv4 datagrams to 127.0.0.2:54321 (dropped by the tc rule)

    A correct replay (`netdm watch --interval 2 -r packet-udp-loopback.pcapng`) prints one
    line per dropped packet, each truncated to 64 of its 142 (IPv4) or 162 (IPv6) bytes,
    with the reason, input interface index 1 (replay cannot name interfaces: only the
    index travels), addresses and ports, then the interval summaries.  The live run's
    output is packet-udp-loopback.live.txt (interface names there come from the live
    system).  tshark decodes every packet alert the same way (tests/test_captures.py).
    """
    sys.path.insert(0, str(REPO / "tests" / "kernel"))
    from kernel_helpers import TC_DROP_ADDRESS, tc_drop_rule_on_loopback

    with tc_drop_rule_on_loopback():
        live = out / "packet-udp-loopback.live.txt"
        netdm = start_netdm(
            "watch",
            "--packets",
            "--trunc-len",
            "64",
            "--interval",
            INTERVAL,
            "--duration",
            "6",
            "-w",
            str(out / "packet-udp-loopback.pcapng"),
            stdout=live,
        )
        payload = bytes(range(100))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for _ in range(10):
                sender.sendto(payload, ("127.0.0.1", 9))
            for _ in range(5):
                sender.sendto(payload, TC_DROP_ADDRESS)
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sender:
            for _ in range(3):
                sender.sendto(payload, ("::1", 9))
        netdm.wait(timeout=60)


def hw_netdevsim(out: Path) -> None:
    """Hardware drops from netdevsim's devlink traps, in packet mode, recorded by
    `netdm watch -w`.  netdevsim is built by the VM harness from Debian's sources.

    Commands (as root, in the VM):

        modprobe netdevsim
        echo "1337 1" > /sys/bus/netdevsim/new_device; ip link set eth0 up  # no udev: not renamed
        devlink trap set netdevsim/netdevsim1337 trap blackhole_route action trap
        netdm watch --origin hw --packets --trunc-len 64 --interval 2 --duration 3 \\
            -w hw-netdevsim.pcapng

    netdevsim reports one fake UDP packet every 100 ms for each trap whose action is
    `trap`: blackhole_route (group l3_drops, set above) and, by default, fid_miss and
    ttl_value_is_too_small.  A correct replay shows lines such as
    `hw:l3_drops/blackhole_route - eth0(2) IPv4 UDP ... len 64/142`, the
    interface name coming from the kernel (hardware alerts carry it), and summaries
    `N packets dropped by hardware trap blackhole_route`.
    """
    sys.path.insert(0, str(REPO / "tests" / "kernel"))
    from conftest import create_netdevsim, delete_netdevsim

    subprocess.run(["modprobe", "netdevsim"], check=True)
    device = create_netdevsim()
    try:
        device.set_trap_action("blackhole_route", "trap")
        netdm = start_netdm(
            "watch",
            "--origin",
            "hw",
            "--packets",
            "--trunc-len",
            "64",
            "--interval",
            INTERVAL,
            "--duration",
            "3",
            "-w",
            str(out / "hw-netdevsim.pcapng"),
            stdout=out / "hw-netdevsim.live.txt",
        )
        netdm.wait(timeout=60)
    finally:
        delete_netdevsim(device.id)


SCENARIOS: dict[str, Callable[[Path], None]] = {
    "hw-netdevsim": hw_netdevsim,
    "summary-udp-loopback": summary_udp_loopback,
    "control-requests": control_requests,
    "packet-udp-loopback": packet_udp_loopback,
}


def in_guest(out: Path, only: list[str]) -> None:
    subprocess.run(["modprobe", "drop_monitor"], check=True)
    for name, scenario in SCENARIOS.items():
        if only and name not in only:
            continue
        print(f"recording {name}", flush=True)
        scenario(out)
    (out / "kernel-release").write_text(os.uname().release + "\n")


def main() -> None:
    if sys.argv[1:2] == ["--in-guest"]:
        in_guest(Path(sys.argv[2]), sys.argv[3:])
        return
    only = sys.argv[1:]  # scenario names; all of them when none is given
    from tests.vm import harness

    out = REPO / ".cache" / "captures-new"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    result = harness.run_in_vm(
        [sys.executable, str(Path(__file__).resolve()), "--in-guest", str(out), *only],
        timeout=600,
        outdir=out,
    )
    if result.returncode != 0:
        raise SystemExit(
            f"recording failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    for path in sorted(out.iterdir()):
        if path.suffix in (".pcapng", ".pcap") or path.name.endswith(".live.txt"):
            shutil.copy2(path, HERE / path.name)
            print(f"captures/{path.name}")
    release = (out / "kernel-release").read_text().strip()
    for name, scenario in SCENARIOS.items():
        if only and name not in only:
            continue
        note = HERE / f"{name}.md"
        note.write_text(
            f"# {name}\n\nRecorded from a real kernel, {release} (Debian), in the project's VM "
            f"(tests/vm/harness.py) by `python captures/record.py`.\n\n"
            f"{_dedent(scenario.__doc__ or '')}\n"
        )


def _dedent(text: str) -> str:
    import textwrap

    first, _, rest = text.partition("\n")
    return first.strip() + "\n" + textwrap.dedent(rest)


if __name__ == "__main__":
    main()
