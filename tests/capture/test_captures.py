"""Replays of the real-kernel captures in captures/ against their golden outputs.

Each capture was recorded in the project's VM (captures/record.py; the note
beside it says how).  Replays run the real `netdm watch -r` with TZ=UTC from
the repository root, so the golden files hold exactly what a user sees.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from netdm.capture import read_capture
from netdm.engine.session import find_family_id
from netdm.proto import decode_datagram
from netdm.proto.constants import AlertMode
from netdm.proto.events import Ack, ConfigReply, ErrorReply, FamilyInfo, StatsReply, SummaryAlert

REPO = Path(__file__).resolve().parents[2]
CAPTURES = REPO / "captures"
GOLDEN = [
    ("summary-udp-loopback.pcapng", "summary-udp-loopback"),
    ("summary-udp-nlmon.pcap", "summary-udp-nlmon"),
    ("hw-netdevsim.pcapng", "hw-netdevsim"),
]


def netdm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netdm", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "TZ": "UTC"},
        timeout=60,
    )


@pytest.mark.parametrize(("capture", "golden"), GOLDEN)
def test_text_replay_matches_golden(capture: str, golden: str) -> None:
    result = netdm("watch", "--interval", "2", "-r", f"captures/{capture}")
    assert result.returncode == 0, result.stderr
    assert result.stderr + result.stdout == (CAPTURES / f"{golden}.txt").read_text()


@pytest.mark.parametrize(("capture", "golden"), GOLDEN)
def test_json_replay_matches_golden(capture: str, golden: str) -> None:
    result = netdm("watch", "--interval", "2", "--json", "-r", f"captures/{capture}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (CAPTURES / f"{golden}.json").read_text()
    for line in result.stdout.splitlines():
        json.loads(line)


def test_replay_prints_what_the_live_run_printed() -> None:
    """The capture issue's promise: -r on another machine gives the live summaries, named."""
    result = netdm("watch", "--interval", "2", "-r", "captures/summary-udp-loopback.pcapng")
    live = (CAPTURES / "summary-udp-loopback.live.txt").read_text()
    assert result.stdout == live
    assert "__udp4_lib_rcv" in live


def test_independent_nlmon_recording_counts_the_same_drops() -> None:
    def totals(capture: str) -> int:
        result = netdm("watch", "--json", "-r", f"captures/{capture}")
        return sum(
            obj["total"]
            for obj in map(json.loads, result.stdout.splitlines())
            if obj["type"] == "interval"
        )

    assert totals("summary-udp-nlmon.pcap") == totals("summary-udp-loopback.pcapng") == 92


def test_family_id_is_learnt_from_the_nlctrl_reply_or_the_alerts() -> None:
    with read_capture(CAPTURES / "summary-udp-loopback.pcapng") as reader:
        family_id, how = find_family_id(reader)
    assert how == "from the capture's nlctrl reply"
    # tcpdump on nlmon0 started before netdm resolved the family: the reply is there too.
    with read_capture(CAPTURES / "summary-udp-nlmon.pcap") as reader:
        assert find_family_id(reader)[0] == family_id


