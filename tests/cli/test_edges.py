"""Failures a user or a file can cause: one escaped ``Error:`` sentence and its exit code.

Issue 13, "Trust at every edge": wrong privileges, unwritable or unreadable
files, out-of-range option values, unexpected exceptions, and names with
control bytes in them never print a traceback or reach the terminal raw.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from netdm.cli.main import NetdmGroup, main
from netdm.errors import ExitCode, NetdmError

REPO = Path(__file__).resolve().parents[2]
CAPTURE = str(REPO / "captures" / "hw-netdevsim.pcapng")
TRACEFS = Path("/sys/kernel/tracing")
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
# Names a file or the kernel could carry: ESC, OSC 52 (set the clipboard), a bidi
# override, a C1 CSI, DEL and an undecodable byte (kept by surrogateescape).
HOSTILE = "a\x1b[2Jb\x1b]52;c;aGk=\x07c\u202ed\x9be\x7ff" + os.fsdecode(b"\xff")
HOSTILE_ESCAPED = "a\\x1b[2Jb\\x1b]52;c;aGk=\\x07c\\u202ed\\u009be\\x7ff\\xff"


def netdm(*arguments: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "netdm", *arguments],
        cwd=REPO,
        capture_output=True,
        timeout=60,
        check=False,
    )


def last_error_line(result: subprocess.CompletedProcess[bytes]) -> bytes:
    assert b"Traceback" not in result.stderr
    return result.stderr.splitlines()[-1]


def group_raising(error: BaseException) -> click.Group:
    @click.group(cls=NetdmGroup)
    def group() -> None:
        pass

    @group.command()
    def fails() -> None:
        raise error

    return group


# ---------------------------------------------------------------- privileges


def nobody_can_run_python() -> bool:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return False
    probe = subprocess.run([*NOBODY, sys.executable, "-c", "pass"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(
    not TRACEFS.is_dir() or not nobody_can_run_python(),
    reason="needs root, setpriv and tracefs, to run netdm as nobody",
)
@pytest.mark.parametrize(
    "arguments",
    [
        ["watch", "--source", "tracepoint", "-d", "1"],
        ["exporter", "--listen", "127.0.0.1:0", "--source", "tracepoint"],
    ],
)
def test_a_user_without_tracefs_access_is_told_to_be_root(arguments: list[str]) -> None:
    result = subprocess.run(
        [*NOBODY, sys.executable, "-m", "netdm", *arguments],
        cwd="/",
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        timeout=60,
        check=False,
    )
    if result.returncode == 0:
        pytest.skip("nobody can read tracefs on this host")
    assert result.returncode == int(ExitCode.PERMISSION), result.stderr
    assert last_error_line(result) == (
        b"Error: reading the skb:kfree_skb tracepoint needs root (CAP_SYS_ADMIN, or access "
        b"to /sys/kernel/tracing): run netdm as root, or replay a capture with -r FILE"
    )


# ---------------------------------------------------------------- files


@pytest.mark.parametrize(
    ("path", "code", "sentence"),
    [
        # A missing directory is known before the run: a usage error.
        (
            "/nonexistent/dir/x.pcap",
            ExitCode.USAGE,
            "Error: --write-packets /nonexistent/dir/x.pcap: "
            "there is no directory /nonexistent/dir",
        ),
        ("/proc/x.pcap", ExitCode.ERROR, "Error: /proc/x.pcap: No such file or directory"),
        ("/dev/full", ExitCode.ERROR, "Error: cannot write /dev/full: No space left on device"),
    ],
)
def test_write_packets_that_cannot_be_written(path: str, code: ExitCode, sentence: str) -> None:
    if path == "/dev/full" and not os.path.exists(path):
        pytest.skip("no /dev/full")
    result = netdm("watch", "-q", "-p", "-r", CAPTURE, "--write-packets", path)
    assert result.returncode == int(code)
    assert last_error_line(result) == sentence.encode()


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="no /proc")
def test_a_capture_that_cannot_be_read() -> None:
    result = netdm("watch", "-r", "/proc/self/mem")
    assert result.returncode == int(ExitCode.ERROR)
    assert last_error_line(result) == b"Error: cannot read /proc/self/mem: Input/output error"


def test_a_directory_to_read_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["watch", "-r", str(tmp_path)])
    assert result.exit_code == int(ExitCode.USAGE)
    assert result.stderr.endswith(
        f"Error: Invalid value for '-r' / '--read': File '{tmp_path}' is a directory.\n"
    )


def test_an_os_error_names_its_file_and_reason() -> None:
    error = FileNotFoundError(2, "No such file or directory", "/x/\x1b]52;c;aGk=\x07")
    result = CliRunner().invoke(group_raising(error), ["fails"])
    assert result.exit_code == int(ExitCode.ERROR)
    assert result.stderr == "Error: /x/\\x1b]52;c;aGk=\\x07: No such file or directory\n"


# ---------------------------------------------------------------- option values


@pytest.mark.parametrize(
    ("arguments", "sentence"),
    [
        (
            ["--protocol", "0x10000"],
            "Error: Invalid value for '--protocol': EtherType '0x10000' is larger than 0xffff",
        ),
        (
            ["--interval", "inf"],
            "Error: Invalid value for '-i' / '--interval': inf is not a finite number of seconds.",
        ),
        (
            ["--interval", "nan"],
            "Error: Invalid value for '-i' / '--interval': nan is not a finite number of seconds.",
        ),
        (
            ["--interval", "0"],
            "Error: Invalid value for '-i' / '--interval': "
            "0.0 is not in the range 0.1<=x<=86400.0.",
        ),
        (
            ["--interval", "-1"],
            "Error: Invalid value for '-i' / '--interval': "
            "-1.0 is not in the range 0.1<=x<=86400.0.",
        ),
        (
            ["--duration", "inf"],
            "Error: Invalid value for '-d' / '--duration': inf is not a finite number of seconds.",
        ),
        (
            ["--duration", "nan"],
            "Error: Invalid value for '-d' / '--duration': nan is not a finite number of seconds.",
        ),
        (
            ["--duration", "1e308"],
            "Error: Invalid value for '-d' / '--duration': "
            "1e+308 is not in the range 0<=x<=31622400.0.",
        ),
        (
            ["--count", str(10**20)],
            "Error: Invalid value for '-c' / '--count': "
            "100000000000000000000 is not in the range 1<=x<=1000000000.",
        ),
        (
            ["--trunc-len", str(2**32)],
            "Error: Invalid value for '--trunc-len': "
            "4294967296 is not in the range 0<=x<=4294967295.",
        ),
        (
            ["--rcvbuf", str(2**31)],
            "Error: Invalid value for '--rcvbuf': "
            "2147483648 is not in the range 4096<=x<=2147483647.",
        ),
    ],
)
def test_out_of_range_values_are_usage_errors(arguments: list[str], sentence: str) -> None:
    # -p and a missing -r file: the value is refused before anything else is looked at.
    result = CliRunner().invoke(main, ["watch", "-p", *arguments])
    assert result.exit_code == int(ExitCode.USAGE)
    assert result.stderr.splitlines()[-1] == sentence


def test_an_unknown_protocol_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["watch", "-p", "-r", CAPTURE, "--protocol", "quic"])
    assert result.exit_code == int(ExitCode.USAGE)
    assert result.stdout == ""  # refused before the capture is read
    assert result.stderr.splitlines()[-1].startswith(
        "Error: Invalid value for '--protocol': unknown protocol 'quic'; use an EtherType "
        "such as 0x0800 or: 802.1ad, "
    )


@pytest.mark.parametrize(
    ("arguments", "sentence"),
    [
        (
            ["exporter", "--listen", ":0", "--interval", "inf"],
            "Error: Invalid value for '-i' / '--interval': inf is not a finite number of seconds.",
        ),
        (
            ["exporter", "--listen", ":0", "--max-locations", str(10**7)],
            "Error: Invalid value for '--max-locations': "
            "10000000 is not in the range 1<=x<=1000000.",
        ),
        (
            ["config", "--queue-len", str(2**32)],
            "Error: Invalid value for '--queue-len': "
            "4294967296 is not in the range 1<=x<=4294967295.",
        ),
    ],
)
def test_other_commands_bound_their_numbers(arguments: list[str], sentence: str) -> None:
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == int(ExitCode.USAGE)
    assert result.stderr.splitlines()[-1] == sentence


# ---------------------------------------------------------------- the catch-all


def test_an_internal_error_is_one_escaped_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NETDM_DEBUG", raising=False)
    result = CliRunner().invoke(group_raising(ValueError(HOSTILE)), ["fails"])
    assert result.exit_code == int(ExitCode.ERROR)
    assert result.stderr == (
        f"Error: internal error: ValueError: {HOSTILE_ESCAPED} "
        "(set NETDM_DEBUG=1 for the traceback)\n"
    )


def test_the_help_tells_how_to_see_the_traceback() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert "NETDM_DEBUG=1" in result.stdout


# ---------------------------------------------------------------- escaping


def test_a_netdm_error_is_escaped_as_a_whole() -> None:
    result = CliRunner().invoke(group_raising(NetdmError(f"bad name {HOSTILE}")), ["fails"])
    assert result.stderr == f"Error: bad name {HOSTILE_ESCAPED}\n"


def test_ordinary_sentences_stay_as_they_are() -> None:
    sentence = "tracefs at /sys/kernel/tracing — has no skb:kfree_skb tracepoint (ünïcode)"
    result = CliRunner().invoke(group_raising(NetdmError(sentence)), ["fails"])
    assert result.stderr == f"Error: {sentence}\n"


def test_a_capture_named_with_control_bytes_is_named_escaped(tmp_path: Path) -> None:
    name = tmp_path / HOSTILE
    Path(os.fsencode(name).decode("utf-8", "surrogateescape")).write_bytes(b"x")
    result = subprocess.run(
        [sys.executable, "-m", "netdm", "watch", "-r", HOSTILE],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == int(ExitCode.BAD_INPUT)
    assert (
        last_error_line(result)
        == (
            f"Error: {HOSTILE_ESCAPED} is not a pcap or pcapng capture: "
            "at offset 0 it starts with text 'x'"
        ).encode()
    )


def test_a_usage_error_quoting_control_bytes_is_escaped() -> None:
    result = CliRunner().invoke(main, ["watch", "--source", "\x1b]52;c;aGk=\x07"])
    assert result.exit_code == int(ExitCode.USAGE)
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr


# ---------------------------------------------------------------- a full disk


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_full_disk_while_recording_still_prints_the_totals(tmp_path: Path) -> None:
    """-w onto a 4 KiB tmpfs: the run ends with its last interval, Total:, then the error."""
    disk = tmp_path / "full"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr!r}")
    try:
        path = disk / "run.pcapng"
        result = netdm("watch", "-i", "1", "-d", "10", "-w", str(path))
    finally:
        subprocess.run(["umount", str(disk)], check=True)
    if result.returncode in (int(ExitCode.NO_FAMILY), int(ExitCode.PERMISSION)):
        pytest.skip("no drop source usable here")
    if result.returncode == 0:
        pytest.skip("too few drops in 10 s to fill 4 KiB")
    assert result.returncode == int(ExitCode.ERROR), result.stderr
    assert b"\nStopping dropped packet monitor\nTotal: " in result.stdout
    assert result.stdout.endswith(b" intervals\n") or result.stdout.endswith(b" interval\n")
    assert (
        last_error_line(result) == f"Error: cannot write {path}: No space left on device".encode()
    )


def test_a_file_not_permitted_is_exit_4() -> None:
    error = PermissionError(13, "Permission denied", "/root/run.pcapng")
    result = CliRunner().invoke(group_raising(error), ["fails"])
    assert result.exit_code == int(ExitCode.PERMISSION)
    assert result.stderr == "Error: /root/run.pcapng: Permission denied\n"


def test_an_os_error_on_a_descriptor_or_a_rename() -> None:
    error = OSError(9, "Bad file descriptor", 7)
    result = CliRunner().invoke(group_raising(error), ["fails"])
    assert result.stderr == "Error: 7: Bad file descriptor\n"
    error = OSError(18, "Invalid cross-device link", "a", None, b"b\xff")
    result = CliRunner().invoke(group_raising(error), ["fails"])
    assert result.stderr == "Error: a -> b\\xff: Invalid cross-device link\n"
