"""A tracefs instance of netdm's own, with ``skb:kfree_skb`` enabled: the tracepoint source's I/O.

Strategy: netdm never touches the global trace buffer (other tools may be
using it).  It creates ``instances/netdm-<pid>``, which gets its own ring
buffer, sets the buffer size, turns overwriting off (so that a full buffer
drops *new* events and counts them, instead of silently replacing old ones),
enables the one event, and reads each CPU's ``trace_pipe_raw`` in whole
pages, non-blocking.  On every way out the event is disabled, the files are
closed and the instance directory is removed (``rmdir`` is how tracefs
deletes an instance).  An instance left behind by a netdm that was killed
(``netdm-<pid>`` with no such process) is removed at the next start, and by
``netdm stop``; ``netdm doctor`` names it.

Losses: the per-CPU ``stats`` files count the events the buffer had no room
for (``dropped events``, and ``overrun`` should overwriting be on);
:meth:`TracefsInstance.lost_events` sums them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from netdm.errors import ExitCode, NetdmError, PermissionDeniedError
from netdm.proto.errors import ProtocolError
from netdm.tracepoint.format import EventFormat, PageLayout, parse_event_format, parse_header_page

EVENT_SYSTEM = "skb"
EVENT_NAME = "kfree_skb"
# Where tracefs lives: its own mount point since 4.1, or inside debugfs.
TRACEFS_CANDIDATES = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
INSTANCE_PREFIX = "netdm-"
# Per-CPU ring buffer: a kfree_skb event takes 44 bytes, so 4 MiB holds about 95,000
# drops per CPU, several seconds of a storm between two reads.
DEFAULT_BUFFER_KB = 4096
# At most this many pages per CPU per read_pages() call, so one busy CPU cannot starve
# the loop (and signals, deadlines, the other CPUs).
MAX_PAGES_PER_CPU = 256
_STATS_COUNTERS = re.compile(r"^(overrun|dropped events):\s*(\d+)\s*$", re.MULTILINE)


class TracepointUnavailableError(NetdmError):
    """No tracefs, or no skb:kfree_skb tracepoint in it."""

    exit_code = ExitCode.NO_FAMILY  # no drop source here


def find_tracefs(*, mount: bool = True) -> Path:
    """The tracefs directory; mounts it at /sys/kernel/tracing if it exists but is not mounted."""
    for candidate in TRACEFS_CANDIDATES:
        try:
            if (candidate / "instances").is_dir():
                return candidate
        except PermissionError:
            raise PermissionDeniedError(
                f"reading the {EVENT_SYSTEM}:{EVENT_NAME} tracepoint needs root "
                f"(CAP_SYS_ADMIN, or access to {candidate}): run netdm as root, "
                "or replay a capture with -r FILE"
            ) from None
    target = TRACEFS_CANDIDATES[0]
    if mount and target.is_dir():
        # Nothing is mounted there yet (a container or a minimal boot): mount it, as
        # `mount -t tracefs nodev /sys/kernel/tracing` would.  Left mounted: harmless,
        # and what systemd does at every boot.
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.mount(b"nodev", str(target).encode(), b"tracefs", 0, None) == 0:
            return target
        error = ctypes.get_errno()
        if error == errno.EPERM:
            raise PermissionDeniedError(
                f"tracefs is not mounted and mounting it at {target} needs CAP_SYS_ADMIN "
                "(run netdm as root)"
            )
        if error == errno.ENODEV:
            raise TracepointUnavailableError(
                "this kernel has no tracefs (CONFIG_TRACING is off), so the skb:kfree_skb "
                "tracepoint cannot be read either"
            )
    raise TracepointUnavailableError(
        "tracefs is not mounted (looked in "
        + ", ".join(str(path) for path in TRACEFS_CANDIDATES)
        + "); mount it with: mount -t tracefs nodev /sys/kernel/tracing"
    )


def tracepoint_status() -> tuple[bool, str]:
    """Whether the tracepoint source can work here, and a sentence saying so; no side effects."""
    event = Path("events") / EVENT_SYSTEM / EVENT_NAME / "format"
    for candidate in TRACEFS_CANDIDATES:
        try:
            mounted = (candidate / "instances").is_dir()
        except PermissionError:
            return False, f"cannot look into {candidate}: needs root"
        if mounted:
            if (candidate / event).exists():
                return True, f"{EVENT_SYSTEM}:{EVENT_NAME} tracepoint in {candidate}"
            return False, f"tracefs at {candidate} has no {EVENT_SYSTEM}:{EVENT_NAME} tracepoint"
    try:
        filesystems = Path("/proc/filesystems").read_text()
    except OSError:
        filesystems = ""
    if "\ttracefs\n" in filesystems and TRACEFS_CANDIDATES[0].is_dir():
        return True, f"tracefs is not mounted; netdm mounts it at {TRACEFS_CANDIDATES[0]}"
    return False, "this kernel has no tracefs"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_instances(tracefs: Path) -> list[Path]:
    """The ``netdm-<pid>`` instances whose process is gone (left by a netdm that was killed)."""
    stale = []
    for entry in sorted((tracefs / "instances").glob(INSTANCE_PREFIX + "*")):
        suffix = entry.name[len(INSTANCE_PREFIX) :]
        if suffix.isdigit() and not _process_alive(int(suffix)):
            stale.append(entry)
    return stale


def remove_stale_instances(tracefs: Path) -> list[str]:
    """Remove ``netdm-<pid>`` instances whose process is gone; return their names."""
    return [entry.name for entry in stale_instances(tracefs) if _remove_instance(entry)]


def _remove_instance(path: Path) -> bool:
    """rmdir an instance, retrying briefly while the kernel still holds it (EBUSY)."""
    with contextlib.suppress(OSError):
        (path / "events" / EVENT_SYSTEM / EVENT_NAME / "enable").write_text("0")
    for _ in range(50):
        try:
            path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError as error:
            if error.errno != errno.EBUSY:
                return False
            time.sleep(0.02)
    return False


class TracefsInstance:
    """netdm's tracefs instance: created by :meth:`open`, removed by :meth:`close`."""

    def __init__(
        self,
        tracefs: Path | None = None,
        *,
        name: str | None = None,
        buffer_kb: int = DEFAULT_BUFFER_KB,
    ) -> None:
        self.tracefs = tracefs
        self.name = name or f"{INSTANCE_PREFIX}{os.getpid()}"
        self.buffer_kb = buffer_kb
        self.path: Path | None = None
        self.event_format: EventFormat | None = None
        self.page_layout = PageLayout()
        self.read_size = self.page_layout.page_size
        self._pipes: list[int] = []
        self.stale_removed: list[str] = []

    # ------------------------------------------------------------------ life cycle

    def open(self) -> TracefsInstance:
        tracefs = self.tracefs = self.tracefs or find_tracefs()
        event_dir = tracefs / "events" / EVENT_SYSTEM / EVENT_NAME
        if not (event_dir / "format").exists():
            raise TracepointUnavailableError(
                f"this kernel has no {EVENT_SYSTEM}:{EVENT_NAME} tracepoint "
                f"({event_dir} is missing)"
            )
        self.stale_removed = remove_stale_instances(tracefs)
        path = tracefs / "instances" / self.name
        try:
            path.mkdir()
        except FileExistsError:
            raise TracepointUnavailableError(
                f"the tracefs instance {path} already exists: is another netdm running?"
            ) from None
        except PermissionError:
            raise PermissionDeniedError(
                f"creating a tracefs instance ({path}) needs root (CAP_SYS_ADMIN)"
            ) from None
        self.path = path
        try:
            self._configure(path)
        except OSError as error:
            self.close()
            raise TracepointUnavailableError(
                f"cannot set up the tracefs instance {path}: "
                f"{error.strerror or error} ({getattr(error, 'filename', None) or path})"
            ) from None
        except BaseException:
            self.close()
            raise
        return self

    def _configure(self, path: Path) -> None:
        try:
            self.event_format = parse_event_format(
                (path / "events" / EVENT_SYSTEM / EVENT_NAME / "format").read_text()
            )
            self.page_layout = parse_header_page(
                (self.tracefs or path).joinpath("events", "header_page").read_text()
            )
        except ProtocolError as error:
            raise TracepointUnavailableError(
                f"cannot read the {EVENT_SYSTEM}:{EVENT_NAME} record layout: {error.reason}"
            ) from None
        (path / "buffer_size_kb").write_text(str(self.buffer_kb))
        with contextlib.suppress(OSError):
            (path / "options" / "overwrite").write_text("0")
        # Pages may be bigger than header_page says where the sub-buffer size was raised (6.8+).
        self.read_size = self.page_layout.page_size
        subbuf = path / "buffer_subbuf_size_kb"
        with contextlib.suppress(OSError, ValueError):
            self.read_size = max(self.read_size, int(subbuf.read_text()) * 1024)
        cpus = sorted(
            (entry for entry in (path / "per_cpu").iterdir() if entry.name[3:].isdigit()),
            key=lambda entry: int(entry.name[3:]),
        )
        for cpu in cpus:
            self._pipes.append(os.open(cpu / "trace_pipe_raw", os.O_RDONLY | os.O_NONBLOCK))
        (path / "events" / EVENT_SYSTEM / EVENT_NAME / "enable").write_text("1")

    def disable(self) -> None:
        """Stop the tracepoint feeding the buffer; what it holds can still be read."""
        if self.path is not None:
            with contextlib.suppress(OSError):
                (self.path / "events" / EVENT_SYSTEM / EVENT_NAME / "enable").write_text("0")

    def close(self) -> None:
        """Disable the event, close the pipes, remove the instance.  Safe to call twice."""
        self.disable()
        pipes, self._pipes = self._pipes, []
        for fd in pipes:
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.path is not None:
            _remove_instance(self.path)
            self.path = None

    def __enter__(self) -> TracefsInstance:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ reading

    @property
    def cpus(self) -> int:
        return len(self._pipes)

    def read_pages(self, max_pages_per_cpu: int = MAX_PAGES_PER_CPU) -> Iterator[bytes]:
        """The pages each CPU has ready now (a partly filled one too), without blocking."""
        size = self.read_size
        for fd in self._pipes:
            for _ in range(max_pages_per_cpu):
                try:
                    page = os.read(fd, size)
                except BlockingIOError:
                    break
                except InterruptedError:
                    continue
                if not page:
                    break
                yield page

    def lost_events(self) -> int:
        """Events the buffers had no room for, since the instance was created (all CPUs)."""
        if self.path is None:
            return 0
        total = 0
        for stats in (self.path / "per_cpu").glob("cpu*/stats"):
            with contextlib.suppress(OSError):
                total += sum(
                    int(match[2]) for match in _STATS_COUNTERS.finditer(stats.read_text())
                )
        return total