def test_control_capture_decodes_every_reply() -> None:
    with read_capture(CAPTURES / "control-requests.pcapng") as reader:
        family_id, _ = find_family_id(reader)
    events = []
    with read_capture(CAPTURES / "control-requests.pcapng") as reader:
        for record in reader:
            if not record.outgoing:
                events.extend(decode_datagram(record.data, family_id))
    configs = [
        (e.alert_mode, e.trunc_len, e.queue_len) for e in events if isinstance(e, ConfigReply)
    ]
    assert configs == [(AlertMode.SUMMARY, 0, 1000), (AlertMode.PACKET, 96, 64)]
    assert [(e.sw_dropped, e.hw_dropped) for e in events if isinstance(e, StatsReply)] == [(0, 0)]
    errors = [(e.errno, e.message) for e in events if isinstance(e, ErrorReply)]
    assert errors == [
        (11, "drop_monitor: Trace state already set to requested state"),
        (16, "drop_monitor: Cannot configure drop monitor during monitoring"),
    ]
    assert any(isinstance(e, FamilyInfo) and e.name == "NET_DM" for e in events)
    warnings = [e.message for e in events if isinstance(e, Ack) and e.message]
    assert warnings == ["drop_monitor: Trace state already set to requested state"]
    assert not any(isinstance(e, SummaryAlert) for e in events)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_wireshark_agrees_on_the_configuration_replies() -> None:
    fields = subprocess.run(
        [
            "tshark",
            "-r",
            str(CAPTURES / "control-requests.pcapng"),
            "-Y",
            "net_dm.cmd == 7",
            "-T",
            "fields",
            "-e",
            "net_dm.alert_mode",
            "-e",
            "net_dm.trunc_len",
            "-e",
            "net_dm.queue_len",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    assert [line.split("\t") for line in fields if line] == [["0", "0", "1000"], ["1", "96", "64"]]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_wireshark_names_the_family_and_sees_every_alert() -> None:
    commands = subprocess.run(
        [
            "tshark",
            "-r",
            str(CAPTURES / "summary-udp-loopback.pcapng"),
            "-Y",
            "net_dm",
            "-T",
            "fields",
            "-e",
            "net_dm.cmd",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    alerts = 0
    with read_capture(CAPTURES / "summary-udp-loopback.pcapng") as reader:
        family_id, _ = find_family_id(reader)
    with read_capture(CAPTURES / "summary-udp-loopback.pcapng") as reader:
        for record in reader:
            alerts += sum(
                isinstance(event, SummaryAlert) for event in decode_datagram(record.data, family_id)
            )
    assert commands.count("1") == alerts > 0


def test_bad_captures_give_one_sentence_and_keep_the_good_part(tmp_path: Path) -> None:
    whole = (CAPTURES / "summary-udp-loopback.pcapng").read_bytes()
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(whole[: len(whole) - 100])  # power lost while writing
    result = netdm("watch", "--interval", "2", "-r", str(cut))
    assert result.returncode == 8
    [error] = result.stderr.splitlines()[-1:]
    assert error.startswith(f"Error: {cut}") and "offset" in error
    assert "40 packets dropped at __udp4_lib_rcv" in result.stdout  # replayed up to the damage

    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    result = netdm("watch", "-r", str(empty))
    assert result.returncode == 8
    assert result.stderr.startswith(f"Error: {empty} is empty")

    ethernet = tmp_path / "ethernet.pcap"
    ethernet.write_bytes(bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"))
    result = netdm("watch", "-r", str(ethernet))
    assert result.returncode == 8 and "link type 1" in result.stderr


def test_packet_capture_replay_matches_golden_and_the_live_run() -> None:
    capture = "captures/packet-udp-loopback.pcapng"
    text = netdm("watch", "--interval", "2", "-r", capture)
    assert text.returncode == 0, text.stderr
    assert text.stderr + text.stdout == (CAPTURES / "packet-udp-loopback.txt").read_text()
    as_json = netdm("watch", "--interval", "2", "--json", "-r", capture)
    assert as_json.stdout == (CAPTURES / "packet-udp-loopback.json").read_text()
    # Live, interface names came from the system; a replay knows only the index.
    live = (CAPTURES / "packet-udp-loopback.live.txt").read_text()
    assert text.stdout == live.replace(" lo(1) ", " -(1) ")


def _tshark_time_ns(text: str) -> int:
    """``Nov 26, 2026 12:15:53.217291300 UTC`` → nanoseconds since the epoch."""
    import calendar
    import time as time_module

    stamp, _, zone = text.rpartition(" ")
    assert zone == "UTC"
    whole, _, fraction = stamp.partition(".")
    seconds = calendar.timegm(time_module.strptime(whole, "%b %d, %Y %H:%M:%S"))
    return seconds * 1_000_000_000 + int(fraction.ljust(9, "0")[:9])


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_wireshark_agrees_on_every_packet_alert() -> None:
    """Both decoders, field by field, on every packet alert of a real capture."""
    path = CAPTURES / "packet-udp-loopback.pcapng"
    fields = [
        "frame.number",
        "net_dm.origin",
        "net_dm.pc",
        "net_dm.symbol",
        "net_dm.port.netdev_index",
        "net_dm.timestamp",
        "net_dm.proto",
        "net_dm.orig_len",
        "ip.dst",
        "ipv6.dst",
        "udp.dstport",
    ]
    command = [
        "tshark",
        "-r",
        str(path),
        "-Y",
        "net_dm.cmd == 5",
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-E",
        "occurrence=f",
    ]
    for name in fields:
        command += ["-e", name]
    rows = subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()
    with read_capture(path) as reader:
        family_id, _ = find_family_id(reader)
    with read_capture(path) as reader:
        frames = {number: record for number, record in enumerate(reader, start=1)}
    from netdm.engine.headers import describe_packet
    from netdm.proto.events import PacketAlert

    assert len(rows) == 21
    for row in rows:
        number, origin, pc, symbol, ifindex, stamp, proto, orig_len, ip4, ip6, dport = row.split(
            "|"
        )
        [alert] = decode_datagram(frames[int(number)].data, family_id)
        assert isinstance(alert, PacketAlert)
        headers = describe_packet(alert.proto, alert.payload or b"")
        assert alert.origin == int(origin)
        assert alert.pc == int(pc, 16)
        assert alert.symbol == symbol
        assert alert.in_port is not None and alert.in_port.ifindex == int(ifindex)
        assert alert.timestamp_ns == _tshark_time_ns(stamp)
        assert alert.proto == int(proto, 16)
        assert alert.orig_len == int(orig_len)
        assert headers.dst == (ip4 or ip6)
        if dport:
            assert headers.dport == int(dport)


def test_hardware_capture_replays_exactly_as_the_live_run() -> None:
    """Hardware alerts carry the interface name: nothing differs from the live output."""
    result = netdm("watch", "--interval", "2", "-r", "captures/hw-netdevsim.pcapng")
    assert result.stdout == (CAPTURES / "hw-netdevsim.live.txt").read_text()
    assert "packets dropped by hardware trap blackhole_route" in result.stdout
