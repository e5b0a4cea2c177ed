"""The ``netdm`` group: its help, its exit codes and the one error boundary.

Strategy: commands raise; they never print an error or exit by themselves.
:class:`NetdmGroup` turns every library error (:class:`netdm.errors.NetdmError`)
into one ``Error: …`` line on stderr and that error's exit code, and a
closed stdout (``netdm watch | head -1``) into a quiet exit 0, an
:class:`OSError` (a file that cannot be read or written) into ``Error: <path>:
<reason>`` (exit 4 for a permission, else 1), and anything else into one
``Error: internal error: …`` line, exit 1 (``NETDM_DEBUG=1``: the traceback).
Every sentence is escaped as a whole (:func:`netdm.textsafe.escape_for_terminal`):
file names and kernel strings in it never reach the terminal raw.  Each command
is a module of this package; heavy modules are imported inside the commands
so that ``netdm --help`` starts fast.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from netdm import __version__
from netdm.cli.doctor import doctor
from netdm.cli.exporter import exporter
from netdm.cli.kernel_state import config, stats, stop
from netdm.cli.watch import watch
from netdm.errors import ExitCode, NetdmError
from netdm.textsafe import escape_for_terminal

DEBUG_VARIABLE = "NETDM_DEBUG"  # =1: an internal error shows its traceback

# What each exit code means, in the words of `netdm --help` and the man page.
EXIT_CODE_MEANINGS = {
    ExitCode.OK: "success",
    ExitCode.ERROR: "other error",
    ExitCode.USAGE: "bad usage",
    ExitCode.NO_FAMILY: "no drop source here",
    ExitCode.PERMISSION: "permission denied",
    ExitCode.ALREADY_RUNNING: "monitor already running",
    ExitCode.BUSY: "configuration busy",
    ExitCode.KERNEL: "kernel refused a request",
    ExitCode.BAD_INPUT: "undecodable input",
}
EXIT_CODE_ROWS = 3
EXIT_CODE_COLUMN_WIDTHS = (20, 29)  # the table's layout since it was first written


def exit_codes_help() -> str:
    """The epilog of ``netdm --help``: every :class:`ExitCode`, in columns read downwards."""
    cells = [f"{int(code)}  {EXIT_CODE_MEANINGS[code]}" for code in ExitCode]
    columns = [cells[at : at + EXIT_CODE_ROWS] for at in range(0, len(cells), EXIT_CODE_ROWS)]
    layout = (*EXIT_CODE_COLUMN_WIDTHS, *[0] * len(columns))
    # A longer meaning, or a new column, widens the layout instead of overlapping.
    widths = [
        max(layout[index], *(len(cell) + 2 for cell in column))
        for index, column in enumerate(columns)
    ]
    lines = [
        "  "
        + "".join(
            column[row].ljust(width)
            for column, width in zip(columns, widths, strict=True)
            if row < len(column)
        ).rstrip()
        for row in range(EXIT_CODE_ROWS)
    ]
    return "\n\b\nExit codes:\n" + "\n".join(lines) + "\n"


EXIT_CODES_HELP = exit_codes_help()
DEBUG_HELP = (
    f"\nAn unexpected failure prints one line, 'Error: internal error: ...'; "
    f"{DEBUG_VARIABLE}=1 in the environment shows its traceback instead.\n"
)


class NetdmGroup(click.Group):
    """A click group that is also netdm's error boundary (see the module's strategy)."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.ClickException as error:
            _escape_click_message(error)
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as error:
            _escape_click_message(error)
            raise  # usage errors: click prints them and exits 2 as usual
        except (click.exceptions.Exit, click.Abort):
            raise
        except NetdmError as error:
            report_error(str(error))
            ctx.exit(int(error.exit_code))
        except BrokenPipeError:
            # The reader went away; the kernel side was already cleaned up on the way out.
            _silence_broken_pipe()
            ctx.exit(int(ExitCode.OK))
        except OSError as error:  # a file or device the user named, unreadable or full
            report_error(os_error_sentence(error))
            permission = isinstance(error, PermissionError)
            ctx.exit(int(ExitCode.PERMISSION if permission else ExitCode.ERROR))
        except Exception as error:
            if os.environ.get(DEBUG_VARIABLE) == "1":
                raise
            report_error(
                f"internal error: {type(error).__name__}: {error} "
                f"(set {DEBUG_VARIABLE}=1 for the traceback)"
            )
            ctx.exit(int(ExitCode.ERROR))


def _escape_click_message(error: click.ClickException) -> None:
    """A usage error quotes what was typed (a file name, a value): no control bytes through.

    Click quotes most values with ``repr``, which escapes them already; the
    message is only rewritten when something unprintable is left, so that
    every ordinary usage error stays click's own, byte for byte.
    """
    if not error.message.isprintable():
        error.message = escape_for_terminal(error.message)  # type: ignore[misc]  # Final in click


def report_error(sentence: str) -> None:
    """``Error: <sentence>`` on stderr, escaped: names in it may come from files or the kernel."""
    click.echo(f"Error: {escape_for_terminal(sentence)}", err=True)


def os_error_sentence(error: OSError) -> str:
    """``<path>: <reason>`` (both paths for a rename), or the reason alone."""
    reason = error.strerror or str(error)
    if error.filename is None:
        return reason
    names = [_file_name(error.filename)]
    if error.filename2 is not None:
        names.append(_file_name(error.filename2))
    return f"{' -> '.join(names)}: {reason}"


def _file_name(name: object) -> str:
    """An OSError's file name: a path (str or bytes), or a descriptor."""
    return os.fsdecode(name) if isinstance(name, str | bytes) else str(name)


def _silence_broken_pipe() -> None:
    """Keep Python from complaining again when it flushes stdout at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


@click.group(
    cls=NetdmGroup,
    epilog=EXIT_CODES_HELP + DEBUG_HELP,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="netdm")
def main() -> None:
    """See where the Linux kernel drops packets.

    netdm talks to the kernel's drop monitor (the NET_DM generic-netlink
    family, module drop_monitor) and reports every place that freed packets
    as drops, with counts, every few seconds.  Needs root (CAP_NET_ADMIN and,
    on 6.7+ and Debian 6.1 kernels, CAP_SYS_ADMIN) in the initial network
    namespace.

    \b
    Examples:
      netdm watch                       summaries every 5 s until Ctrl-C
      netdm watch --duration 60 --json  a minute of JSON lines, for jq
    """


for command in (watch, config, stats, stop, doctor, exporter):
    main.add_command(command)
