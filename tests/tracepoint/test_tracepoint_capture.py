"""Tracepoint captures: written by CaptureWriter, read by CaptureReader, replayed by the CLI."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from netdm.capture import CaptureReader, CaptureWriter
from netdm.capture.formats import LINKTYPE_USER0, RECORD_TRACEPOINT, RECORD_TRACEPOINT_LOST
from netdm.capture.read import tracepoint_format_of
from netdm.tracepoint.format import parse_event_format
from netdm.tracepoint.ringbuffer import kfree_skb_construct

DATA = Path(__file__).parent / "data"
FORMAT_TEXT = (DATA / "kfree_skb-6.1.0-debian.format").read_text()
EVENT = parse_event_format(FORMAT_TEXT)
SECOND = 1_000_000_000
START = 1_795_700_000 * SECOND
UDP_PC = 0xFFFFFFFF818BCAE2  # __udp4_lib_rcv+0x9a2 in the 6.1 captures' symbols
SYMBOLS = ["ffffffff818bc140 t __udp4_lib_rcv"]


def record(location: int, reason: int) -> bytes:
    values = {field.name: 0 for field in EVENT.fields}
    values.update(common_type=EVENT.event_id, location=location, reason=reason)
    return bytes(kfree_skb_construct(EVENT).build(values))


def write_capture(path: Path) -> None:
    """What a live run writes: lost 0 at the start, records, lost counts, the end."""
    with CaptureWriter.open(path, tracepoint_format=FORMAT_TEXT) as writer:
        writer.write_lost(0, START)
        for second in range(12):
            for _ in range(second + 1):
                writer.write(record(UDP_PC, 2), START + second * SECOND + 1, outgoing=False)
            if second == 3:
                writer.write(record(UDP_PC, 7), START + 3 * SECOND + 2, outgoing=False)
            if second == 6:
                writer.write_lost(9, START + 6 * SECOND + 2)
        writer.write_symbols(SYMBOLS)
        writer.write_lost(9, START + 12 * SECOND)


def netdm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netdm", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "TZ": "UTC"},
    )


def test_the_reader_returns_records_and_lost_counts(tmp_path: Path) -> None:
    path = tmp_path / "t.pcapng"
    write_capture(path)
    with CaptureReader(path) as reader:
        interface = reader.info.sections[0].interfaces[0]
        assert interface.linktype == LINKTYPE_USER0
        assert tracepoint_format_of(interface) == FORMAT_TEXT
        records = list(reader)
    kinds = [r.protocol for r in records]
    assert kinds.count(RECORD_TRACEPOINT) == sum(range(1, 13)) + 1
    lost = [int.from_bytes(r.data, "little") for r in records if r.protocol != RECORD_TRACEPOINT]
    assert lost == [0, 9, 9]
    assert kinds[0] == kinds[-1] == RECORD_TRACEPOINT_LOST


def test_replay_counts_every_record_and_every_loss(tmp_path: Path) -> None:
    path = tmp_path / "t.pcapng"
    write_capture(path)
    result = netdm("watch", "--json", "--by-reason", "-r", str(path))
    assert result.returncode == 0, result.stderr
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert objects[0]["source"] == "capture"
    intervals = [o for o in objects if o["type"] == "interval"]
    assert [o["total"] for o in intervals] == [1 + 2 + 3 + 4 + 5 + 1, 6 + 7 + 8 + 9 + 10, 11 + 12]
    by_reason: dict[str, int] = {}
    for interval in intervals:
        for entry in interval["entries"]:
            assert entry["symbol"] == "__udp4_lib_rcv" and entry["offset"] == 0x9A2
            by_reason[entry["reason"]] = by_reason.get(entry["reason"], 0) + entry["count"]
    assert by_reason == {"NO_SOCKET": 78, "NETFILTER_DROP": 1}
    assert [o["lost"]["tracefs_lost"] for o in intervals] == [0, 9, 0]
    assert objects[-1]["lost"]["tracefs_lost"] == 9


def test_text_replay_says_what_was_lost(tmp_path: Path) -> None:
    path = tmp_path / "t.pcapng"
    write_capture(path)
    result = netdm("watch", "-r", str(path))
    assert result.returncode == 0, result.stderr
    assert "(lost: 9 drop events (tracefs buffer full))" in result.stdout
    assert result.stdout.splitlines()[-1] == (
        "Total: 79 packets dropped in 3 intervals (lost: 9 drop events (tracefs buffer full))"
    )


def test_a_cut_capture_names_the_offset(tmp_path: Path) -> None:
    path = tmp_path / "t.pcapng"
    write_capture(path)
    whole = path.read_bytes()
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(whole[: len(whole) - 30])
    result = netdm("watch", "-r", str(cut))
    assert result.returncode == 8
    assert "offset" in result.stderr


def test_tracepoint_captures_are_pcapng_only() -> None:
    with pytest.raises(ValueError, match="pcapng only"):
        CaptureWriter(io.BytesIO(), format="pcap", tracepoint_format=FORMAT_TEXT)


def test_write_lost_is_for_tracepoint_captures() -> None:
    with pytest.raises(ValueError, match="tracepoint"):
        CaptureWriter(io.BytesIO()).write_lost(1, START)
