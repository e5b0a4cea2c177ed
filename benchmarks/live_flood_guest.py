"""The guest half of benchmarks/live_flood.py: a steady drop flood, and who hears all of it.

Runs inside the project's VM (tests/vm/harness.py), as root, from the repo root::

    python benchmarks/live_flood_guest.py --outdir DIR [--rate 20000] [--duration 25] ...

and writes ``DIR/live-flood.json``; progress goes to stderr.  The host half
boots the VM, runs this, and prints the table.

**The flood.**  The kernel's ``pktgen`` sends into a ``dummy`` device with
``clone_skb 0``: every packet is a fresh skb, the dummy driver only consumes
its own reference, and pktgen frees the packet with ``kfree_skb`` when it
builds the next one (and the last one when it stops).  So every packet sent
is exactly one drop at ``pktgen_xmit``, and pktgen's own ``pkts-sofar``
counter is the number of drops generated.  The rate is held by pktgen's
per-device ``delay``; below 100 µs pktgen busy-waits, so the rate is split
over several pktgen devices (``DEV@0``, ``DEV@1``, ... on the same dummy
device) on one kernel thread, each with a delay of at least a few hundred
microseconds: the thread sleeps, then sends one packet per device.

**One run of a tool.**  The tool is started and, once it is monitoring, the
flood runs for ``--duration`` seconds.  Then the script waits until the
tool's netlink sockets are empty (it has caught up), stops it (SIGINT, as
Ctrl-C), and collects:

* generated: the sum of pktgen's ``pkts-sofar`` over its devices;
* received: the alerts in pktgen's functions the tool reported (netdm: its
  JSON summaries or its packet lines; dropwatch: its ``drop at: pktgen_...``
  blocks); alerts at other places (the guest's own drops) are counted apart;
* socket losses: ENOBUFS as the tool reported it (netdm's summaries,
  dropwatch's ``Receive operation failed`` lines) and the exact number of
  messages the kernel could not queue to the tool's sockets, the ``Drops``
  column of /proc/net/netlink, read just before the tool is stopped;
* kernel tail drops: NET_DM's STATS (``sw_dropped``) before and after, i.e.
  alerts discarded because a CPU's queue of ``--queue-len`` was full;
* the tool's CPU time and RSS, the pktgen thread's CPU time, and how busy
  the vCPUs were, over the flood.

``generated - received - netlink drops - tail drops`` is what nobody
counted; it should be zero.

The tools (``--tools``, in this order): ``netdm`` is ``netdm watch --packets
-q --json`` (storm mode: every alert counted per drop site, a JSON summary
per interval), ``netdm-lines`` is ``netdm watch --packets`` (a text line per
packet, to a file, as dropwatch prints), ``dropwatch`` is Debian's dropwatch
in packet mode.  Three experiments show where a Python receiver's time goes:
``batched`` and ``floor`` (see :func:`reader_main`) and ``profile`` (netdm
under cProfile).  ``--pin-tool CPU`` runs the tools on one vCPU only (pktgen
and the drop monitor's worker run on vCPU 0).

``--soak MINUTES`` runs netdm alone at a steady rate for that long, sampling
its RSS (``VmRSS``) and the counters every ``--sample-every`` seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PKTGEN = Path("/proc/net/pktgen")
DUMMY = "ndm-flood0"
# Every drop is pktgen's: pktgen_xmit frees each packet sent but the last, which
# pktgen frees when it stops (pktgen_stop_device).
DROP_PREFIX = "pktgen_"
DROPWATCH = "/usr/bin/dropwatch"
# pktgen busy-waits for gaps under 100 µs; keep each device's gap well above that.
MIN_DEVICE_GAP_S = 400e-6
READY_TIMEOUT = 180.0  # Python start-up and imports under TCG, on a loaded host
DRAIN_TIMEOUT = 300.0  # a tool that fell far behind still has its socket to read
EXIT_TIMEOUT = 120.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
RESULT_FILE = "live-flood.json"

# Which tool, how it is started.  The CLI forms are what the doc quotes.
NETDM_SUMMARIES = "netdm -q"
NETDM_LINES = "netdm lines"
DROPWATCH_TOOL = "dropwatch"
# Experiments, not netdm's CLI: where a Python receiver's time goes (see Reader).
BATCHED_TOOL = "netdm pipeline, batched recv"
FLOOR_TOOL = "python recv floor"
MMSG_FLOOR_TOOL = "python recvmmsg floor"
PROFILED_TOOL = "netdm -q under cProfile"
TOOL_KEYS = {
    "profile": PROFILED_TOOL,
    "netdm": NETDM_SUMMARIES,
    "netdm-lines": NETDM_LINES,
    "dropwatch": DROPWATCH_TOOL,
    "batched": BATCHED_TOOL,
    "floor": FLOOR_TOOL,
    "mmsg-floor": MMSG_FLOOR_TOOL,
}


def is_pktgen(location: str) -> bool:
    """A drop location (function, ``symbol+off``, ``symbol+off/size [module]``) in pktgen."""
    return location.startswith(DROP_PREFIX)


def log(message: str) -> None:
    print(f"[guest {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    """Something in the guest is not as the benchmark needs it; the message says what."""


# ----------------------------------------------------------------------------- the guest


def run(argv: Sequence[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)


def modprobe(module: str) -> None:
    proc = run(["modprobe", module], timeout=120)
    if proc.returncode != 0:
        said = (proc.stderr or proc.stdout).strip() or f"exit status {proc.returncode}"
        raise BenchError(
            f"modprobe {module} failed on {os.uname().release}: {said}. The benchmark needs the "
            f"kernel's {module} module (Debian builds it: CONFIG_NET_PKTGEN / CONFIG_DUMMY = m); "
            "run it in the project's VM through benchmarks/live_flood.py"
        )


def own_localtime() -> str:
    """A real /etc/localtime in the overlay: dropwatch reads the zone for every alert.

    Where /etc/localtime is a symlink into the host root shared over 9p, every
    read waits on the host.  The harness already copies it; this makes sure.
    """
    path = Path("/etc/localtime")
    if not path.is_symlink():
        return "a regular file (the harness copied it into the overlay)"
    target = path.resolve()
    proc = run(["cp", "--remove-destination", str(target), str(path)])
    if proc.returncode != 0:
        raise BenchError(f"could not copy {target} over /etc/localtime: {proc.stderr.strip()}")
    return f"was a symlink to {target}; copied into the overlay"


@dataclass
class CpuTimes:
    """Cumulative jiffies of the whole guest (/proc/stat) and of a few processes."""

    busy: int
    total: int

    @classmethod
    def read(cls) -> CpuTimes:
        with open("/proc/stat", encoding="ascii") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        total = sum(values[:8])  # without guest time, which user time already holds
        return cls(total - idle, total)


def process_cpu_ticks(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def process_memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in kB (empty when it is gone)."""
    found: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    found[key] = int(value.split()[0])
    except OSError:
        pass
    return found


