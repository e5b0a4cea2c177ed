"""How fast netdm replays a drop storm, beside tshark; its memory and start-up.

    python benchmarks/replay_throughput.py            # 1,000,000 packet alerts (a few minutes)
    python benchmarks/replay_throughput.py --quick    # 20,000, for CI (well under a minute)
    python benchmarks/replay_throughput.py --memory   # RSS after 1M and 10M messages too
    python benchmarks/replay_throughput.py --json     # one JSON document instead of the table

Strategy: a packet-mode capture is grown from the real 6.1 alerts in
captures/packet-udp-loopback.pcapng (benchmarks/storm_capture.py), then
replayed every way that matters, on one CPU (the process and its children are
pinned to it): into five-second summaries in-process (the library calls the
CLI makes, on the lazy path the pipeline picks and on the full decoder) and
end to end (``netdm watch -r FILE -q --packets``); fully decoded to per-packet
JSON lines, in-process and end to end; and by tshark, as one-line summaries
and as NET_DM fields.  Output goes to /dev/null.  A second capture of whole
packets of every length (trunc_len 0: more shapes than the lazy path
remembers) shows its worst case beside the full decoder's.  Each in-process
run is a fresh interpreter (the generator's heap would slow the garbage
collector), timed around the library calls only.  Memory is the RSS of a
child that cycles the capture through one pipeline; start-up is the median
wall time of ``netdm --help`` and of a small replay.

Numbers are printed, never judged: nothing here fails because it is slow.
CPU time is shown beside wall time because a shared machine steals cycles
from wall time only.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run as a script: make netdm and benchmarks importable

from benchmarks.storm_capture import StormInfo, write_storm  # noqa: E402

FULL_ALERTS = 1_000_000
QUICK_ALERTS = 20_000
# The whole-packet storm (every length, as with trunc_len 0) is ~1 kB a record: capped.
WHOLE_PACKET_ALERTS = 200_000
INTERVAL = 5.0
SUMMARY_TARGET = 250_000  # messages/s, from the issue
JSON_TARGET = 100_000
STARTUP_TARGET = 0.3  # seconds
SMALL_CAPTURE = REPO / "captures" / "summary-udp-loopback.pcapng"
TSHARK_FIELDS = (
    "net_dm.pc",
    "net_dm.symbol",
    "net_dm.origin",
    "net_dm.port.netdev_index",
    "net_dm.timestamp",
    "net_dm.orig_len",
)


@dataclass
class Measurement:
    """One row of the table."""

    name: str
    command: str
    items: int  # messages (netdm) or frames (tshark) processed
    wall_seconds: float
    cpu_seconds: float
    target: float | None = None  # items per second the issue asks for, if any
    note: str = ""

    @property
    def rate(self) -> float:
        return self.items / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def cpu_rate(self) -> float:
        return self.items / self.cpu_seconds if self.cpu_seconds else 0.0


@dataclass
class MemoryResult:
    messages_per_pass: int
    passes: int
    rss_before_mb: float
    rss_after_first_mb: float
    rss_after_last_mb: float
    peak_mb: float
    command: str

    @property
    def growth_mb(self) -> float:
        return self.rss_after_last_mb - self.rss_after_first_mb


@dataclass
class StartupResult:
    command: str
    runs: int
    median_seconds: float
    min_seconds: float


@dataclass
class Report:
    machine: dict[str, Any]
    capture: dict[str, Any]
    throughput: list[Measurement] = field(default_factory=list)
    memory: MemoryResult | None = None
    startup: list[StartupResult] = field(default_factory=list)


# --------------------------------------------------------------------------- the machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _tshark_version() -> str | None:
    if shutil.which("tshark") is None:
        return None
    result = subprocess.run(["tshark", "--version"], capture_output=True, text=True, check=False)
    return result.stdout.splitlines()[0] if result.stdout else None


def machine_info(cpu: int) -> dict[str, Any]:
    import netdm

    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "pinned_to_cpu": cpu,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "netdm": netdm.__version__,
        "tshark": _tshark_version(),
        "load_average_at_start": [round(load, 2) for load in os.getloadavg()],
    }


# --------------------------------------------------------------------------- measuring


def _child_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_in_process(run: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) seconds of ``run()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def time_command(
    command: Sequence[str], *, stdout: TextIO | int | None = None
) -> tuple[float, float]:
    """(wall, CPU) seconds of a command, its output to /dev/null."""
    cpu = _child_cpu_seconds()
    wall = time.perf_counter()
    subprocess.run(
        command,
        stdout=subprocess.DEVNULL if stdout is None else stdout,
        stderr=subprocess.DEVNULL,
        check=True,
        env=_netdm_env(),
    )
    return time.perf_counter() - wall, _child_cpu_seconds() - cpu


def _netdm_env() -> dict[str, str]:
    """The environment for ``python -m netdm``: this checkout first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _command_timer(command: Sequence[str]) -> Callable[[], tuple[float, float]]:
    return lambda: time_command(command)


