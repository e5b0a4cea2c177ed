"""Deferred output files: nothing touched before the start, the same bytes after it."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import netdm.engine.session
import netdm.engine.tracepoint_monitor
from netdm.capture import CaptureWriter, read_capture
from netdm.capture.output_files import DeferredFile, same_file_clash
from netdm.capture.packet_pcap import PcapPacketSink
from netdm.engine.session import RunTotals, WatchSettings
from netdm.engine.sources import Recording, run_live
from netdm.errors import FamilyNotFoundError, NetdmError

OLD = b"what the user already had\n"
OLD_SYMBOLS = "ffffffff81000000 T an_older_boot\n"
SYMBOLS = ["ffffffff81a2c3ea t __udp4_lib_rcv", "ffffffff81a2c400 T kfree_skb_reason [mod]"]


def fill(writer: CaptureWriter, *, start: Callable[[], None] | None = None) -> None:
    """The same writes, with ``start`` called in the middle (where a run starts)."""
    writer.write(b"\x01" * 20, 1_000_000_000, outgoing=True)
    writer.write(b"\x02" * 33, 1_000_000_500, outgoing=False)
    writer.write_symbols(SYMBOLS[:1])
    if start is not None:
        start()
    writer.write(b"\x03" * 7, 2_000_000_000, outgoing=False)
    writer.flush()
    writer.write_symbols(SYMBOLS[1:])
    writer.flush(sync=True)


@pytest.mark.parametrize("format", ["pcapng", "pcap"])
def test_a_deferred_writer_writes_the_same_bytes(tmp_path: Path, format: Any) -> None:
    today, deferred = tmp_path / "today", tmp_path / "deferred"
    with CaptureWriter.open(today, format=format, hostname="h", kernel_release="r") as writer:
        fill(writer)
    with CaptureWriter.open(
        deferred, format=format, hostname="h", kernel_release="r", deferred=True
    ) as writer:
        fill(writer, start=writer.start_file)
    assert deferred.read_bytes() == today.read_bytes()
    if format == "pcap":
        assert Path(f"{deferred}.symbols").read_text() == Path(f"{today}.symbols").read_text()
        assert Path(f"{deferred}.symbols").read_text() == "".join(s + "\n" for s in SYMBOLS)


@pytest.mark.parametrize("format", ["pcapng", "pcap"])
def test_a_writer_closed_before_the_start_leaves_the_files_as_they_were(
    tmp_path: Path, format: Any
) -> None:
    path = tmp_path / "old.pcap"
    path.write_bytes(OLD)
    side = Path(f"{path}.symbols")
    side.write_text(OLD_SYMBOLS)
    with CaptureWriter.open(path, format=format, deferred=True) as writer:
        fill(writer)
    assert path.read_bytes() == OLD
    assert side.read_text() == OLD_SYMBOLS


def test_a_started_pcap_writer_replaces_the_stale_side_file(tmp_path: Path) -> None:
    path = tmp_path / "old.pcap"
    path.write_bytes(OLD)
    side = Path(f"{path}.symbols")
    side.write_text(OLD_SYMBOLS)
    with CaptureWriter.open(path, format="pcap", deferred=True) as writer:
        writer.start_file()
    assert not side.exists()
    assert path.read_bytes() != OLD


def test_a_crash_mid_run_keeps_what_was_recorded(tmp_path: Path) -> None:
    path = tmp_path / "crash.pcapng"
    path.write_bytes(OLD)
    writer = CaptureWriter.open(path, deferred=True)
    writer.write(b"\x01" * 20, 1_000_000_000, outgoing=True)
    writer.start_file()
    writer.write(b"\x02" * 20, 2_000_000_000, outgoing=False)
    writer.flush()  # what the run loop does about once a second; then SIGKILL
    with read_capture(path) as reader:
        assert [record.data for record in reader] == [b"\x01" * 20, b"\x02" * 20]
    writer.close()


def test_a_deferred_packet_sink(tmp_path: Path) -> None:
    kept, started, today = tmp_path / "kept", tmp_path / "started", tmp_path / "today"
    kept.write_bytes(OLD)
    started.write_bytes(OLD)
    with PcapPacketSink.open(kept, deferred=True):
        pass
    with PcapPacketSink.open(started, deferred=True) as sink:
        sink.start_file()
    with PcapPacketSink.open(today):
        pass
    assert kept.read_bytes() == OLD
    assert started.read_bytes() == today.read_bytes()


def test_deferred_file_writes_through_once_started(tmp_path: Path) -> None:
    path = tmp_path / "f"
    calls: list[str] = []
    stream = DeferredFile(path, before_open=lambda: calls.append("before"))
    assert stream.write(b"ab") == 2
    assert not path.exists() and not stream.started
    stream.start()
    stream.start()
    assert calls == ["before"]
    stream.write(b"cd")
    stream.close()
    assert path.read_bytes() == b"abcd" and stream.closed
    with pytest.raises(ValueError):
        stream.write(b"e")


# ------------------------------------------------------------------ the live run's seams


class WritesThenFails:
    """A monitor that records its requests, then fails before the start, as real ones do."""

    fails_with: Exception = FamilyNotFoundError("this kernel has no drop monitor")

    def __init__(
        self, settings: WatchSettings, factory: Any, on_started: Callable[[], None], **kw: Any
    ) -> None:
        self.recorder = kw.get("recorder")
        self.open_recorder = kw.get("open_recorder")
        self.on_started = on_started

    def run(self) -> RunTotals:
        recorder = self.recorder
        if self.open_recorder is not None:
            recorder = self.open_recorder("name: kfree_skb\n")
        assert recorder is not None
        recorder.write(b"\x00" * 20, 1_000_000_000, outgoing=True)
        recorder.write_symbols(SYMBOLS)
        recorder.flush()
        try:
            raise self.fails_with
        finally:
            recorder.close()


class PermissionDenied(WritesThenFails):
    fails_with = NetdmError("permission denied: netdm needs CAP_NET_ADMIN")


class StartsThenCrashes(WritesThenFails):
    def run(self) -> RunTotals:
        recorder = self.recorder
        if self.open_recorder is not None:
            recorder = self.open_recorder("name: kfree_skb\n")
        assert recorder is not None
        recorder.write(b"\x00" * 20, 1_000_000_000, outgoing=True)
        self.on_started()
        recorder.write(b"\x01" * 20, 2_000_000_000, outgoing=False)
        recorder.flush()
        raise RuntimeError("a bug, mid-run")


@pytest.mark.parametrize("monitor", [WritesThenFails, PermissionDenied])
@pytest.mark.parametrize(
    ("source", "pcap"), [("netdm", False), ("netdm", True), ("tracepoint", False)]
)
def test_a_failing_start_leaves_the_recording_as_it_was(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    monitor: type[WritesThenFails],
    source: str,
    pcap: bool,
) -> None:
    monkeypatch.setattr(netdm.engine.session, "LiveMonitor", monitor)
    monkeypatch.setattr(netdm.engine.tracepoint_monitor, "TracepointMonitor", monitor)
    path = tmp_path / "old.pcapng"
    path.write_bytes(OLD)
    side = Path(f"{path}.symbols")
    side.write_text(OLD_SYMBOLS)
    started: list[object] = []
    with pytest.raises(NetdmError):
        run_live(
            source,
            WatchSettings(),
            unused_pipeline,
            started.append,
            recording=Recording(os.fspath(path), pcap=pcap),
        )
    assert started == []
    assert path.read_bytes() == OLD
    assert side.read_text() == OLD_SYMBOLS


@pytest.mark.parametrize("source", ["netdm", "tracepoint"])
def test_a_run_that_started_keeps_its_records_when_it_crashes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    monkeypatch.setattr(netdm.engine.session, "LiveMonitor", StartsThenCrashes)
    monkeypatch.setattr(netdm.engine.tracepoint_monitor, "TracepointMonitor", StartsThenCrashes)
    path = tmp_path / "old.pcapng"
    path.write_bytes(OLD)
    with pytest.raises(RuntimeError):
        run_live(
            source,
            WatchSettings(),
            unused_pipeline,
            lambda started: None,
            recording=Recording(os.fspath(path)),
        )
    with read_capture(path) as reader:
        assert len(list(reader)) == 2


def unused_pipeline(decoder: Any, start: float) -> Any:
    raise AssertionError("the fake monitors make no pipeline")


# ------------------------------------------------------------------ same file


def test_same_file_clash_by_inode_and_by_resolved_path(tmp_path: Path) -> None:
    existing = tmp_path / "in.pcapng"
    existing.write_bytes(OLD)
    link = tmp_path / "link"
    link.symlink_to(existing)
    hard = tmp_path / "hard"
    os.link(existing, hard)
    for output in (existing, link, hard):
        clash = same_file_clash([("-r", os.fspath(existing))], [("--write-packets", str(output))])
        assert clash == f"--write-packets {output} is the same file as -r {existing}: " + (
            "netdm would overwrite what it reads"
        )
    missing = tmp_path / "new.pcap"
    dangling = tmp_path / "dangling"
    dangling.symlink_to(missing)
    assert same_file_clash([], [("-w", str(missing)), ("--write-packets", str(dangling))]) == (
        f"-w {missing} and --write-packets {dangling} are the same file: give each its own path"
    )
    assert same_file_clash([("-r", str(existing))], [("-w", str(missing))]) is None
    assert same_file_clash([("-r", None)], [("-w", None), ("--write-packets", None)]) is None


def test_character_devices_are_never_a_clash() -> None:
    assert same_file_clash([], [("-w", os.devnull), ("--write-packets", os.devnull)]) is None


def test_the_clash_names_an_unprintable_path_safely(tmp_path: Path) -> None:
    odd = tmp_path / "a\x1b[2Jb"
    clash = same_file_clash([], [("-w", str(odd)), ("--write-packets", str(odd))])
    assert clash is not None and "\x1b" not in clash


def test_a_stream_writer_is_unchanged() -> None:
    stream = io.BytesIO()
    writer = CaptureWriter(stream, hostname="h", kernel_release="r")
    writer.write(b"\x01", 1, outgoing=True)
    writer.start_file()  # nothing to do: the stream was the caller's
    writer.flush()
    assert stream.getvalue()
