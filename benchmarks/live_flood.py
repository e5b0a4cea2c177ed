"""A live drop flood in the project's VM: does netdm hear every drop?  Beside dropwatch.

Run from the repo root, as root (it boots the VM of tests/vm/harness.py)::

    python benchmarks/live_flood.py                # 20,000 drops/s, 25 s per tool, one boot:
                                                   #   netdm -q, netdm lines, dropwatch
    python benchmarks/live_flood.py --quick        # 5 s, netdm -q only (a smoke run; not in CI)
    python benchmarks/live_flood.py --soak 10      # netdm -q for 10 minutes, RSS every 10 s
    python benchmarks/live_flood.py --json         # one JSON document instead of the tables

Options: ``--rate N`` (drops a second), ``--duration S`` (flood seconds per
tool), ``--trunc-len N`` (64), ``--queue-len N`` (1000), ``--tools LIST``
(``netdm,netdm-lines,dropwatch``; the experiments ``batched``, ``floor`` and
``profile`` too), ``--pin-tool CPU`` (run the tools on one vCPU only),
``--outdir DIR`` (keep the guest's files: its JSON, console log).  Results
and what they mean: docs/performance.md, "Live, in the VM".

Strategy: the guest half, benchmarks/live_flood_guest.py, makes the drops
with the kernel's pktgen (every packet into a dummy device is one drop at
pktgen_xmit; pktgen counts what it sent), runs each tool on the same steady
flood in turn, and compares what the tool received with what was generated
and with every loss the kernel counts: the socket's ``Drops`` column in
/proc/net/netlink and NET_DM's tail drops (STATS).  Its module docstring has
the details.  This half boots the VM, runs it, and prints what it measured.
Numbers are printed, never judged: nothing here fails because it is slow.

Under TCG every guest instruction is emulated, so the VM is many times
slower than the host and shares the host's CPUs with whatever else runs
there: the host's load average is printed before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run as a script: make benchmarks importable

from benchmarks.live_flood_guest import TOOL_KEYS  # noqa: E402

GUEST_SCRIPT = "benchmarks/live_flood_guest.py"
RESULT_FILE = "live-flood.json"
DEFAULT_TOOLS = "netdm,netdm-lines,dropwatch"
QUICK_DURATION = 5.0
BOOT_ALLOWANCE = 180.0  # boot, imports, pktgen set-up, on a loaded host
# A tool's start-up, its drain after the flood and its exit, at most (the guest's timeouts).
PER_TOOL_ALLOWANCE = 180.0 + 300.0 + 120.0


def host_facts() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", errors="replace") as cpuinfo:
        model = next(
            (ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), ""
        )
    qemu = ""
    with contextlib.suppress(OSError, IndexError, subprocess.SubprocessError):
        qemu = subprocess.run(
            ["qemu-system-x86_64", "--version"], capture_output=True, text=True, timeout=30
        ).stdout.splitlines()[0]
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "qemu": qemu,
        "vm_cpus": int(os.environ.get("NETDM_VM_CPUS", "2")),
        "vm_memory_mb": int(os.environ.get("NETDM_VM_MEMORY", "1024")),
    }


def guest_argv(options: argparse.Namespace, outdir: Path) -> list[str]:
    argv = [
        sys.executable,
        GUEST_SCRIPT,
        "--outdir",
        str(outdir),
        "--rate",
        str(options.rate),
        "--duration",
        str(options.duration),
        "--trunc-len",
        str(options.trunc_len),
        "--queue-len",
        str(options.queue_len),
        "--pkt-size",
        str(options.pkt_size),
        "--tools",
        options.tools,
    ]
    if options.devices:
        argv += ["--devices", str(options.devices)]
    if options.soak:
        argv += ["--soak", str(options.soak)]
    if options.sample_every:
        argv += ["--sample-every", str(options.sample_every)]
    if options.pin_tool is not None:
        argv += ["--pin-tool", str(options.pin_tool)]
    return argv


def run_guest(options: argparse.Namespace, outdir: Path) -> dict[str, Any]:
    sys.path.insert(0, str(REPO / "tests" / "vm"))
    import harness  # tests/vm/harness.py: boots the VM

    tools = len(options.tools.split(","))
    if options.soak:
        timeout = BOOT_ALLOWANCE + options.soak * 60 + PER_TOOL_ALLOWANCE
    else:
        timeout = BOOT_ALLOWANCE + tools * (options.duration + PER_TOOL_ALLOWANCE)
    result = harness.run_in_vm(
        guest_argv(options, outdir), timeout=timeout, outdir=outdir, stream=not options.json
    )
    report_path = outdir / RESULT_FILE
    if not report_path.exists():
        raise SystemExit(
            f"live_flood: the guest wrote no {RESULT_FILE} (exit {result.returncode}):\n"
            f"{result.stderr[-3000:]}"
        )
    report: dict[str, Any] = json.loads(report_path.read_text())
    report["guest_exit_status"] = result.returncode
    report["vm_seconds"] = round(result.duration, 1)
    if result.returncode != 0:
        report["guest_error"] = result.stderr.strip().splitlines()[-1:]
    return report


# ----------------------------------------------------------------------------- printing


def _rate(count: int | None, seconds: float) -> str:
    return "-" if count is None else f"{count / seconds:,.0f}"


def _share(count: int | None, whole: int) -> str:
    return "-" if count is None else f"{100 * count / max(1, whole):.2f} %"


def _rate_and_share(count: int, seconds: float, whole: int) -> str:
    return f"{_rate(count, seconds)}/s ({_share(count, whole)})"


def _number(value: float | int | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def print_table(rows: list[list[str]], out: Any = sys.stdout) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        cells = [
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ]
        print("  ".join(cells).rstrip(), file=out)
        if index == 0:
            print("  ".join("-" * w for w in widths), file=out)


def print_report(report: dict[str, Any], out: Any = sys.stdout) -> None:
    params, guest, host = report["params"], report["guest"], report["host"]
    print(file=out)
    print(
        f"Host: {host['cpus']} CPUs ({host['cpu_model']}), kernel {host['kernel']}, "
        f"{host['qemu']}; load average before {host['load_before']}, after {host['load_after']}",
        file=out,
    )
    print(
        f"Guest: {guest['cpus']} vCPUs (TCG), kernel {guest['kernel']}, Python {guest['python']}, "
        f"dropwatch {guest['dropwatch'] or '?'}; /etc/localtime {report['localtime']}",
        file=out,
    )
    print(
        f"Flood: {params['rate']:,} drops/s for {params['duration']:g} s per tool, pktgen "
        f"{params['pktgen_devices']} devices x {params.get('rate_per_device', 0):.0f}/s, "
        f"{params['pkt_size']}-byte packets; trunc {params['trunc_len']}, "
        f"queue {params['queue_len']} per CPU"
        + (
            f"; tools pinned to vCPU {params['tool_pinned_to_cpu']}"
            if params.get("tool_pinned_to_cpu") is not None
            else ""
        ),
        file=out,
    )
    print(file=out)
    rows = [
        [
            "tool",
            "generated/s",
            "received/s",
            "received",
            "ENOBUFS",
            "netlink Drops",
            "kernel tail drops",
            "unaccounted",
        ]
    ]
    for run in report["runs"]:
        seconds = run["flood_seconds"]
        generated = run["generated"]
        rows.append(
            [
                run["tool"],
                _rate(generated, seconds),
                _rate(run["received"], seconds),
                _share(run["received"], generated),
                _number(run["enobufs"]),
                _rate_and_share(run["netlink_drops"], seconds, generated),
                _rate_and_share(run["tail_drops"], seconds, generated),
                _number(run["unaccounted"]),
            ]
        )
    print_table(rows, out)
    print(file=out)
    rows = [
        [
            "tool",
            "generated",
            "received",
            "other drops",
            "drain s",
            "tool CPU %",
            "CPU us/alert",
            "pktgen CPU %",
            "guest busy %",
            "RSS kB max",
        ]
    ]
    for run in report["runs"]:
        rows.append(
            [
                run["tool"],
                _number(run["generated"]),
                _number(run["received"]),
                _number(run["other_alerts"]),
                _number(run["drain_seconds"], 1),
                _number(run["tool_cpu_percent"]),
                _number(run["tool_cpu_us_per_alert"]),
                _number(run["pktgen_cpu_percent"]),
                _number(run["guest_cpu_busy_percent"]),
                _number(run["rss_kb_max"]),
            ]
        )
    print_table(rows, out)
    print(file=out)
    for run in report["runs"]:
        print(f"{run['tool']}: {run['command']}", file=out)
        if run.get("locations"):
            where = ", ".join(f"{name} {count:,}" for name, count in run["locations"].items())
            print(f"  drop locations reported: {where}", file=out)
        if run.get("tool_socket_dropped") is not None:
            print(
                f"  losses it reported: socket {run['tool_socket_dropped']:,} "
                f"(netlink Drops {run['netlink_drops']:,}), kernel queue "
                f"{_number(run['tool_tail_drops'])} (tail drops {run['tail_drops']:,})",
                file=out,
            )
        for note in run["notes"]:
            print(f"  note: {note}", file=out)
        if run.get("profile"):
            print(run["profile"], file=out)
    if params.get("soak_minutes"):
        print_soak(report, out)


def print_soak(report: dict[str, Any], out: Any) -> None:
    run = report["runs"][0]
    print(file=out)
    print(f"Soak, {report['params']['soak_minutes']:g} minutes of {run['command']}:", file=out)
    rows = [["t s", "generated", "received", "RSS kB", "socket queue B", "netlink Drops", "CPU s"]]
    for sample in run["samples"]:
        rows.append(
            [
                f"{sample['t']:.0f}",
                _number(sample["generated"]),
                _number(sample["received"]),
                _number(sample["rss_kb"]),
                _number(sample["socket_rmem"]),
                _number(sample["socket_drops"]),
                _number(sample["tool_cpu_s"], 1),
            ]
        )
    print_table(rows, out)
    rss = [s["rss_kb"] for s in run["samples"] if s["rss_kb"] is not None]
    if rss:
        print(
            f"RSS: first {rss[0]:,} kB, last {rss[-1]:,} kB, max {max(rss):,} kB; "
            f"VmHWM {_number(run['hwm_kb'])} kB",
            file=out,
        )
    counted = run["received"] + run["netlink_drops"] + run["tail_drops"]
    print(
        f"Loss accounting: generated {run['generated']:,} = received {run['received']:,} "
        f"+ netlink Drops {run['netlink_drops']:,} + kernel tail drops {run['tail_drops']:,} "
        f"+ unaccounted {run['generated'] - counted:,}; netdm reported ENOBUFS "
        f"{_number(run['enobufs'])} times and {_number(run['tool_tail_drops'])} tail drops",
        file=out,
    )


# ----------------------------------------------------------------------------- main


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rate", type=int, default=20_000, help="drops a second (20000)")
    parser.add_argument("--duration", type=float, help="flood seconds per tool (25; 5 quick)")
    parser.add_argument("--trunc-len", type=int, default=64, help="bytes per packet alert (64)")
    parser.add_argument("--queue-len", type=int, default=1000, help="kernel queue per CPU (1000)")
    parser.add_argument("--pkt-size", type=int, default=128, help="pktgen's packet size (128)")
    parser.add_argument("--devices", type=int, help="pktgen devices (rate x 400 us)")
    parser.add_argument("--tools", help=f"comma-separated ({DEFAULT_TOOLS}; quick: netdm)")
    parser.add_argument("--quick", action="store_true", help="5 s, netdm -q only")
    parser.add_argument("--soak", type=float, metavar="MINUTES", help="netdm -q alone this long")
    parser.add_argument("--sample-every", type=float, help="seconds between samples (1; soak 10)")
    parser.add_argument(
        "--pin-tool", type=int, metavar="CPU", help="pin the tools to this vCPU (pktgen runs on 0)"
    )
    parser.add_argument("--outdir", type=Path, help="keep the guest's files here")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    options = parser.parse_args(argv)
    if options.duration is None:
        options.duration = QUICK_DURATION if options.quick else 25.0
    if options.tools is None:
        options.tools = "netdm" if options.quick or options.soak else DEFAULT_TOOLS
    unknown = [key for key in options.tools.split(",") if key.strip() not in TOOL_KEYS]
    if unknown:
        parser.error(f"--tools: unknown {', '.join(unknown)}; choose from {', '.join(TOOL_KEYS)}")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_arguments(argv)
    if os.geteuid() != 0:
        print("live_flood: run as root (the VM harness needs it)", file=sys.stderr)
        return 2
    os.chdir(REPO)
    host = host_facts()
    host["load_before"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    if options.outdir is not None:
        outdir = options.outdir.resolve()
        outdir.mkdir(parents=True, exist_ok=True)
        report = run_guest(options, outdir)
    else:
        with tempfile.TemporaryDirectory(prefix="netdm-live-flood-") as scratch:
            report = run_guest(options, Path(scratch))
    host["load_after"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    report["host"] = host
    report["started"] = started
    report["command"] = " ".join(["python", "benchmarks/live_flood.py", *(argv or sys.argv[1:])])
    if options.json:
        json.dump(report, sys.stdout, indent=1)
        print()
    else:
        print_report(report)
    if report.get("guest_exit_status"):
        print(f"live_flood: the guest failed: {report.get('guest_error')}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