def best_of(repeat: int, measure: Callable[[], tuple[float, float]]) -> tuple[float, float]:
    """The fastest of ``repeat`` runs (by wall time): the one least disturbed."""
    return min((measure() for _ in range(repeat)), key=lambda times: times[0])


# --------------------------------------------------------------------------- netdm in-process


def replay_summaries(path: Path, *, need_packets: bool | None, out: TextIO) -> int:
    """``netdm watch -r PATH -q --packets``, as the CLI calls the library; returns records fed."""
    from netdm.capture import read_capture, read_symbols
    from netdm.engine.aggregate import IntervalAggregator
    from netdm.engine.session import DatagramDecoder, Pipeline, replay_capture
    from netdm.engine.symbols import SymbolTable
    from netdm.output.render import make_renderer

    symbols = SymbolTable.from_kallsyms_text(read_symbols(path), source_description=str(path))
    renderer = make_renderer(json_lines=False, out=out, symbols=symbols)

    def new_pipeline(decoder: DatagramDecoder, start: float) -> Pipeline:
        aggregator = IntervalAggregator(interval=INTERVAL, start=start)
        return Pipeline(decoder, aggregator, renderer.interval, need_packets=need_packets)

    renderer.start()
    result = replay_capture(lambda: read_capture(path), new_pipeline)
    renderer.stop(result.totals)
    return result.records


def replay_packets_as_json(path: Path, out: TextIO) -> int:
    """``netdm watch -r PATH --packets --json``, as the CLI calls the library."""
    from netdm.capture import read_capture, read_symbols
    from netdm.engine.aggregate import IntervalAggregator
    from netdm.engine.session import DatagramDecoder, Pipeline, replay_capture
    from netdm.engine.symbols import SymbolTable
    from netdm.output.render import PacketPrinter, make_renderer

    symbols = SymbolTable.from_kallsyms_text(read_symbols(path), source_description=str(path))
    renderer = make_renderer(json_lines=True, out=out, symbols=symbols)
    printer = PacketPrinter(out, symbols, json_lines=True)

    def new_pipeline(decoder: DatagramDecoder, start: float) -> Pipeline:
        aggregator = IntervalAggregator(interval=INTERVAL, start=start)
        return Pipeline(decoder, aggregator, renderer.interval, on_packet=printer.packet)

    renderer.start()
    result = replay_capture(lambda: read_capture(path), new_pipeline)
    renderer.stop(result.totals)
    return result.records


CHILD_RUNS = ("summaries", "summaries-full", "json")


def in_process_child(kind: str, path: Path) -> dict[str, Any]:
    """One in-process measurement, in this (fresh) process: times, records, output digest."""
    import hashlib

    if kind == "json":
        with open(os.devnull, "w") as devnull:
            wall, cpu = time_in_process(lambda: replay_packets_as_json(path, devnull))
        digest = ""
    else:
        out = io.StringIO()  # a few summaries: nothing to time in writing them
        need_packets = True if kind == "summaries-full" else None
        wall, cpu = time_in_process(
            lambda: replay_summaries(path, need_packets=need_packets, out=out)
        )
        digest = hashlib.sha256(out.getvalue().encode()).hexdigest()
    return {"wall": wall, "cpu": cpu, "output_sha256": digest}


def time_in_child(kind: str, path: Path) -> tuple[float, float, str]:
    """:func:`in_process_child` in a fresh interpreter, so that this process's heap (the
    capture generator, construct) does not slow the garbage collector down."""
    command = [sys.executable, __file__, "--child", kind, str(path)]
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=_netdm_env())
    values = json.loads(result.stdout)
    return values["wall"], values["cpu"], values["output_sha256"]