def find_kthread(name: str) -> int | None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == name:
                    return int(entry.name)
    return None


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(int(link[8:-1]))
    return inodes


@dataclass
class NetlinkUse:
    """The generic-netlink sockets of one process, summed: queued bytes and dropped messages."""

    sockets: int = 0
    rmem: int = 0
    drops: int = 0


def netlink_use(inodes: set[int]) -> NetlinkUse:
    """From /proc/net/netlink: ``sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode``."""
    use = NetlinkUse()
    with open("/proc/net/netlink", encoding="ascii") as table:
        next(table, None)
        for line in table:
            columns = line.split()
            if len(columns) >= 10 and columns[1] == "16" and int(columns[9]) in inodes:
                use.sockets += 1
                use.rmem += int(columns[4])
                use.drops += int(columns[8])
    return use


# ----------------------------------------------------------------------------- pktgen


def pktgen_write(name: str, command: str) -> None:
    """One command to /proc/net/pktgen/NAME; pktgen answers in the file's ``Result:`` line."""
    path = PKTGEN / name
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, f"{command}\n".encode())  # pgctrl cuts the last byte, as from echo
    except OSError as error:
        result = ""
        with contextlib.suppress(OSError):
            result = next(
                (ln for ln in path.read_text().splitlines() if ln.startswith("Result")), ""
            )
        raise BenchError(f"pktgen refused {command!r} on {name}: {error} {result}") from None
    finally:
        os.close(fd)


@dataclass
class DeviceCounters:
    sent: int
    errors: int
    usec: int | None  # from the Result line of a finished run


def pktgen_counters(device: str) -> DeviceCounters:
    text = (PKTGEN / device).read_text()
    sofar = re.search(r"pkts-sofar:\s*(\d+)\s+errors:\s*(\d+)", text)
    if sofar is None:
        raise BenchError(f"no pkts-sofar in /proc/net/pktgen/{device}:\n{text}")
    result = re.search(r"Result: OK: (\d+)\(", text)
    return DeviceCounters(int(sofar[1]), int(sofar[2]), int(result[1]) if result else None)


class Flood:
    """pktgen into a dummy device: every packet sent is one drop (see the module docstring)."""

    def __init__(self, rate: int, devices: int, pkt_size: int) -> None:
        self.rate = rate
        self.devices = [f"{DUMMY}@{index}" for index in range(devices)]
        self.gap_ns = round(devices * 1e9 / rate)
        self.pkt_size = pkt_size
        self.thread_name = "kpktgend_0"
        self._starter: threading.Thread | None = None
        self._start_error: BaseException | None = None

    def setup(self) -> None:
        modprobe("dummy")
        modprobe("pktgen")
        if not (PKTGEN / "pgctrl").exists():
            raise BenchError("pktgen is loaded but /proc/net/pktgen/pgctrl is missing")
        self.cleanup()
        for argv in (
            ["ip", "link", "add", DUMMY, "type", "dummy"],
            ["ip", "link", "set", DUMMY, "up"],
        ):
            proc = run(argv)
            if proc.returncode != 0:
                raise BenchError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
        if not (PKTGEN / self.thread_name).exists():
            raise BenchError(f"no pktgen thread {self.thread_name} in {PKTGEN}")
        for device in self.devices:
            pktgen_write(self.thread_name, f"add_device {device}")
            for command in (
                "count 0",  # until stopped
                "clone_skb 0",  # a new skb per packet: one kfree_skb each
                f"pkt_size {self.pkt_size}",
                f"delay {self.gap_ns}",
                "dst 198.51.100.1",  # TEST-NET-2: nothing routes it; the dummy eats it anyway
                "dst_mac 02:00:00:00:00:01",
            ):
                pktgen_write(device, command)

    @property
    def per_device_rate(self) -> float:
        return 1e9 / self.gap_ns

    def start(self) -> None:
        """Writing ``start`` to pgctrl blocks until the run stops: do it from a thread."""

        def starter() -> None:
            try:
                pktgen_write("pgctrl", "start")
            except BaseException as error:  # reported below, or by stop()
                self._start_error = error

        self._starter = threading.Thread(target=starter, name="pktgen-start", daemon=True)
        self._starter.start()
        time.sleep(0.2)
        if self._start_error is not None:
            raise BenchError(f"pktgen did not start: {self._start_error}")

    def sent(self) -> int:
        return sum(pktgen_counters(device).sent for device in self.devices)

    def stop(self) -> tuple[int, int, float | None]:
        """Stop; return (packets sent = drops, errors, pktgen's own run time in seconds)."""
        pktgen_write("pgctrl", "stop")
        if self._starter is not None:
            self._starter.join(timeout=30)
            if self._starter.is_alive():
                raise BenchError("pktgen's start did not return after stop")
        if self._start_error is not None:
            raise BenchError(f"pktgen failed while running: {self._start_error}")
        counters = [pktgen_counters(device) for device in self.devices]
        usecs = [c.usec for c in counters if c.usec is not None]
        return (
            sum(c.sent for c in counters),
            sum(c.errors for c in counters),
            max(usecs) / 1e6 if usecs else None,
        )

    def cleanup(self) -> None:
        if (PKTGEN / "pgctrl").exists():
            with contextlib.suppress(OSError, BenchError):
                pktgen_write("pgctrl", "stop")
            for entry in PKTGEN.glob("kpktgend_*"):
                with contextlib.suppress(OSError, BenchError):
                    pktgen_write(entry.name, "rem_device_all")
        if Path(f"/sys/class/net/{DUMMY}").exists():
            run(["ip", "link", "del", DUMMY])


