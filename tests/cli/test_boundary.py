"""The group's one error boundary, and the exit-code table it documents."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from netdm.cli.main import DEBUG_HELP, EXIT_CODE_MEANINGS, EXIT_CODES_HELP, NetdmGroup, main
from netdm.cli.options import EXPORTER_TRUNC_LEN, QUEUE_LEN, WATCH_TRUNC_LEN
from netdm.errors import BusyError, ExitCode, FamilyNotFoundError, NetdmError

REPO = Path(__file__).resolve().parents[2]


def test_the_exit_code_table_is_the_one_always_shown() -> None:
    assert EXIT_CODES_HELP == (
        "\n\b\nExit codes:\n"
        "  0  success          3  no drop source here       6  configuration busy\n"
        "  1  other error      4  permission denied         7  kernel refused a request\n"
        "  2  bad usage        5  monitor already running   8  undecodable input\n"
    )
    assert set(EXIT_CODE_MEANINGS) == set(ExitCode)
    assert main.epilog == EXIT_CODES_HELP + DEBUG_HELP


def group_raising(error: BaseException) -> click.Group:
    @click.group(cls=NetdmGroup)
    def group() -> None:
        pass

    @group.command()
    def fails() -> None:
        click.echo("before")
        raise error

    return group


@pytest.mark.parametrize(
    "error",
    [
        NetdmError("something went wrong"),
        FamilyNotFoundError("no NET_DM here"),
        BusyError("monitoring is on"),
    ],
)
def test_every_netdm_error_is_one_line_and_its_exit_code(error: NetdmError) -> None:
    result = CliRunner().invoke(group_raising(error), ["fails"])
    assert result.exit_code == int(error.exit_code)
    assert result.stdout == "before\n"
    assert result.stderr == f"Error: {error}\n"


def test_other_exceptions_are_one_internal_error_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NETDM_DEBUG", raising=False)
    result = CliRunner().invoke(group_raising(ValueError("a bug")), ["fails"])
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: internal error: ValueError: a bug (set NETDM_DEBUG=1 for the traceback)\n"
    )


def test_netdm_debug_lets_the_traceback_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NETDM_DEBUG", "1")
    result = CliRunner().invoke(group_raising(ValueError("a bug")), ["fails"])
    assert result.exit_code == 1
    assert isinstance(result.exception, ValueError)


def test_usage_errors_stay_clicks() -> None:
    result = CliRunner().invoke(main, ["watch", "--pcap"])
    assert result.exit_code == int(ExitCode.USAGE)
    assert result.stderr.endswith("Error: --pcap goes with -w\n")


def test_the_defaults_watch_and_exporter_share() -> None:
    def defaults(command: str) -> dict[str, object]:
        found = main.commands[command]
        return {param.name: param.default for param in found.params if param.name}

    watch, exporter = defaults("watch"), defaults("exporter")
    assert watch["queue_len"] == exporter["queue_len"] == QUEUE_LEN
    # Deliberately different: watch prints headers, the exporter reads no packet bytes.
    assert (watch["trunc_len"], exporter["trunc_len"]) == (WATCH_TRUNC_LEN, EXPORTER_TRUNC_LEN)
    for name in ("origin", "source", "symbols_file", "rcvbuf"):
        assert watch[name] == exporter[name], name


def test_a_reader_that_goes_away_ends_netdm_quietly() -> None:
    """`netdm watch -x -r … | head -1`: ~97 kB of output, more than a pipe holds."""
    process = subprocess.Popen(
        [sys.executable, "-m", "netdm", "watch", "-x", "-r", "captures/hw-netdevsim.pcapng"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline().startswith(b"Monitoring for dropped packets")
    process.stdout.close()
    assert process.wait(timeout=60) == int(ExitCode.OK)
    complaints = [line for line in process.stderr if not line.startswith(b"netdm: ")]
    assert complaints == []  # only the notice that the capture has no symbols