def _child_timer(kind: str, path: Path, digests: list[str]) -> Callable[[], tuple[float, float]]:
    def measure() -> tuple[float, float]:
        wall, cpu, digest = time_in_child(kind, path)
        digests.append(digest)
        return wall, cpu

    return measure


def measure_netdm(storm: StormInfo, whole: StormInfo, repeat: int, report: Report) -> None:
    path, alerts = storm.path, storm.alerts
    for scenario, capture in (("", storm), (", whole packets", whole)):
        target = None if capture is whole else SUMMARY_TARGET  # the is for the storm
        lazy_digests: list[str] = []
        wall, cpu = best_of(repeat, _child_timer("summaries", capture.path, lazy_digests))
        report.throughput.append(
            Measurement(
                f"summaries, in-process, lazy path{scenario}",
                "Pipeline(...) as `netdm watch -r FILE -q --packets` builds it",
                capture.alerts,
                wall,
                cpu,
                target,
            )
        )
        full_digests: list[str] = []
        wall, cpu = best_of(repeat, _child_timer("summaries-full", capture.path, full_digests))
        same = set(lazy_digests) == set(full_digests) and len(set(lazy_digests)) == 1
        report.throughput.append(
            Measurement(
                f"summaries, in-process, full decoder{scenario}",
                "the same with Pipeline(..., need_packets=True): the path before the lazy one",
                capture.alerts,
                wall,
                cpu,
                note="output identical to the lazy path" if same else "OUTPUT DIFFERS",
            )
        )
    command = [sys.executable, "-m", "netdm", "watch", "-r", str(path), "-q", "--packets"]
    wall, cpu = best_of(repeat, _command_timer(command))
    report.throughput.append(
        Measurement(
            "summaries, CLI end to end",
            "python -m netdm watch -r FILE -q --packets > /dev/null",
            alerts,
            wall,
            cpu,
            SUMMARY_TARGET,
            note="includes start-up",
        )
    )
    wall, cpu = best_of(repeat, _child_timer("json", path, []))
    report.throughput.append(
        Measurement(
            "per-packet JSON, in-process",
            "Pipeline(..., on_packet=PacketPrinter(json_lines=True).packet)",
            alerts,
            wall,
            cpu,
            JSON_TARGET,
        )
    )
    command = [sys.executable, "-m", "netdm", "watch", "-r", str(path), "--packets", "--json"]
    wall, cpu = best_of(repeat, _command_timer(command))
    report.throughput.append(
        Measurement(
            "per-packet JSON, CLI end to end",
            "python -m netdm watch -r FILE --packets --json > /dev/null",
            alerts,
            wall,
            cpu,
            JSON_TARGET,
            note="includes start-up",
        )
    )


def measure_tshark(storm: StormInfo, repeat: int, report: Report) -> None:
    if shutil.which("tshark") is None:
        return
    path = str(storm.path)
    fields = " ".join(f"-e {name}" for name in TSHARK_FIELDS)
    runs = (
        ("tshark, one-line summaries", ["tshark", "-r", path], "tshark -r FILE > /dev/null"),
        (
            "tshark, NET_DM fields",
            ["tshark", "-r", path, "-T", "fields", *fields.split()],
            f"tshark -r FILE -T fields {fields} > /dev/null",
        ),
    )
    for name, command, shown in runs:
        wall, cpu = best_of(repeat, _command_timer(command))
        report.throughput.append(Measurement(name, shown, storm.records, wall, cpu, note="frames"))


# --------------------------------------------------------------------------- memory