# ----------------------------------------------------------------------------- the tools


@dataclass
class ToolOutput:
    """What a tool said about the flood, from its own output."""

    received: int = 0  # alerts at pktgen_xmit
    other_alerts: int = 0  # alerts elsewhere (the guest's own drops)
    enobufs: int | None = None  # how often the tool saw ENOBUFS
    tail_drops: int | None = None  # the kernel's tail drops as the tool reported them
    socket_dropped: int | None = None  # netdm: the socket losses it reported (Drops column)
    notes: list[str] = field(default_factory=list)
    profile: str | None = None  # the top of a cProfile report
    locations: dict[str, int] = field(default_factory=dict)  # netdm JSON: count per function


class Tool:
    """A monitoring tool as a child process with its output in files."""

    name = ""

    def __init__(self, workdir: Path, trunc_len: int, queue_len: int) -> None:
        self.workdir = workdir
        self.trunc_len = trunc_len
        self.queue_len = queue_len
        self.stdout_path = workdir / f"{self.slug}.out"
        self.stderr_path = workdir / f"{self.slug}.err"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")

    def argv(self) -> list[str]:
        raise NotImplementedError

    def command_line(self) -> str:
        """How a person would type it."""
        raise NotImplementedError

    pin_cpu: int | None = None  # --pin-tool: run the tool on this CPU only

    def start(self) -> None:
        cpu = self.pin_cpu
        self.process = subprocess.Popen(
            self.argv(),
            preexec_fn=None if cpu is None else lambda: os.sched_setaffinity(0, {cpu}),
            cwd=REPO,
            stdin=self._stdin(),
            stdout=self.stdout_path.open("wb"),
            stderr=self.stderr_path.open("wb"),
        )

    def _stdin(self) -> int:
        return subprocess.DEVNULL

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def is_ready(self) -> bool:
        raise NotImplementedError

    def wait_until_ready(self, timeout: float = READY_TIMEOUT) -> float:
        assert self.process is not None
        started = time.monotonic()
        while not self.is_ready():
            if self.process.poll() is not None:
                raise BenchError(
                    f"{self.name} exited with {self.process.returncode} before monitoring: "
                    f"{self._tail(self.stderr_path) or self._tail(self.stdout_path)}"
                )
            if time.monotonic() - started > timeout:
                raise BenchError(f"{self.name} was not monitoring after {timeout:g} s")
            time.sleep(0.1)
        return time.monotonic() - started

    def request_stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)

    def wait_for_exit(self, timeout: float = EXIT_TIMEOUT) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise BenchError(f"{self.name} did not exit within {timeout:g} s of SIGINT") from None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def output(self) -> ToolOutput:
        raise NotImplementedError

    def received_so_far(self) -> int | None:
        """The tool's count so far, where its output shows it while it runs."""
        return None

    @staticmethod
    def _tail(path: Path, lines: int = 5) -> str:
        with contextlib.suppress(OSError):
            return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
        return ""

    def _stdout_contains(self, text: bytes) -> bool:
        with contextlib.suppress(OSError), self.stdout_path.open("rb") as out:
            return text in out.read(64 * 1024)
        return False


