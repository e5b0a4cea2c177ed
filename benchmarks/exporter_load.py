"""The exporter's HTTP side under load, on loopback (issue 13).

Runs a ``MetricsServer`` from the netdm source tree given with ``--tree``
(default: this one) in a child process, then:

1. ``closing-together``: 1,000 clients connect and send a request line
   (all held open), then all close, while a scraper requests /metrics every
   50 ms (each scrape waits up to 30 s); it goes on until a scrape started
   after the flood is answered (at most 60 s more).
2. ``closing-one-by-one``: the same, each client closing at once (the flood
   is cut off after 60 s if the server slows it down).
3. ``simultaneous``: 200 scrapes at once, each with a 5 s timeout.

For each it prints the scrape latency (p50, max), failed scrapes, the
server's peak thread count and RSS (from /proc), and the CPU seconds it
spent.  Loopback only, bounded in count and time::

    python benchmarks/exporter_load.py
    python benchmarks/exporter_load.py --tree /work/wt/exporter-base
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
from netdm.engine.symbols import SymbolTable
from netdm.output.exporter import DropMetrics, MetricsServer, new_registry
metrics = DropMetrics(SymbolTable.from_kallsyms_text("", source_description="none"))
server = MetricsServer(new_registry(metrics), "127.0.0.1", 0)
server.start()
print(server.port, flush=True)
sys.stdin.read()
server.close()
"""
TICKS = os.sysconf("SC_CLK_TCK")
FLOOD_LIMIT = 60.0  # seconds: a flood the server slows down is cut short


def proc_status(pid: int) -> tuple[int, int]:
    """(threads, RSS in kB) of ``pid``."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.split()
    return int(fields["Threads"][0]), int(fields["VmRSS"][0])


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    after = stat[stat.rindex(")") + 2 :].split()
    return (int(after[11]) + int(after[12])) / TICKS  # utime, stime


def scrape(port: int, timeout: float) -> float:
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
            if time.monotonic() - began > timeout:
                raise TimeoutError
    if not received.startswith(b"HTTP/1.") or b" 200 " not in received.split(b"\r\n", 1)[0]:
        raise OSError("not a 200 response")
    return time.monotonic() - began


class Sampler:
    """The server's peak threads and RSS, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.threads, self.rss_kb = proc_status(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            threads, rss = proc_status(self.pid)
            self.threads = max(self.threads, threads)
            self.rss_kb = max(self.rss_kb, rss)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def report(name: str, latencies: list[float], failures: int, sampler: Sampler, cpu: float) -> None:
    if latencies:
        p50 = statistics.median(latencies)
        worst = max(latencies)
        timing = f"p50 {p50 * 1000:.1f} ms, max {worst * 1000:.1f} ms"
    else:
        timing = "no scrape answered"
    print(
        f"{name}: {len(latencies)} scrapes answered ({timing}), {failures} failed; "
        f"server peak {sampler.threads} threads, RSS {sampler.rss_kb / 1024:.0f} MB, "
        f"{cpu:.2f} s CPU"
    )


def closing_clients(port: int, pid: int, clients: int = 1000, *, together: bool = True) -> None:
    latencies: list[float] = []
    failures = 0
    flood_done = threading.Event()
    answered_after = threading.Event()
    stop = threading.Event()

    def scraper() -> None:
        nonlocal failures
        while not stop.is_set():
            started_after = flood_done.is_set()
            try:
                latencies.append(scrape(port, 30.0))
                if started_after:
                    answered_after.set()
            except OSError:
                failures += 1
            stop.wait(0.05)

    cpu_before = cpu_seconds(pid)
    with Sampler(pid) as sampler:
        thread = threading.Thread(target=scraper, daemon=True)
        thread.start()
        began = time.monotonic()
        refused = 0
        held: list[socket.socket] = []
        for _ in range(clients):
            if time.monotonic() - began > FLOOD_LIMIT:
                break
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=10.0)
                sock.sendall(b"GET /metrics HTTP/1.1\r\n")
            except OSError:
                refused += 1
                continue
            if together:
                held.append(sock)
            else:
                sock.close()
        sent = len(held) if together else clients - refused
        for sock in held:
            sock.close()
        flood = time.monotonic() - began
        flood_done.set()
        answered_after.wait(60.0)
        recovered = time.monotonic() - began
        stop.set()
        thread.join(35.0)
    name = "closing-together" if together else "closing-one-by-one"
    how = "all connected, then all closed" if together else "each closed at once"
    print(
        f"{name}: {sent} clients sent a request line ({how}) in {flood:.1f} s "
        f"({refused} could not connect); a scrape begun after them was answered "
        f"{recovered:.1f} s after the flood began"
    )
    report(name, latencies, failures, sampler, cpu_seconds(pid) - cpu_before)


def closing_one_by_one(port: int, pid: int) -> None:
    closing_clients(port, pid, together=False)


def simultaneous_scrapes(port: int, pid: int, scrapes: int = 200) -> None:
    gate = threading.Barrier(scrapes, timeout=30)

    def one(_: int) -> float | None:
        try:
            gate.wait()
            return scrape(port, 5.0)
        except (OSError, threading.BrokenBarrierError):
            return None

    cpu_before = cpu_seconds(pid)
    with Sampler(pid) as sampler, ThreadPoolExecutor(max_workers=scrapes) as pool:
        results = list(pool.map(one, range(scrapes)))
    latencies = [r for r in results if r is not None]
    report(
        f"simultaneous ({scrapes})",
        latencies,
        scrapes - len(latencies),
        sampler,
        cpu_seconds(pid) - cpu_before,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", default=str(Path(__file__).resolve().parent.parent))
    arguments = parser.parse_args()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, arguments.tree],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    try:
        port = int(child.stdout.readline())
        threads, rss = proc_status(child.pid)
        print(
            f"server from {arguments.tree}: port {port}, {threads} threads, RSS {rss / 1024:.0f} MB"
        )
        scenarios: list[Callable[[int, int], None]] = [
            closing_clients,
            closing_one_by_one,
            simultaneous_scrapes,
        ]
        for scenario in scenarios:
            scenario(port, child.pid)
            time.sleep(1.0)
    finally:
        child.stdin.close()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


if __name__ == "__main__":
    main()