def _rss_mb() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process in MB."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def rss_child(path: Path, passes: int) -> dict[str, float]:
    """In a fresh process: cycle the capture ``passes`` times through one lazy pipeline.

    Each pass is shifted by the capture's span, so time keeps moving forward and
    windows keep closing, as in a long storm.
    """
    from netdm.capture import NETLINK_GENERIC, read_capture, read_symbols
    from netdm.engine.aggregate import IntervalAggregator
    from netdm.engine.session import NetDmDecoder, Pipeline, find_family_id
    from netdm.engine.symbols import SymbolTable
    from netdm.output.render import make_renderer

    with read_capture(path) as reader:
        family_id, _ = find_family_id(reader)
        first_ns = last_ns = None
    with read_capture(path) as reader:
        for record in reader:
            first_ns = record.timestamp_ns if first_ns is None else first_ns
            last_ns = record.timestamp_ns
    assert first_ns is not None and last_ns is not None
    span_ns = last_ns - first_ns + 1_000_000
    symbols = SymbolTable.from_kallsyms_text(read_symbols(path), source_description=str(path))
    with open(os.devnull, "w") as devnull:
        renderer = make_renderer(json_lines=False, out=devnull, symbols=symbols)
        aggregator = IntervalAggregator(interval=INTERVAL, start=first_ns / 1e9)
        pipeline = Pipeline(NetDmDecoder(family_id), aggregator, renderer.interval)
        assert pipeline.lazy
        before, _ = _rss_mb()
        after_first = 0.0
        for cycle in range(passes):
            shift_ns = cycle * span_ns
            with read_capture(path) as reader:
                for record in reader:
                    if record.protocol == NETLINK_GENERIC and not record.outgoing:
                        pipeline.feed(record.data, (record.timestamp_ns + shift_ns) / 1e9)
            if cycle == 0:
                after_first, _ = _rss_mb()
        pipeline.finish((last_ns + (passes - 1) * span_ns) / 1e9)
        after_last, peak = _rss_mb()
    return {"before": before, "after_first": after_first, "after_last": after_last, "peak": peak}


def measure_memory(storm: StormInfo, passes: int) -> MemoryResult:
    command = [sys.executable, __file__, "--rss-child", str(storm.path), "--passes", str(passes)]
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=_netdm_env())
    values = json.loads(result.stdout)
    return MemoryResult(
        messages_per_pass=storm.alerts,
        passes=passes,
        rss_before_mb=values["before"],
        rss_after_first_mb=values["after_first"],
        rss_after_last_mb=values["after_last"],
        peak_mb=values["peak"],
        command=f"python benchmarks/replay_throughput.py --rss-child FILE --passes {passes}",
    )


# --------------------------------------------------------------------------- start-up


def measure_startup(runs: int) -> list[StartupResult]:
    commands = (
        [sys.executable, "-c", "pass"],
        [sys.executable, "-m", "netdm", "--help"],
        [sys.executable, "-m", "netdm", "watch", "-r", str(SMALL_CAPTURE)],
    )
    results = []
    for command in commands:
        times = [time_command(command)[0] for _ in range(runs)]
        shown = " ".join(["python", *command[1:]]).replace(str(REPO) + "/", "")
        results.append(StartupResult(shown, runs, statistics.median(times), min(times)))
    return results


# --------------------------------------------------------------------------- output


def _rate(value: float) -> str:
    return f"{value:,.0f}/s"