class NetdmSummaries(Tool):
    """``netdm watch --packets -q --json``: packet mode, one JSON summary per 5 s interval.

    What one runs against a storm: every alert is received and counted by
    drop site (netdm's lazy path), nothing is printed per packet.
    """

    name = NETDM_SUMMARIES

    def _options(self) -> list[str]:
        return ["--trunc-len", str(self.trunc_len), "--queue-len", str(self.queue_len)]

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "netdm",
            "watch",
            "--packets",
            "-q",
            "--json",
            *self._options(),
        ]

    def command_line(self) -> str:
        return f"netdm watch --packets -q --json {' '.join(self._options())}"

    def is_ready(self) -> bool:
        return self._stdout_contains(b'"type":"start"')

    def output(self) -> ToolOutput:
        return parse_netdm_json(self.stdout_path.read_text(errors="replace"))

    def received_so_far(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return parse_netdm_json(self.stdout_path.read_text(errors="replace")).received
        return None


def parse_netdm_json(text: str) -> ToolOutput:
    """``netdm watch --json`` output: the pktgen drops of its intervals, and its stop record."""
    result = ToolOutput()
    stop: dict[str, Any] | None = None
    for line in text.splitlines():
        if not line.endswith("}"):
            continue  # a line still being written
        record = json.loads(line)
        if record.get("type") == "interval":
            for entry in record.get("entries", []):
                symbol = entry.get("symbol") or entry.get("address") or "?"
                result.locations[symbol] = result.locations.get(symbol, 0) + entry["count"]
                if is_pktgen(symbol):
                    result.received += entry["count"]
                else:
                    result.other_alerts += entry["count"]
        elif record.get("type") == "stop":
            stop = record
        elif record.get("type") == "notice":
            result.notes.append(record.get("message", ""))
    if stop is None:
        result.notes.append("netdm wrote no stop record")
    else:
        lost = stop.get("lost", {})
        result.enobufs = lost.get("enobufs")
        result.tail_drops = lost.get("sw_tail_drops")
        result.socket_dropped = lost.get("socket_dropped")
        if stop.get("total") != result.received + result.other_alerts:
            result.notes.append(
                f"stop total {stop.get('total')} != sum of intervals "
                f"{result.received + result.other_alerts}"
            )
    return result


class NetdmLines(NetdmSummaries):
    """``netdm watch --packets``: one text line per dropped packet (to a file), as dropwatch."""

    name = NETDM_LINES
    TOTAL = re.compile(r"^Total: (\d+) packets? dropped")
    OVERFLOWED = re.compile(r"socket buffer overflowed (\d+) times?")
    QUEUE_FULL = re.compile(r"(\d+) packets? \(kernel queue full\)")

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "netdm", "watch", "--packets", *self._options()]

    def command_line(self) -> str:
        return f"netdm watch --packets {' '.join(self._options())} > FILE"

    def is_ready(self) -> bool:
        return self._stdout_contains(b"Monitoring for dropped packets")

    def received_so_far(self) -> int | None:
        return None  # counting a file of packet lines every second would load the guest

    def output(self) -> ToolOutput:
        result = ToolOutput(enobufs=0, tail_drops=0)
        total: int | None = None
        with self.stdout_path.open(errors="replace") as out:
            for line in out:
                columns = line.split(" ", 2)
                if len(columns) == 3 and ":" in columns[0] and "." in columns[0]:
                    if is_pktgen(columns[1]):
                        result.received += 1
                    else:
                        result.other_alerts += 1
                elif (match := self.TOTAL.match(line)) is not None:
                    total = int(match[1])
                    if (overflowed := self.OVERFLOWED.search(line)) is not None:
                        result.enobufs = int(overflowed[1])
                    if (queue_full := self.QUEUE_FULL.search(line)) is not None:
                        result.tail_drops = int(queue_full[1])
        if total is None:
            result.notes.append("netdm printed no Total line")
        elif total != result.received + result.other_alerts:
            result.notes.append(
                f"Total {total} != packet lines {result.received + result.other_alerts}"
            )
        return result


class NetdmProfiled(NetdmSummaries):
    """``netdm watch --packets -q --json`` under cProfile: where its time goes (slower)."""

    name = PROFILED_TOOL

    @property
    def profile_path(self) -> Path:
        return self.workdir / "netdm.prof"

    def argv(self) -> list[str]:
        profiler = [sys.executable, "-m", "cProfile", "-o", str(self.profile_path)]
        return [*profiler, "-m", "netdm", "watch", "--packets", "-q", "--json", *self._options()]

    def command_line(self) -> str:
        return f"python -m cProfile -o FILE -m {super().command_line()}"

    def output(self) -> ToolOutput:
        import io
        import pstats

        result = super().output()
        text = io.StringIO()
        stats = pstats.Stats(str(self.profile_path), stream=text)
        stats.sort_stats("tottime").print_stats(25)
        result.profile = text.getvalue()
        return result


class ReaderTool(NetdmSummaries):
    """An experiment: this script's own receive loop (``--reader KIND``, :func:`reader_main`)."""

    kind = ""

    def argv(self) -> list[str]:
        return [sys.executable, __file__, "--reader", self.kind, *self._options()]

    def command_line(self) -> str:
        return f"benchmarks/live_flood_guest.py --reader {self.kind} {' '.join(self._options())}"


class BatchedPipeline(ReaderTool):
    name = BATCHED_TOOL
    kind = "batched"


class PythonFloor(ReaderTool):
    name = FLOOR_TOOL
    kind = "floor"

    def output(self) -> ToolOutput:
        result = ToolOutput()
        for line in self.stdout_path.read_text(errors="replace").splitlines():
            record = json.loads(line)
            if record.get("type") == "floor":
                result.received = record["alerts"]  # every packet alert, pktgen's or not
                result.enobufs = record["enobufs"]
        return result

    def received_so_far(self) -> int | None:
        return None


class MmsgFloor(PythonFloor):
    name = MMSG_FLOOR_TOOL
    kind = "mmsg-floor"


