"""The skb:kfree_skb tracepoint source against each Debian kernel line (6.1 and 6.12).

The host tests in tests/tracepoint/ meet only the host's own kernel; the record
layout is not the same everywhere: 6.11 added ``rx_sk`` before ``protocol``
(shifting it and ``reason``), and the reason numbers differ between lines
(NO_SOCKET is 2 on 6.1, 3 on 6.12).  Here netdm's binary decoding is checked
against the kernel's own text rendering of the same buffer (the instance's
``trace`` file), in-process, so no extra Python start-up under emulation.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from netdm.engine.symbols import SymbolTable
from netdm.tracepoint.format import EventFormat
from netdm.tracepoint.ringbuffer import KfreeSkbDecoder, kfree_skb_construct, page_records
from netdm.tracepoint.tracefs import EVENT_NAME, EVENT_SYSTEM, TracefsInstance, find_tracefs

UDP_DROP_SYMBOL = "__udp4_lib_rcv"
ETH_P_IP = 0x0800
SENT = 25
# One line of the instance's `trace` file (the kernel's print fmt after the prefix).
TRACE_LINE = re.compile(
    r"kfree_skb: skbaddr=\S+ (?:rx_sk=\S+ )?protocol=(?P<protocol>\d+) "
    r"location=(?P<location>\S+) reason: (?P<reason>\S+)"
)


def kernel_version() -> tuple[int, int]:
    major, minor = os.uname().release.split(".")[:2]
    return int(major), int(minor)


@pytest.fixture(name="instance")
def instance_fixture() -> Iterator[TracefsInstance]:
    try:
        find_tracefs()
    except Exception as error:  # noqa: BLE001 - any reason is a reason to skip
        pytest.skip(f"no tracefs: {error}")
    with TracefsInstance() as instance:
        yield instance


def closed_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def send_udp_drops(count: int, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for _ in range(count):
            sender.sendto(b"netdm", ("127.0.0.1", port))


def test_the_record_layout_is_this_lines(instance: TracefsInstance) -> None:
    event_format = instance.event_format
    assert isinstance(event_format, EventFormat)
    fields = {field.name: field for field in event_format.fields}
    assert {"skbaddr", "location", "protocol", "reason"} <= set(fields)
    # 6.11 put rx_sk between location and protocol; 6.1 has none.
    has_rx_sk = kernel_version() >= (6, 11)
    assert ("rx_sk" in fields) == has_rx_sk, sorted(fields)
    assert fields["location"].offset == 16 and fields["location"].size == 8
    assert fields["protocol"].offset == (32 if has_rx_sk else 24)
    assert fields["reason"].offset == (36 if has_rx_sk else 28)
    names = event_format.symbols["reason"]
    assert "NO_SOCKET" in names.values() and "NOT_SPECIFIED" in names.values()
    no_socket = next(value for value, name in names.items() if name == "NO_SOCKET")
    assert no_socket == (2 if kernel_version() < (6, 2) else 3)  # 6.2 added SKB_CONSUMED = 1


def test_udp_drops_decode_as_the_kernel_prints_them(instance: TracefsInstance) -> None:
    port = closed_udp_port()
    send_udp_drops(SENT, port)
    time.sleep(0.2)
    instance.disable()
    assert instance.path is not None and instance.event_format is not None
    # The kernel's rendering first (reading `trace` does not consume), then the raw pages.
    trace = (instance.path / "trace").read_text()
    printed = [match for match in map(TRACE_LINE.search, trace.splitlines()) if match]
    records = [
        record
        for page in instance.read_pages()
        for record in page_records(page, instance.page_layout).records
    ]
    assert instance.lost_events() == 0
    decoder = KfreeSkbDecoder(instance.event_format)
    reference = kfree_skb_construct(instance.event_format)
    symbols = SymbolTable.load()
    decoded: list[tuple[int, str | None, str]] = []
    for record in records:
        site = decoder.drop_site(record)
        parsed = reference.parse(record)
        assert site.pc == parsed.location
        if "rx_sk" in parsed:
            assert parsed.rx_sk == 0  # a datagram to a closed port has no receiving socket
        symbol = symbols.lookup(site.pc or 0)
        where = "" if symbol is None else f"{symbol.name}+{symbol.offset:#x}"
        decoded.append((parsed.protocol, site.reason, where))
    udp = [(p, r) for p, r, where in decoded if where.startswith(UDP_DROP_SYMBOL + "+")]
    assert udp == [(ETH_P_IP, "NO_SOCKET")] * SENT, decoded
    # Every record, whatever else the VM dropped meanwhile, as the kernel itself printed it.
    assert Counter((p, r) for p, r, _ in decoded) == Counter(
        (int(m["protocol"]), m["reason"]) for m in printed
    )
    # Where the kernel prints `location=%pS` (6.12; 6.1 prints a hashed %p), the symbol
    # and offset netdm finds in this kernel's kallsyms are the ones the kernel names.
    if "location=%pS" in instance.event_format.text:
        assert Counter(where for _, _, where in decoded) == Counter(
            m["location"].split("/", 1)[0] for m in printed
        )


def test_the_instance_is_enabled_while_open_and_removed_after(
    instance: TracefsInstance,
) -> None:
    assert instance.path is not None
    enable = instance.path / "events" / EVENT_SYSTEM / EVENT_NAME / "enable"
    assert enable.read_text().strip() == "1"
    path = instance.path
    instance.close()
    assert not path.exists()