def print_table(report: Report, out: TextIO) -> None:
    machine, capture = report.machine, report.capture
    out.write(
        f"Machine: {machine['nproc']} CPUs, {machine['cpu_model']}; pinned to CPU "
        f"{machine['pinned_to_cpu']}; Python {machine['python']}; kernel {machine['kernel']}; "
        f"load average at start {machine['load_average_at_start']}\n"
        f"tshark: {machine['tshark'] or 'not installed'}\n"
        f"Capture: {capture['alerts']:,} packet alerts, {capture['records']:,} records, "
        f"{capture['size_bytes'] / 1e6:,.1f} MB, {capture['templates']} construct-built templates, "
        f"written in {capture['write_seconds']:.1f} s ({capture['path']})\n"
        f"Whole packets: {capture['whole_packets']['alerts']:,} packet alerts of 60 to 1514 bytes, "
        f"{capture['whole_packets']['size_bytes'] / 1e6:,.1f} MB, "
        f"{capture['whole_packets']['templates']} templates\n\n"
    )
    rows = [("what", "items", "wall s", "CPU s", "rate (wall)", "rate (CPU)", "target", "note")]
    for measurement in report.throughput:
        rows.append(
            (
                measurement.name,
                f"{measurement.items:,}",
                f"{measurement.wall_seconds:.2f}",
                f"{measurement.cpu_seconds:.2f}",
                _rate(measurement.rate),
                _rate(measurement.cpu_rate),
                "" if measurement.target is None else f">= {measurement.target:,.0f}/s",
                measurement.note,
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for index, row in enumerate(rows):
        cells = [
            cell.ljust(width) if column in (0, 7) else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        out.write("  ".join(cells).rstrip() + "\n")
        if index == 0:
            out.write("  ".join("-" * width for width in widths) + "\n")
    out.write("\nCommands:\n")
    for measurement in report.throughput:
        out.write(f"  {measurement.name}: {measurement.command}\n")
    if report.memory is not None:
        memory = report.memory
        total = memory.messages_per_pass * memory.passes
        out.write(
            f"\nMemory (one lazy pipeline, the capture cycled {memory.passes} times: "
            f"{total:,} messages): RSS {memory.rss_before_mb:.1f} MB before, "
            f"{memory.rss_after_first_mb:.1f} MB after {memory.messages_per_pass:,}, "
            f"{memory.rss_after_last_mb:.1f} MB after {total:,} "
            f"(growth {memory.growth_mb:+.1f} MB; peak {memory.peak_mb:.1f} MB)\n"
        )
    if report.startup:
        out.write(
            f"\nStart-up (median of {report.startup[0].runs} runs, target < {STARTUP_TARGET} s):\n"
        )
        for startup in report.startup:
            out.write(
                f"  {startup.median_seconds:.3f} s (min {startup.min_seconds:.3f} s)  "
                f"{startup.command}\n"
            )


def as_json(report: Report) -> dict[str, Any]:
    document = asdict(report)
    for row, measurement in zip(document["throughput"], report.throughput, strict=True):
        row["rate"] = measurement.rate
        row["cpu_rate"] = measurement.cpu_rate
    if report.memory is not None:
        document["memory"]["growth_mb"] = report.memory.growth_mb
    return document


# --------------------------------------------------------------------------- main


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ALERTS:,} alerts (CI)")
    parser.add_argument("--alerts", type=int, help=f"alerts in the capture ({FULL_ALERTS:,})")
    parser.add_argument(
        "--memory", action="store_true", help="cycle the capture 10 times for the RSS (10M)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--repeat", type=int, help="runs per measurement, best kept (1; 3 quick)")
    parser.add_argument("--cpu", type=int, help="the CPU to pin to (the last one allowed)")
    parser.add_argument("--keep", type=Path, help="write the capture here and keep it")
    parser.add_argument("--no-tshark", action="store_true", help="skip tshark")
    parser.add_argument("--rss-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=2, metavar=("KIND", "FILE"), help=argparse.SUPPRESS)
    parser.add_argument("--passes", type=int, default=1, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_arguments(argv)
    if options.rss_child is not None:
        print(json.dumps(rss_child(options.rss_child, options.passes)))
        return 0
    if options.child is not None:
        kind, path = options.child
        if kind not in CHILD_RUNS:
            raise SystemExit(f"--child: one of {', '.join(CHILD_RUNS)}")
        print(json.dumps(in_process_child(kind, Path(path))))
        return 0
    allowed = sorted(os.sched_getaffinity(0))
    cpu = options.cpu if options.cpu is not None else allowed[-1]
    os.sched_setaffinity(0, {cpu})  # children (netdm, tshark) inherit it
    alerts = options.alerts or (QUICK_ALERTS if options.quick else FULL_ALERTS)
    repeat = options.repeat or (3 if options.quick else 1)
    memory_passes = 10 if options.memory or options.quick else 2
    report = Report(machine=machine_info(cpu), capture={})
    with tempfile.TemporaryDirectory(prefix="netdm-bench-") as scratch:
        directory = options.keep or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        storm = write_storm(directory / f"storm-{alerts}.pcapng", alerts)
        write_seconds = time.perf_counter() - started
        whole_alerts = min(alerts, WHOLE_PACKET_ALERTS)
        whole = write_storm(
            directory / f"whole-packets-{whole_alerts}.pcapng", whole_alerts, whole_packets=True
        )
        report.capture = {
            "path": str(storm.path),
            "alerts": storm.alerts,
            "records": storm.records,
            "size_bytes": storm.size_bytes,
            "templates": storm.templates,
            "write_seconds": write_seconds,
            "whole_packets": {
                "path": str(whole.path),
                "alerts": whole.alerts,
                "size_bytes": whole.size_bytes,
                "templates": whole.templates,
            },
        }
        measure_netdm(storm, whole, repeat, report)
        if not options.no_tshark:
            measure_tshark(storm, repeat, report)
        report.memory = measure_memory(storm, memory_passes)
    report.startup = measure_startup(7 if options.quick else 9)
    if options.json:
        json.dump(as_json(report), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_table(report, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