class Dropwatch(Tool):
    """Debian's dropwatch in packet mode, driven through its command prompt on stdin."""

    name = DROPWATCH_TOOL

    def __init__(
        self,
        workdir: Path,
        trunc_len: int,
        queue_len: int,
        kernel_config: Callable[[], tuple[str, int, int] | None],
    ) -> None:
        super().__init__(workdir, trunc_len, queue_len)
        self.kernel_config = kernel_config

    def argv(self) -> list[str]:
        return [DROPWATCH, "-l", "kas"]

    def commands(self) -> list[str]:
        return [
            "set alertmode packet",
            f"set trunc {self.trunc_len}",
            f"set queue {self.queue_len}",
            "start",
        ]

    def command_line(self) -> str:
        return f"dropwatch -l kas > FILE, then: {'; '.join(self.commands())}"

    def _stdin(self) -> int:
        return subprocess.PIPE

    def start(self) -> None:
        super().start()
        assert self.process is not None and self.process.stdin is not None
        # readline reads stdin a byte at a time: the lines after "start" wait for later.
        self.process.stdin.write("".join(f"{c}\n" for c in self.commands()).encode())
        self.process.stdin.flush()

    def is_ready(self) -> bool:
        """dropwatch's stdout is a file, so block-buffered: watch the kernel instead.

        It sends its commands in order and START right after the queue length;
        once the kernel shows its configuration, START follows within
        milliseconds (a second of margin is added by the caller).
        """
        config = self.kernel_config()
        return config is not None and config == ("PACKET", self.trunc_len, self.queue_len)

    def request_stop(self) -> None:
        """Ctrl-C stops monitoring; "exit" at the prompt that follows ends it."""
        super().request_stop()
        assert self.process is not None and self.process.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.process.stdin.write(b"exit\n")
            self.process.stdin.close()

    def output(self) -> ToolOutput:
        result = ToolOutput(enobufs=0)
        with self.stdout_path.open(errors="replace") as out:
            for line in out:
                if line.startswith("drop at: "):
                    if is_pktgen(line[9:]):
                        result.received += 1
                    else:
                        result.other_alerts += 1
        with self.stderr_path.open(errors="replace") as err:
            for line in err:
                if "No buffer space available" in line:
                    result.enobufs = (result.enobufs or 0) + 1
                elif line.strip():
                    result.notes.append(line.strip()[:200])
        result.notes = result.notes[:5]
        return result


# ----------------------------------------------------------------------------- measuring


@dataclass
class Sample:
    """The state of a run at one moment."""

    t: float  # seconds since the flood started
    generated: int
    received: int | None  # as far as the tool's output shows yet
    rss_kb: int | None
    socket_rmem: int
    socket_drops: int
    tool_cpu_s: float | None


@dataclass
class RunResult:
    tool: str
    command: str
    generated: int
    pktgen_errors: int
    flood_seconds: float
    received: int
    other_alerts: int
    enobufs: int | None
    netlink_drops: int
    tail_drops: int  # STATS sw_dropped, after minus before
    tool_tail_drops: int | None
    tool_socket_dropped: int | None
    unaccounted: int
    drain_seconds: float
    startup_seconds: float
    tool_cpu_percent: float | None  # over the flood
    tool_cpu_seconds: float | None  # flood and drain
    tool_cpu_us_per_alert: float | None
    pktgen_cpu_percent: float | None
    guest_cpu_busy_percent: float
    rss_kb_first: int | None
    rss_kb_last: int | None
    rss_kb_max: int | None
    hwm_kb: int | None
    exit_status: int
    notes: list[str]
    samples: list[Sample]
    profile: str | None = None
    locations: dict[str, int] = field(default_factory=dict)


class KernelChannel:
    """netdm's own control channel: the drop monitor's STATS and configuration."""

    def __init__(self) -> None:
        from netdm.netlink.control import KernelControl
        from netdm.netlink.transport import NetlinkTransport

        self.transport = NetlinkTransport(receive_buffer=256 * 1024)
        self.control = KernelControl(self.transport)

    def sw_tail_drops(self) -> int:
        stats = self.control.get_stats()
        if stats is None:
            raise BenchError("this kernel keeps no drop-monitor statistics (before 5.4)")
        return stats.sw_dropped

    def config(self) -> tuple[str, int, int] | None:
        config = self.control.get_config()
        if config is None:
            return None
        return (config.alert_mode.name, config.trunc_len, config.queue_len)

    def reset(self) -> None:
        """Monitoring off, the kernel's defaults: whatever a killed tool left behind."""
        from netdm.proto.constants import AlertMode

        with contextlib.suppress(Exception):
            self.control.stop(sw=True)
        with contextlib.suppress(Exception):
            self.control.set_config(alert_mode=AlertMode.SUMMARY, trunc_len=0, queue_len=1000)

    def close(self) -> None:
        self.transport.close()


