"""The Prometheus exporter's sink: interval summaries in, scraped metrics out.

Every check scrapes a private registry the way Prometheus would (the text
format from ``generate_latest``, parsed back with prometheus_client's own
parser), so what is tested is what a scraper sees.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from netdm import __version__
from netdm.cli.main import main
from netdm.engine.aggregate import DropCount, DropLocation, IntervalSummary, LossCounts
from netdm.engine.symbols import SymbolTable
from netdm.errors import ExitCode
from netdm.output.exporter import (
    OTHER,
    DropMetrics,
    MetricsServer,
    new_registry,
    parse_listen_address,
)

KALLSYMS = """\
ffffffff81000000 T _text
ffffffff81a2c3d0 T unix_stream_recvmsg
ffffffff81a2c9e0 T tcp_v4_rcv
ffffffff81a2d840 T __udp4_lib_rcv
ffffffffc0b00000 t tun_do_read\t[tun]
ffffffffc0b00400 T tun_get_socket\t[tun]
"""
SYMBOLS = SymbolTable.from_kallsyms_text(KALLSYMS, source_description="test kallsyms")
UNIX_STREAM_RECVMSG = 0xFFFFFFFF81A2C3EA
UNIX_STREAM_RECVMSG_2 = 0xFFFFFFFF81A2C400  # another address in the same function
UDP4 = 0xFFFFFFFF81A2D8A2
TUN_DO_READ = 0xFFFFFFFFC0B0001C
UNRESOLVED = 0xFFFFFFFF80000010  # below _text
START = 1_700_000_000.0

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(metrics: DropMetrics) -> Samples:
    """Every sample of a scrape, keyed by (sample name, sorted labels)."""
    text = generate_latest(new_registry(metrics)).decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def drops(samples: Samples) -> dict[tuple[str, str, str], float]:
    """netdm_drops_total as {(origin, location, reason): value}."""
    found = {}
    for (name, labels), value in samples.items():
        if name == "netdm_drops_total":
            by = dict(labels)
            found[(by["origin"], by["location"], by["reason"])] = value
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def sw(pc: int, count: int) -> DropCount:
    return DropCount(DropLocation(pc=pc), count)


def packet(function: str, reason: str | None, count: int) -> DropCount:
    return DropCount(DropLocation(function=function, reason=reason), count)


def hw(trap: str, count: int) -> DropCount:
    return DropCount(DropLocation(origin="hw", trap_name=trap), count)


NO_LOSSES = LossCounts()


def summary(index: int, *entries: DropCount, losses: LossCounts = NO_LOSSES) -> IntervalSummary:
    return IntervalSummary(
        start=START + index,
        end=START + index + 1,
        entries=tuple(e for e in entries if e.location.origin == "sw"),
        hw_entries=tuple(e for e in entries if e.location.origin == "hw"),
        losses=losses,
    )


def test_summary_mode_drops_are_named_and_accumulate_across_intervals() -> None:
    metrics = DropMetrics(SYMBOLS)
    metrics.interval(summary(0, sw(UNIX_STREAM_RECVMSG, 7), sw(UDP4, 3)))
    # Two addresses in one function are one location; a later interval adds to it.
    metrics.interval(summary(1, sw(UNIX_STREAM_RECVMSG_2, 2), sw(UNIX_STREAM_RECVMSG, 1)))
    metrics.interval(summary(2, sw(TUN_DO_READ, 4), sw(UNRESOLVED, 5)))
    assert drops(scrape(metrics)) == {
        ("sw", "unix_stream_recvmsg", ""): 10,
        ("sw", "__udp4_lib_rcv", ""): 3,
        ("sw", "tun_do_read", ""): 4,
        ("sw", f"{UNRESOLVED:#x}", ""): 5,
    }


def test_packet_mode_counts_by_reason_and_hardware_by_trap() -> None:
    metrics = DropMetrics(SYMBOLS, alert_mode="packet", origin="all")
    metrics.interval(
        summary(
            0,
            packet("__udp4_lib_rcv", "NO_SOCKET", 25),
            packet("tcp_v4_rcv", "NO_SOCKET", 2),
            packet("tcp_v4_rcv", "TCP_CSUM", 1),
            hw("blackhole_route", 6),
            hw("ttl_value_is_too_small", 1),
        )
    )
    metrics.interval(summary(1, packet("__udp4_lib_rcv", "NO_SOCKET", 5), hw("blackhole_route", 4)))
    assert drops(scrape(metrics)) == {
        ("sw", "__udp4_lib_rcv", "NO_SOCKET"): 30,
        ("sw", "tcp_v4_rcv", "NO_SOCKET"): 2,
        ("sw", "tcp_v4_rcv", "TCP_CSUM"): 1,
        ("hw", "blackhole_route", ""): 10,
        ("hw", "ttl_value_is_too_small", ""): 1,
    }


def test_loss_counters_and_rx_dropped_detections_are_kept_apart_from_drops() -> None:
    metrics = DropMetrics(SYMBOLS)
    metrics.interval(
        summary(
            0,
            sw(0, 3),
            sw(UDP4, 2),
            losses=LossCounts(enobufs=2, socket_dropped=1500, decode_errors=1),
        )
    )
    metrics.interval(summary(1, losses=LossCounts(sw_tail_drops=40, hw_tail_drops=5)))
    metrics.interval(
        summary(2, losses=LossCounts(sw_tail_drops=2, tracefs_lost=9, socket_dropped=20))
    )
    samples = scrape(metrics)
    # pc 0 counts detections of a device's rx_dropped growth, not packets.
    assert drops(samples) == {("sw", "__udp4_lib_rcv", ""): 2}
    assert value(samples, "netdm_device_rx_dropped_detections_total") == 3
    assert value(samples, "netdm_socket_overflows_total") == 2
    assert value(samples, "netdm_socket_dropped_notifications_total") == 1520
    assert value(samples, "netdm_decode_errors_total") == 1
    assert value(samples, "netdm_kernel_queue_drops_total", origin="sw") == 42
    assert value(samples, "netdm_kernel_queue_drops_total", origin="hw") == 5
    assert value(samples, "netdm_tracefs_lost_total") == 9


def test_counters_exist_at_zero_before_anything_happened() -> None:
    """So that rate() and alerts on losses work from the first scrape."""
    samples = scrape(DropMetrics(SYMBOLS))
    assert drops(samples) == {}
    for name in (
        "netdm_device_rx_dropped_detections_total",
        "netdm_socket_overflows_total",
        "netdm_socket_dropped_notifications_total",
        "netdm_decode_errors_total",
        "netdm_tracefs_lost_total",
        "netdm_intervals_total",
    ):
        assert value(samples, name) == 0, name
    assert value(samples, "netdm_kernel_queue_drops_total", origin="sw") == 0
    assert not [key for key in samples if key[0].endswith("_created")]


def test_health_follows_the_monitor_life_cycle() -> None:
    metrics = DropMetrics(SYMBOLS, source="netdm", alert_mode="packet", origin="sw")
    before = scrape(metrics)
    assert value(before, "netdm_monitor_up") == 0
    assert ("netdm_monitor_start_time_seconds", ()) not in before
    assert ("netdm_last_interval_end_time_seconds", ()) not in before
    assert value(before, "netdm_build_info", version=__version__) == 1
    assert value(
        before, "netdm_monitor_info", source="netdm", alert_mode="packet", origin="sw"
    ) == 1

    metrics.monitoring_started(START)
    for index in range(3):
        metrics.interval(summary(index))  # quiet intervals count too: time passes
    running = scrape(metrics)
    assert value(running, "netdm_monitor_up") == 1
    assert value(running, "netdm_monitor_start_time_seconds") == START
    assert value(running, "netdm_last_interval_end_time_seconds") == START + 3
    assert value(running, "netdm_intervals_total") == 3

    metrics.monitoring_stopped()
    assert value(scrape(metrics), "netdm_monitor_up") == 0


def test_locations_past_the_limit_are_folded_into_other_and_nothing_is_lost() -> None:
    metrics = DropMetrics(SYMBOLS, max_locations=2, alert_mode="packet", origin="all")
    metrics.interval(summary(0, packet("first", None, 1), packet("second", None, 2)))
    metrics.interval(
        summary(
            1,
            packet("third", None, 4),
            packet("fourth", None, 8),
            packet("first", None, 16),  # kept its own series: it came before the limit
            hw("trap_a", 32),  # hardware locations have their own budget
        )
    )
    samples = scrape(metrics)
    assert drops(samples) == {
        ("sw", "first", ""): 17,
        ("sw", "second", ""): 2,
        ("sw", OTHER, ""): 12,
        ("hw", "trap_a", ""): 32,
    }
    assert value(samples, "netdm_label_values", label="location") == 3
    assert value(samples, "netdm_label_values_limit", label="location") == 2


def test_reasons_past_the_limit_are_folded_into_other() -> None:
    metrics = DropMetrics(SYMBOLS, max_reasons=2, alert_mode="packet")
    metrics.interval(
        summary(
            0,
            packet("tcp_v4_rcv", "NO_SOCKET", 1),
            packet("tcp_v4_rcv", "TCP_CSUM", 2),
            packet("tcp_v4_rcv", "OTHERHOST", 4),
            packet("ip_rcv_core", "IP_CSUM", 8),
        )
    )
    assert drops(scrape(metrics)) == {
        ("sw", "tcp_v4_rcv", "NO_SOCKET"): 1,
        ("sw", "tcp_v4_rcv", "TCP_CSUM"): 2,
        ("sw", "tcp_v4_rcv", OTHER): 4,
        ("sw", "ip_rcv_core", OTHER): 8,
    }


def test_series_stay_bounded_in_a_flood_of_new_locations() -> None:
    metrics = DropMetrics(SYMBOLS, max_locations=5, max_reasons=3, alert_mode="packet")
    sent = 0
    for index in range(200):
        entries = [packet(f"fn_{index}_{n}", f"REASON_{n % 7}", n + 1) for n in range(10)]
        sent += sum(entry.count for entry in entries)
        metrics.interval(summary(index, *entries))
    counted = drops(scrape(metrics))
    assert len(counted) <= (5 + 1) * (3 + 1)
    assert sum(counted.values()) == sent


def test_undecodable_bytes_in_kernel_strings_do_not_break_the_scrape() -> None:
    metrics = DropMetrics(SYMBOLS, alert_mode="packet", origin="all")
    broken = "bad\udcff_fn"  # a byte that was not UTF-8, kept by surrogateescape
    metrics.interval(summary(0, packet(broken, "NO\udc80SOCKET", 1), hw('tr"ap\n', 2)))
    assert drops(scrape(metrics)) == {
        ("sw", "bad\ufffd_fn", "NO\ufffdSOCKET"): 1,
        ("hw", 'tr"ap\n', ""): 2,  # quotes and newlines survive the text format's escaping
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9977", ("127.0.0.1", 9977)),
        ("localhost:0", ("localhost", 0)),
        (":9977", ("0.0.0.0", 9977)),
        ("[::1]:9977", ("::1", 9977)),
        ("[::]:80", ("::", 80)),
    ],
)
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(text) == expected


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("9977", "not ADDRESS:PORT"),
        ("127.0.0.1:", "not ADDRESS:PORT"),
        ("127.0.0.1:http", "not ADDRESS:PORT"),
        ("127.0.0.1:70000", "out of range"),
        ("::1:9977", "brackets"),
    ],
)
def test_bad_listen_addresses_are_explained(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_listen_address(text)


def test_metrics_are_served_over_http_until_closed() -> None:
    metrics = DropMetrics(SYMBOLS)
    metrics.interval(summary(0, sw(UDP4, 11)))
    server = MetricsServer(new_registry(metrics), "127.0.0.1", 0)
    with server:
        assert server.port != 0
        with urllib.request.urlopen(server.url, timeout=10) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            body = response.read().decode()
    assert 'netdm_drops_total{location="__udp4_lib_rcv",origin="sw",reason=""} 11.0' in body
    assert "process_cpu_seconds_total" in body and "python_info" in body
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.url, timeout=5)


def test_exporter_refuses_a_taken_port_before_touching_the_kernel() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            main, ["exporter", "--mode", "summary", "--listen", f"127.0.0.1:{port}"]
        )
    assert result.exit_code == ExitCode.ERROR, result.output
    assert f"Error: cannot serve metrics on 127.0.0.1:{port}: Address already in use" in (
        result.output
    )


def test_exporter_bad_listen_address_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["exporter", "--listen", "nonsense"])
    assert result.exit_code == ExitCode.USAGE
    assert "--listen" in result.output and "not ADDRESS:PORT" in result.output


def test_the_command_line_loads_prometheus_client_only_for_the_exporter() -> None:
    """`netdm --help` and `netdm watch` stay as fast to start as before."""
    code = "import sys, netdm.cli.main; print('prometheus_client' in sys.modules)"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "False"
