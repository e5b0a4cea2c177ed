"""``netdm watch`` never loses a file the user had: same-file refusals, and late creation."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import netdm.engine.session
import netdm.engine.tracepoint_monitor
from netdm.cli.main import main
from tests.capture.test_output_files import (
    OLD,
    OLD_SYMBOLS,
    PermissionDenied,
    WritesThenFails,
)

REPO = Path(__file__).resolve().parents[2]
CAPTURES = REPO / "captures"
# What `netdm watch -r CAPTURE --write-packets F` wrote before files were created late
# (netdm 9db22fc), on this little-endian host: a run that starts must write the same bytes.
TODAYS_PACKETS = {
    "packet-udp-loopback": "98eb2a79a9a6de33dd74c9debdd5f266655322e47969ea2e7c429d22d1d9ba19",
    "hw-netdevsim": "d2e0cb259752aca5f692b731542e1de6f0267103ab1f0e698e9c785867b214f6",
    "summary-udp-loopback": "5eaaefd434358c42895add76e5c4c127daf24e310e929de64a028f3bdfb357ce",
}


def watch(*args: str) -> Result:
    return CliRunner().invoke(main, ["watch", *args])


def refused(result: Result, sentence: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.output.endswith(f"Error: {sentence}\n"), result.output


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    """A copy of a recorded capture, read by -r."""
    path = tmp_path / "drops.pcapng"
    shutil.copyfile(CAPTURES / "packet-udp-loopback.pcapng", path)
    return path


def test_write_packets_over_the_capture_read_is_refused(capture: Path) -> None:
    before = capture.read_bytes()
    result = watch("-r", str(capture), "--packets", "--write-packets", str(capture))
    refused(
        result,
        f"--write-packets {capture} is the same file as -r {capture}: "
        "netdm would overwrite what it reads",
    )
    assert capture.read_bytes() == before


@pytest.mark.parametrize("kind", ["symlink", "hard link"])
def test_a_link_to_the_capture_read_is_refused(capture: Path, kind: str) -> None:
    before = capture.read_bytes()
    link = capture.with_name("link.pcapng")
    if kind == "symlink":
        link.symlink_to(capture.name)
    else:
        os.link(capture, link)
    result = watch("-r", str(capture), "--write-packets", str(link))
    refused(
        result,
        f"--write-packets {link} is the same file as -r {capture}: "
        "netdm would overwrite what it reads",
    )
    assert capture.read_bytes() == before


def test_a_relative_path_to_the_capture_read_is_refused(
    capture: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(capture.parent)
    before = capture.read_bytes()
    result = watch("-r", str(capture), "--write-packets", f"./{capture.name}")
    assert result.exit_code == 2 and "is the same file as -r" in result.output
    assert capture.read_bytes() == before


def test_the_side_file_of_a_pcap_read_is_an_input(tmp_path: Path) -> None:
    capture = tmp_path / "nlmon.pcap"
    shutil.copyfile(CAPTURES / "summary-udp-nlmon.pcap", capture)
    side = Path(f"{capture}.symbols")
    side.write_text(OLD_SYMBOLS)
    result = watch("-r", str(capture), "--write-packets", str(side))
    refused(
        result,
        f"--write-packets {side} is the same file as -r's side file {side}: "
        "netdm would overwrite what it reads",
    )
    assert side.read_text() == OLD_SYMBOLS


def test_write_packets_over_the_symbols_read_is_refused(capture: Path) -> None:
    symbols = capture.with_name("kallsyms")
    symbols.write_text(OLD_SYMBOLS)
    result = watch("-r", str(capture), "--symbols", str(symbols), "--write-packets", str(symbols))
    assert result.exit_code == 2 and "is the same file as --symbols" in result.output
    assert symbols.read_text() == OLD_SYMBOLS


def test_live_outputs_over_the_symbols_read_are_refused(tmp_path: Path) -> None:
    symbols = tmp_path / "x.pcap.symbols"
    symbols.write_text(OLD_SYMBOLS)
    result = watch("--symbols", str(symbols), "-w", str(symbols))
    refused(
        result,
        f"-w {symbols} is the same file as --symbols {symbols}: "
        "netdm would overwrite what it reads",
    )
    pcap = tmp_path / "x.pcap"
    result = watch("--symbols", str(symbols), "-w", str(pcap), "--pcap")
    refused(
        result,
        f"-w's side file {symbols} is the same file as --symbols {symbols}: "
        "netdm would overwrite what it reads",
    )
    assert symbols.read_text() == OLD_SYMBOLS and not pcap.exists()


def test_two_outputs_may_not_be_one_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out.pcap"  # not there yet: compared by resolved path
    result = watch("-p", "-w", "out.pcap", "--write-packets", str(out))
    refused(
        result, f"-w out.pcap and --write-packets {out} are the same file: give each its own path"
    )
    result = watch("-p", "-w", "out", "--pcap", "--write-packets", "out.symbols")
    refused(
        result,
        "-w's side file out.symbols and --write-packets out.symbols are the same file: "
        "give each its own path",
    )
    assert not out.exists() and not Path("out").exists()


def test_an_output_in_a_missing_directory_is_refused_before_the_run(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "out.pcapng"
    result = watch("-w", str(missing), "-d", "0.1")
    refused(result, f"-w {missing}: there is no directory {missing.parent}")


def test_dev_null_may_take_both_outputs() -> None:
    result = watch(
        "-r", str(CAPTURES / "packet-udp-loopback.pcapng"), "--write-packets", os.devnull, "-q"
    )
    assert result.exit_code == 0, result.output


# ------------------------------------------------------------------ failing starts


@pytest.fixture
def old_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """An existing -w file, its FILE.symbols, and an existing --write-packets file."""
    record, packets = tmp_path / "old.pcap", tmp_path / "old-packets.pcap"
    side = Path(f"{record}.symbols")
    record.write_bytes(OLD)
    side.write_text(OLD_SYMBOLS)
    packets.write_bytes(OLD)
    return record, side, packets


def unchanged(record: Path, side: Path, packets: Path) -> None:
    assert record.read_bytes() == OLD
    assert side.read_text() == OLD_SYMBOLS
    assert packets.read_bytes() == OLD


@pytest.mark.parametrize("monitor", [WritesThenFails, PermissionDenied])
@pytest.mark.parametrize(
    "args",
    [
        ["--source", "netdm", "-p", "--pcap"],
        ["--source", "netdm"],
        ["--source", "tracepoint"],
        ["--source", "auto"],  # NET_DM missing, then the tracepoint fails
        ["--source", "auto", "-p"],  # refused late: --packets needs NET_DM
    ],
)
def test_a_failing_start_leaves_every_file_as_it_was(
    old_files: tuple[Path, Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    monitor: type[WritesThenFails],
    args: list[str],
) -> None:
    monkeypatch.setattr(netdm.engine.session, "LiveMonitor", monitor)
    monkeypatch.setattr(netdm.engine.tracepoint_monitor, "TracepointMonitor", monitor)
    record, side, packets = old_files
    outputs = ["-w", str(record)]
    if "-p" in args:
        outputs += ["--write-packets", str(packets)]
    result = watch(*args, *outputs, "-d", "1")
    assert result.exit_code != 0 and "Error: " in result.output, result.output
    unchanged(*old_files)


def test_this_hosts_own_failures_leave_every_file_as_it_was(
    old_files: tuple[Path, Path, Path],
) -> None:
    """No mocks: whatever this kernel lacks, a run refused before it starts writes nothing."""
    record, side, packets = old_files
    for args in (
        ["--source", "netdm", "-w", str(record), "--pcap", "-p", "--write-packets", str(packets)],
        ["-w", str(record), "--pcap", "-p", "--write-packets", str(packets)],
        ["-w", str(record), "--origin", "hw"],
    ):
        result = watch(*args, "-d", "0.1")
        if result.exit_code == 0:
            pytest.skip("this kernel has NET_DM: these runs start")
        unchanged(*old_files)


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv"
)
@pytest.mark.parametrize("pcap", [True, False])
def test_a_run_without_permission_leaves_every_file_as_it_was(
    pcap: bool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="netdm-files-"))  # nobody must reach it
    try:
        directory.chmod(0o777)
        record, side = directory / "old.pcap", directory / "old.pcap.symbols"
        record.write_bytes(OLD)
        side.write_text(OLD_SYMBOLS)
        for path in (record, side):
            path.chmod(0o666)
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        command += [sys.executable, "-m", "netdm", "watch", "-w", str(record), "-d", "1"]
        if pcap:
            command.append("--pcap")
        process = subprocess.run(
            command, cwd=directory, capture_output=True, timeout=60, check=False
        )
        assert process.returncode != 0, process.stderr
        assert record.read_bytes() == OLD
        assert side.read_text() == OLD_SYMBOLS
    finally:
        shutil.rmtree(directory)


# ------------------------------------------------------------------ a run that starts


@pytest.mark.skipif(sys.byteorder != "little", reason="the files are in host byte order")
@pytest.mark.parametrize("name", sorted(TODAYS_PACKETS))
def test_a_replay_replaces_an_existing_file_with_todays_bytes(tmp_path: Path, name: str) -> None:
    target = tmp_path / "packets.pcap"
    target.write_bytes(OLD)
    link = tmp_path / "link.pcap"
    link.symlink_to(target)
    result = watch("-r", str(CAPTURES / f"{name}.pcapng"), "--write-packets", str(link))
    assert result.exit_code == 0, result.output
    assert link.is_symlink()  # written in place, through the link, as before
    assert hashlib.sha256(target.read_bytes()).hexdigest() == TODAYS_PACKETS[name]


def test_a_replay_of_a_damaged_capture_leaves_the_file(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.pcapng"
    damaged.write_bytes(b"not a capture at all, just text\n" * 4)
    target = tmp_path / "packets.pcap"
    target.write_bytes(OLD)
    result = watch("-r", str(damaged), "--write-packets", str(target))
    assert result.exit_code != 0
    assert target.read_bytes() == OLD