def measure(
    tool: Tool,
    flood: Flood,
    kernel: KernelChannel,
    duration: float,
    sample_every: float,
    on_sample: Callable[[Sample], None] | None = None,
) -> RunResult:
    """One tool on one flood; see the module docstring."""
    tail_before = kernel.sw_tail_drops()
    tool.start()
    try:
        startup = tool.wait_until_ready()
        if isinstance(tool, Dropwatch):
            time.sleep(1.0)  # START follows its last CONFIG; see Dropwatch.is_ready
        inodes = socket_inodes(tool.pid)
        pktgen_pid = find_kthread(flood.thread_name)
        log(
            f"{tool.name}: monitoring after {startup:.1f} s (pid {tool.pid}, "
            f"{len(inodes)} sockets); flooding {flood.rate}/s for {duration:g} s"
        )
        cpu_before = CpuTimes.read()
        tool_ticks_before = process_cpu_ticks(tool.pid)
        pktgen_ticks_before = process_cpu_ticks(pktgen_pid) if pktgen_pid else None
        started = time.monotonic()
        flood.start()
        samples: list[Sample] = []
        next_sample = started + sample_every
        end = started + duration
        while (now := time.monotonic()) < end:
            time.sleep(max(0.0, min(next_sample, end) - now))
            if time.monotonic() >= next_sample:
                sample = take_sample(tool, flood, inodes, started, tool_ticks_before)
                samples.append(sample)
                if on_sample is not None:
                    on_sample(sample)
                next_sample += sample_every
            if tool.process is not None and tool.process.poll() is not None:
                raise BenchError(
                    f"{tool.name} exited during the flood: {tool._tail(tool.stderr_path)}"
                )
        generated, pktgen_errors, pktgen_seconds = flood.stop()
        wall = time.monotonic() - started
        cpu_after = CpuTimes.read()
        tool_ticks_after = process_cpu_ticks(tool.pid)
        pktgen_ticks_after = process_cpu_ticks(pktgen_pid) if pktgen_pid else None
        flood_seconds = pktgen_seconds or wall
        drain = wait_for_drain(tool, inodes)
        socket_state = netlink_use(inodes)
        memory = process_memory_kb(tool.pid)
        samples.append(take_sample(tool, flood, inodes, started, tool_ticks_before, generated))
        tool.request_stop()
        status = tool.wait_for_exit()
    finally:
        tool.kill()
    tail_after = kernel.sw_tail_drops()
    said = tool.output()
    samples[-1].received = said.received  # the last sample: after the drain, the tool's total
    rss = [s.rss_kb for s in samples if s.rss_kb is not None]
    tail_drops = tail_after - tail_before
    cpu_seconds = samples[-1].tool_cpu_s
    per_alert = None
    if cpu_seconds is not None and said.received:
        per_alert = 1e6 * cpu_seconds / (said.received + said.other_alerts)
    return RunResult(
        tool=tool.name,
        command=tool.command_line(),
        generated=generated,
        pktgen_errors=pktgen_errors,
        flood_seconds=flood_seconds,
        received=said.received,
        other_alerts=said.other_alerts,
        enobufs=said.enobufs,
        netlink_drops=socket_state.drops,
        tail_drops=tail_drops,
        tool_tail_drops=said.tail_drops,
        tool_socket_dropped=said.socket_dropped,
        unaccounted=generated - said.received - socket_state.drops - tail_drops,
        drain_seconds=drain,
        startup_seconds=startup,
        tool_cpu_percent=_percent_of(tool_ticks_before, tool_ticks_after, wall),
        tool_cpu_seconds=cpu_seconds,
        tool_cpu_us_per_alert=per_alert,
        pktgen_cpu_percent=_percent_of(pktgen_ticks_before, pktgen_ticks_after, wall),
        guest_cpu_busy_percent=100.0
        * (cpu_after.busy - cpu_before.busy)
        / max(1, cpu_after.total - cpu_before.total),
        rss_kb_first=rss[0] if rss else None,
        rss_kb_last=memory.get("VmRSS", rss[-1] if rss else None),
        rss_kb_max=max(rss) if rss else None,
        hwm_kb=memory.get("VmHWM"),
        exit_status=status,
        notes=said.notes,
        samples=samples,
        profile=said.profile,
        locations=said.locations,
    )


def _percent_of(before: int | None, after: int | None, wall: float) -> float | None:
    if before is None or after is None or wall <= 0:
        return None
    return 100.0 * (after - before) / CLOCK_TICKS / wall


def take_sample(
    tool: Tool,
    flood: Flood,
    inodes: set[int],
    started: float,
    ticks_before: int | None,
    generated: int | None = None,
) -> Sample:
    use = netlink_use(inodes)
    ticks = process_cpu_ticks(tool.pid)
    return Sample(
        t=round(time.monotonic() - started, 2),
        generated=flood.sent() if generated is None else generated,
        received=tool.received_so_far(),
        rss_kb=process_memory_kb(tool.pid).get("VmRSS"),
        socket_rmem=use.rmem,
        socket_drops=use.drops,
        tool_cpu_s=None
        if ticks is None or ticks_before is None
        else (ticks - ticks_before) / CLOCK_TICKS,
    )


def wait_for_drain(tool: Tool, inodes: set[int], timeout: float = DRAIN_TIMEOUT) -> float:
    """Seconds until the tool's sockets stay empty: it has read everything the kernel sent."""
    started = time.monotonic()
    empty_since: float | None = None
    while time.monotonic() - started < timeout:
        if netlink_use(inodes).rmem == 0:
            empty_since = empty_since or time.monotonic()
            if time.monotonic() - empty_since >= 1.0:  # the kernel's last batch came too
                return round(empty_since - started, 2)
        else:
            empty_since = None
        time.sleep(0.1)
    raise BenchError(f"{tool.name} had not read its socket {timeout:g} s after the flood")


# ----------------------------------------------------------------------------- main


