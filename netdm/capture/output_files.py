"""Output files that lose nothing a user already had (issue 13, "Trust at every edge").

Two rules, for every file netdm writes (``-w`` and its ``FILE.symbols``,
``--write-packets``):

* No output may be an input or another output: :func:`same_file_clash`
  compares paths by ``os.stat`` (``st_dev``, ``st_ino``) where the file
  exists, so symlinks and hard links are caught, and by resolved path where
  it does not.  Character devices (``/dev/null``, a terminal) are exempt:
  writing to them destroys nothing.
* Nothing is truncated or removed before the run is known to start:
  :class:`DeferredFile` keeps what is written in memory and opens (creates
  or truncates) its target only when :meth:`DeferredFile.start` is called,
  which the live run does once monitoring has started and a replay once the
  capture was opened.  A run that fails before then (no NET_DM, no
  permission, a busy monitor, an option refused late) leaves the target as
  it was.

Why open the target late rather than write a temporary file and rename it
over the target at the start: what is written before the start is small
(the file header, the nlctrl exchange and configuration requests, a few
KiB), and after the start the target is the very file being written, as
before.  So a crash or SIGKILL mid-run leaves the records written so far in
the target (the writers flush about once a second), and one before the start
leaves nothing behind: no stray temporary file, and the target untouched.
Opening in place also keeps what a rename would change: the file's owner,
mode and hard links, and targets that are not regular files (a FIFO,
``/dev/stdout``), which a rename would replace; and it needs no write
permission on the directory of an existing file.

A run that starts replaces an existing file, as tcpdump -w does.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from typing import BinaryIO

__all__ = ["DeferredFile", "same_file_clash"]


class DeferredFile:
    """A binary output file that is opened (``"wb"``) only by :meth:`start`.

    Until then :meth:`write` keeps the bytes in memory; :meth:`start` calls
    ``before_open`` (for example to remove a stale side file), opens the
    target with ``buffering`` and writes them.  :meth:`close` before
    :meth:`start` drops them and leaves the target untouched.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        buffering: int = -1,
        before_open: Callable[[], None] | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self._buffering = buffering
        self._before_open = before_open
        self._pending: list[bytes] = []
        self._file: BinaryIO | None = None
        self._closed = False

    @property
    def started(self) -> bool:
        """True once the target was opened."""
        return self._file is not None

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def start(self) -> None:
        """Open (create or truncate) the target and write what was kept; idempotent."""
        if self._file is not None:
            return
        if self._closed:
            raise ValueError(f"start of a closed output file {self.path!r}")
        if self._before_open is not None:
            self._before_open()
        file = open(self.path, "wb", buffering=self._buffering)  # noqa: SIM115 (closed by close())
        try:
            file.write(b"".join(self._pending))
        except BaseException:
            file.close()
            raise
        self._pending = []
        self._file = file

    def write(self, data: bytes) -> int:
        """Write to the target once started, else keep ``data`` for :meth:`start`."""
        if self._file is not None:
            return self._file.write(data)
        if self._closed:
            raise ValueError(f"write to a closed output file {self.path!r}")
        self._pending.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        """Hand what was written to the kernel (nothing to do before :meth:`start`)."""
        if self._file is not None:
            self._file.flush()

    def sync(self) -> None:
        """Flush and fsync (nothing to do before :meth:`start`)."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        """Close the target if started; otherwise drop what was kept.  Safe to call twice."""
        self._closed = True
        self._pending = []
        if self._file is not None:
            self._file.close()


def _identity(path: str) -> tuple[str, int, int] | tuple[str, str] | None:
    """What makes two paths the same file; None for files writing cannot harm (devices)."""
    try:
        status = os.stat(path)
    except OSError:
        return ("path", os.path.realpath(path))
    if stat.S_ISCHR(status.st_mode):
        return None
    return ("file", status.st_dev, status.st_ino)


def same_file_clash(
    inputs: Sequence[tuple[str, str | None]], outputs: Sequence[tuple[str, str | None]]
) -> str | None:
    """The sentence for the first output that is an input or an earlier output, or None.

    ``inputs`` and ``outputs`` are (how the user named it, path) pairs, for
    example ``("-r", "drops.pcap")`` or ``("-w's side file", "x.pcap.symbols")``;
    a path of None is an option not given.
    """
    from netdm.textsafe import escape_for_terminal

    def named(label: str, path: str) -> str:
        return f"{label} {escape_for_terminal(path)}"

    seen: list[tuple[str, str, object]] = []
    for label, path in inputs:
        if path is not None:
            identity = _identity(path)
            if identity is not None:
                seen.append(("in", named(label, path), identity))
    for label, path in outputs:
        if path is None:
            continue
        identity = _identity(path)
        if identity is None:
            continue
        for kind, other, other_identity in seen:
            if other_identity == identity:
                if kind == "in":
                    return (
                        f"{named(label, path)} is the same file as {other}: "
                        "netdm would overwrite what it reads"
                    )
                return f"{other} and {named(label, path)} are the same file: give each its own path"
        seen.append(("out", named(label, path), identity))
    return None
