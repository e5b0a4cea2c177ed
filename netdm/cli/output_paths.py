"""The files ``watch`` writes: checked before the run, named when they fail.

Strategy: an output that is also an input (or another output) would destroy
what the user had, so it is a usage error before anything starts (see
:func:`netdm.capture.output_files.same_file_clash`).  During the run, an
``OSError`` that names no file (a full disk, an unreadable device) is about
the file being written or read, and becomes one sentence naming it; a full
disk under ``-w`` still lets the run print its last interval and totals.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Literal

import click

from netdm.errors import NetdmError

if TYPE_CHECKING:
    from netdm.engine.session import Pipeline
    from netdm.output.render import Renderer
    from netdm.proto.events import PacketAlert

# A write that fails with these is about the file being written.
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


def check_output_paths(
    *,
    read_file: str | None,
    symbols_file: str | None,
    write_file: str | None,
    pcap: bool,
    write_packets: str | None,
) -> None:
    """No output may be an input or another output (same inode, or same resolved path)."""
    from netdm.capture.formats import SYMBOLS_SIDE_FILE_SUFFIX
    from netdm.capture.output_files import same_file_clash
    from netdm.textsafe import escape_for_terminal

    def side_file(path: str | None) -> str | None:
        return None if path is None else path + SYMBOLS_SIDE_FILE_SUFFIX

    inputs = [
        ("-r", read_file),
        ("-r's side file", side_file(read_file)),
        ("--symbols", symbols_file),
    ]
    outputs = [
        ("-w", write_file),
        ("-w's side file", side_file(write_file) if pcap else None),
        ("--write-packets", write_packets),
    ]
    clash = same_file_clash(inputs, outputs)
    if clash is not None:
        raise click.UsageError(clash)
    # Outputs are created only once the run has started: say now what would fail then.
    for name, path in outputs:
        if path is not None and not os.path.lexists(path):
            directory = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(directory):
                raise click.UsageError(
                    f"{name} {escape_for_terminal(path)}: there is no directory "
                    f"{escape_for_terminal(directory)}"
                )


def _named(error: OSError, path: str, verb: Literal["read", "write"]) -> NetdmError | None:
    """The sentence for an OSError about ``path``, or None when it is about something else.

    For ``write`` only the errnos of a full or read-only file system are
    taken to be about ``path``; OSErrors that name their file pass as they are.
    """
    if error.filename is not None or isinstance(error, BrokenPipeError):
        return None
    if verb == "write" and error.errno not in _WRITE_ERRNOS:
        return None
    return NetdmError(f"cannot {verb} {path}: {error.strerror or error}")


@contextmanager
def naming_the_file(path: str, verb: Literal["read", "write"]) -> Iterator[None]:
    """An OSError without a file name (a full disk, an unreadable device) names ``path``."""
    try:
        yield
    except OSError as error:
        named = _named(error, path, verb)
        if named is None:
            raise
        raise named from error


def write_packet_naming_the_file(
    write: Callable[[PacketAlert], None], path: str, alert: PacketAlert
) -> None:
    """``write(alert)`` to ``--write-packets path``; called per packet, so a plain try."""
    try:
        write(alert)
    except OSError as error:
        named = _named(error, path, "write")
        if named is None:
            raise
        raise named from error


@contextmanager
def totals_despite_a_full_disk(
    path: str, pipelines: list[Pipeline], renderer: Renderer
) -> Iterator[None]:
    """A -w file that fills its disk ends the run, but the last interval and totals still print.

    The write fails in a flush of the run loop (or a write, or the file's
    close); by then the monitor has cleaned up on the way out, and what the
    run counted is in its pipeline: close its open window now, print the
    totals, then the error sentence.
    """
    try:
        yield
    except OSError as error:
        if error.filename is not None or error.errno not in _WRITE_ERRNOS or not pipelines:
            raise
        pipeline = pipelines[-1]
        with suppress(RuntimeError):  # already finished: the write failed at the file's close
            pipeline.finish(time.time())
        renderer.stop(pipeline.totals)
        sys.stdout.flush()
        raise NetdmError(f"cannot write {path}: {error.strerror or error}") from error