def guest_facts() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="ascii") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    dropwatch_version = ""
    proc = run(["dpkg-query", "-W", "-f=${Version}", "dropwatch"])
    if proc.returncode == 0:
        dropwatch_version = proc.stdout.strip()
    return {
        "kernel": os.uname().release,
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_kb": int(Path("/proc/meminfo").read_text().split()[1]),
        "python": sys.version.split()[0],
        "dropwatch": dropwatch_version,
    }


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="the guest half of benchmarks/live_flood.py")
    parser.add_argument("--outdir", type=Path, help="where live-flood.json goes")
    parser.add_argument("--rate", type=int, default=20_000, help="drops a second")
    parser.add_argument("--duration", type=float, default=25.0, help="flood seconds per tool")
    parser.add_argument("--trunc-len", type=int, default=64)
    parser.add_argument("--queue-len", type=int, default=1000)
    parser.add_argument("--pkt-size", type=int, default=128)
    parser.add_argument("--devices", type=int, help="pktgen devices (default: rate × 400 µs)")
    parser.add_argument(
        "--tools", default="netdm,netdm-lines,dropwatch", help="comma-separated, in order"
    )
    parser.add_argument("--soak", type=float, metavar="MINUTES", help="netdm alone this long")
    parser.add_argument("--sample-every", type=float, help="seconds (1; 10 with --soak)")
    parser.add_argument(
        "--pin-tool", type=int, metavar="CPU", help="run the tools on this CPU (pktgen: CPU 0)"
    )
    parser.add_argument(
        "--reader", choices=("batched", "floor", "mmsg-floor"), help=argparse.SUPPRESS
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_arguments(argv)
    if options.reader:
        return reader_main(options.reader, options.trunc_len, options.queue_len)
    if options.outdir is None:
        raise BenchError("--outdir is required")
    if os.geteuid() != 0:
        raise BenchError("run as root (in the VM: benchmarks/live_flood.py does it)")
    if options.rate <= 0 or options.duration <= 0:
        raise BenchError("--rate and --duration must be positive")
    keys = [key.strip() for key in options.tools.split(",") if key.strip()]
    unknown = [key for key in keys if key not in TOOL_KEYS]
    if unknown or not keys:
        raise BenchError(f"--tools {options.tools!r}: choose from {', '.join(TOOL_KEYS)}")
    tools = [TOOL_KEYS[key] for key in keys]
    if options.soak:
        tools = [NETDM_SUMMARIES]
    if DROPWATCH_TOOL in tools and not os.access(DROPWATCH, os.X_OK):
        raise BenchError(f"{DROPWATCH} is not installed (Debian package dropwatch)")
    devices = options.devices or max(1, math.ceil(options.rate * MIN_DEVICE_GAP_S))
    sample_every = options.sample_every or (10.0 if options.soak else 1.0)
    duration = options.soak * 60.0 if options.soak else options.duration
    report: dict[str, Any] = {
        "guest": guest_facts(),
        "localtime": own_localtime(),
        "params": {
            "rate": options.rate,
            "duration": duration,
            "trunc_len": options.trunc_len,
            "queue_len": options.queue_len,
            "pkt_size": options.pkt_size,
            "pktgen_devices": devices,
            "sample_every": sample_every,
            "soak_minutes": options.soak,
            "tool_pinned_to_cpu": options.pin_tool,
        },
        "runs": [],
    }
    log(f"guest {report['guest']}; /etc/localtime {report['localtime']}")
    flood = Flood(options.rate, devices, options.pkt_size)
    kernel: KernelChannel | None = None
    options.outdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="live-flood-", dir="/dev/shm") as scratch:
        try:
            flood.setup()
            report["params"]["pktgen_gap_us"] = flood.gap_ns / 1000
            report["params"]["rate_per_device"] = flood.per_device_rate
            log(
                f"pktgen: {devices} devices on {flood.thread_name}, one packet each every "
                f"{flood.gap_ns / 1000:.0f} µs ({flood.per_device_rate:.0f}/s each)"
            )
            kernel = KernelChannel()
            kernel.reset()
            for name in tools:
                tool = make_tool(name, Path(scratch), options, kernel)
                if options.soak:
                    log(f"soak: {tool.command_line()} for {options.soak:g} min")
                on_sample = _print_soak_sample if options.soak else None
                result = measure(tool, flood, kernel, duration, sample_every, on_sample)
                report["runs"].append(asdict(result))
                log(
                    f"{tool.name}: generated {result.generated}, received {result.received} "
                    f"({100 * result.received / max(1, result.generated):.2f} %), "
                    f"netlink drops {result.netlink_drops}, tail drops {result.tail_drops}, "
                    f"ENOBUFS {result.enobufs}, unaccounted {result.unaccounted}"
                )
                for path in (tool.stdout_path, tool.stderr_path):
                    path.unlink(missing_ok=True)  # tmpfs: RAM
                kernel.reset()
        finally:
            if kernel is not None:
                kernel.reset()
                kernel.close()
            flood.cleanup()
            (options.outdir / RESULT_FILE).write_text(json.dumps(report, indent=1) + "\n")
    return 0


def make_tool(name: str, scratch: Path, options: argparse.Namespace, kernel: KernelChannel) -> Tool:
    tool = _new_tool(name, scratch, options, kernel)
    tool.pin_cpu = options.pin_tool
    return tool


def _new_tool(name: str, scratch: Path, options: argparse.Namespace, kernel: KernelChannel) -> Tool:
    if name == DROPWATCH_TOOL:
        return Dropwatch(scratch, options.trunc_len, options.queue_len, kernel.config)
    netdm_tools: tuple[type[Tool], ...] = (
        NetdmSummaries,
        NetdmLines,
        NetdmProfiled,
        BatchedPipeline,
        PythonFloor,
        MmsgFloor,
    )
    [tool_class] = [tool for tool in netdm_tools if tool.name == name]
    return tool_class(scratch, options.trunc_len, options.queue_len)


# ----------------------------------------------------------------------------- experiments

READER_BATCH = 256  # datagrams taken from the socket per pass, before the clock is read again


def reader_main(kind: str, trunc_len: int, queue_len: int) -> int:
    """A packet-mode receiver that is not netdm's LiveMonitor, to see where the time goes.

    Both kinds configure and start the monitor with netdm's own
    :class:`~netdm.netlink.control.KernelControl` on netdm's 16 MiB socket, then read
    with ``recv_into`` on the non-blocking socket until it is empty, and only
    then wait in ``select``:

    * ``floor``: counts PACKET_ALERT datagrams and nothing else, the least
      any Python receiver can do;
    * ``batched``: feeds every datagram to netdm's own :class:`Pipeline`
      (lazy path, five-second summaries, STATS polled once a second, as
      ``netdm watch --packets -q --json`` builds it), reading the clock,
      ticking the aggregator and checking the deadline once per batch of up
      to :data:`READER_BATCH` datagrams instead of once per datagram, and
      writes netdm's JSON summaries.

    SIGINT stops monitoring, as Ctrl-C stops netdm.
    """
    import errno
    import select
    import socket

    from netdm.engine.aggregate import IntervalAggregator
    from netdm.engine.session import NetDmDecoder, Pipeline
    from netdm.engine.symbols import SymbolTable
    from netdm.netlink.control import KernelControl
    from netdm.netlink.transport import NetlinkTransport
    from netdm.output.render import JsonRenderer
    from netdm.proto.constants import AlertMode, Cmd

    stopping = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    control_socket = NetlinkTransport(receive_buffer=256 * 1024)
    control = KernelControl(control_socket)
    events = NetlinkTransport()
    saved = control.get_config()
    control.set_config(alert_mode=AlertMode.PACKET, trunc_len=trunc_len, queue_len=queue_len)
    events.join_events()
    family_id = events.family_id
    sock = socket.socket(fileno=os.dup(events.fileno()))  # shares O_NONBLOCK with netdm's
    buffer = bytearray(128 * 1024)
    view = memoryview(buffer)
    renderer = JsonRenderer(sys.stdout, SymbolTable.empty())
    baseline = control.get_stats()
    control.start(sw=True)
    start = time.time()
    pipeline = Pipeline(
        NetDmDecoder(family_id), IntervalAggregator(interval=5.0, start=start), renderer.interval
    )
    if baseline is not None:
        pipeline.kernel_stats(baseline.sw_dropped, baseline.hw_dropped, start)
    renderer.start()
    alerts = enobufs = 0
    next_stats = time.monotonic() + 1.0
    batched = kind == "batched"
    recv_into = sock.recv_into
    if kind == "mmsg-floor":
        from netdm.netlink.batch_receive import open_batch_receiver, packet_alert_slot_size

        receiver = open_batch_receiver(sock.fileno(), packet_alert_slot_size(trunc_len) or 65536)
        if receiver is None:
            raise BenchError("this libc has no recvmmsg")
        try:
            while not stopping.is_set():
                try:
                    datagrams, _oversized = receiver.receive()
                except BlockingIOError:
                    with contextlib.suppress(InterruptedError):
                        select.select([sock], [], [], 0.25)
                    continue
                except OSError as error:
                    if error.errno != errno.ENOBUFS:
                        raise
                    enobufs += 1
                    continue
                for datagram in datagrams:
                    if len(datagram) >= 20 and datagram[16] == Cmd.PACKET_ALERT:
                        alerts += 1
        finally:
            control.stop(sw=True)
            if saved is not None:
                control.set_config(
                    alert_mode=saved.alert_mode,
                    trunc_len=saved.trunc_len,
                    queue_len=saved.queue_len,
                )
        print(json.dumps({"type": "floor", "alerts": alerts, "enobufs": enobufs}), flush=True)
        return 0
    try:
        while not stopping.is_set():
            now = time.time()
            taken = 0
            while taken < READER_BATCH:
                try:
                    size = recv_into(buffer)
                except BlockingIOError:
                    break
                except OSError as error:
                    if error.errno != errno.ENOBUFS:
                        raise
                    enobufs += 1
                    if batched:
                        pipeline.add_losses(now, enobufs=1)
                    continue
                taken += 1
                if batched:
                    pipeline.feed(bytes(view[:size]), now)
                elif size >= 20 and buffer[16] == Cmd.PACKET_ALERT:
                    alerts += 1
            if taken == 0:
                with contextlib.suppress(InterruptedError):
                    select.select([sock], [], [], 0.25)
            if batched:
                if time.monotonic() >= next_stats:
                    next_stats = time.monotonic() + 1.0
                    stats = control.get_stats()
                    if stats is not None:
                        pipeline.kernel_stats(stats.sw_dropped, stats.hw_dropped, now)
                pipeline.tick(now)
    finally:
        control.stop(sw=True)
        if saved is not None:
            control.set_config(
                alert_mode=saved.alert_mode, trunc_len=saved.trunc_len, queue_len=saved.queue_len
            )
    now = time.time()
    stats = control.get_stats()
    if stats is not None:
        pipeline.kernel_stats(stats.sw_dropped, stats.hw_dropped, now)
    pipeline.finish(now)
    if batched:
        renderer.stop(pipeline.totals)
    else:
        print(json.dumps({"type": "floor", "alerts": alerts, "enobufs": enobufs}), flush=True)
    return 0


def _print_soak_sample(sample: Sample) -> None:
    log(
        f"soak t={sample.t:7.1f}s generated {sample.generated} received {sample.received} "
        f"rss {sample.rss_kb} kB "
        f"socket queue {sample.socket_rmem} B drops {sample.socket_drops} "
        f"cpu {sample.tool_cpu_s} s"
    )


@contextlib.contextmanager
def _reported() -> Iterator[None]:
    try:
        yield
    except BenchError as error:
        print(f"live_flood_guest: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    with _reported():
        sys.exit(main())
