"""Output: dropwatch-style text, JSON lines, and terminal safety."""

from __future__ import annotations

import io
import json
import time
import unicodedata
from dataclasses import dataclass
from datetime import timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netdm.engine.aggregate import DropCount, DropLocation, IntervalSummary, LossCounts
from netdm.engine.symbols import SymbolTable
from netdm.output.render import (
    JsonRenderer,
    TextRenderer,
    escape_for_terminal,
    local_time,
    make_renderer,
)
from netdm.textsafe import escape_bytes_for_terminal, replace_invalid_text

KALLSYMS = """\
ffffffff81000000 T _text
ffffffff81a2c3d0 T unix_stream_recvmsg
ffffffff81a2c9e0 T tcp_v4_rcv
ffffffff81a2d840 T tcp_v4_do_rcv
ffffffffc0b00000 t tun_do_read\t[tun]
ffffffffc0b00400 T tun_get_socket\t[tun]
"""
SYMBOLS = SymbolTable.from_kallsyms_text(KALLSYMS, source_description="/proc/kallsyms")
UNIX_STREAM_RECVMSG = 0xFFFFFFFF81A2C3EA
TUN_DO_READ = 0xFFFFFFFFC0B0001C
END = 1605572811.0  # Tue Nov 17 00:26:51 2020 UTC


def sw(pc: int, count: int) -> DropCount:
    return DropCount(DropLocation(pc=pc), count)


def hw(trap: str, count: int, group: str | None = None) -> DropCount:
    return DropCount(DropLocation(origin="hw", trap_name=trap, trap_group=group), count)


NO_LOSSES = LossCounts()


def interval(*entries: DropCount, losses: LossCounts = NO_LOSSES) -> IntervalSummary:
    software = tuple(e for e in entries if e.location.origin == "sw")
    hardware = tuple(e for e in entries if e.location.origin == "hw")
    return IntervalSummary(END - 5, END, software, hardware, losses)


@dataclass
class Totals:
    intervals: int = 0
    drops: int = 0
    decode_errors: int = 0
    enobufs: int = 0
    sw_tail_drops: int = 0
    hw_tail_drops: int = 0
    tracefs_lost: int = 0
    filtered: int = 0
    socket_dropped: int = 0


def text_renderer(*, verbose: bool = False) -> tuple[TextRenderer, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    renderer = TextRenderer(
        out, SYMBOLS, verbose=verbose, err=err, format_time=lambda _t: "Tue Nov 17 00:26:51 2020"
    )
    return renderer, out, err


# --- text


def test_the_classic_dropwatch_output() -> None:
    renderer, out, err = text_renderer()
    renderer.start()
    renderer.interval(interval(sw(UNIX_STREAM_RECVMSG, 1762), sw(TUN_DO_READ, 4)))
    renderer.stop()
    assert out.getvalue() == (
        "Monitoring for dropped packets\n"
        "Tue Nov 17 00:26:51 2020\n"
        "1762 packets dropped at unix_stream_recvmsg\n"
        "4 packets dropped at tun_do_read\n"
        "Stopping dropped packet monitor\n"
    )
    assert err.getvalue() == ""


def test_local_time_is_dropwatch_format(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        assert local_time(END) == "Tue Nov 17 00:26:51 2020"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_one_packet_is_singular_and_lines_sort_by_count() -> None:
    renderer, _out, _err = text_renderer()
    lines = renderer.interval_lines(
        interval(sw(TUN_DO_READ, 1), hw("blackhole_route", 7), sw(UNIX_STREAM_RECVMSG, 2))
    )
    assert lines == [
        "7 packets dropped by hardware trap blackhole_route",
        "2 packets dropped at unix_stream_recvmsg",
        "1 packet dropped at tun_do_read",
    ]


def test_verbose_shows_offset_and_module() -> None:
    renderer, _out, _err = text_renderer(verbose=True)
    lines = renderer.interval_lines(
        interval(sw(TUN_DO_READ, 4), sw(UNIX_STREAM_RECVMSG, 4), hw("ttl_error", 1, "l3_drops"))
    )
    assert lines == [
        "4 packets dropped at tun_do_read+0x1c [tun]",
        "4 packets dropped at unix_stream_recvmsg+0x1a",
        "1 packet dropped by hardware trap ttl_error (group l3_drops)",
    ]


def test_two_addresses_in_one_function_are_one_line_unless_verbose() -> None:
    two_sites = interval(sw(0xFFFFFFFF81A2C9E0 + 0x9A, 3), sw(0xFFFFFFFF81A2C9E0 + 0x2F0, 2))
    plain, _out, _err = text_renderer()
    assert plain.interval_lines(two_sites) == ["5 packets dropped at tcp_v4_rcv"]
    verbose, _out, _err = text_renderer(verbose=True)
    assert verbose.interval_lines(two_sites) == [
        "3 packets dropped at tcp_v4_rcv+0x9a",
        "2 packets dropped at tcp_v4_rcv+0x2f0",
    ]


def test_unresolved_addresses_print_raw() -> None:
    renderer, _out, _err = text_renderer()
    assert renderer.interval_lines(interval(sw(0xFFFFFFFF80ABCDEF, 2))) == [
        "2 packets dropped at 0xffffffff80abcdef"
    ]


def test_rx_dropped_heuristic_is_not_called_packets() -> None:
    renderer, _out, _err = text_renderer()
    assert renderer.interval_lines(interval(sw(0, 2), sw(TUN_DO_READ, 1))) == [
        "1 packet dropped at tun_do_read",
        "2 times a device's rx_dropped counter grew (driver drops, count unknown)",
    ]
    assert renderer.interval_lines(interval(sw(0, 1)))[0].startswith("1 time a device's")


def test_packet_mode_locations_and_reasons() -> None:
    location = DropLocation(function="nlmon_xmit", module="nlmon", reason="NO_SOCKET")
    plain, _out, _err = text_renderer()
    verbose, _out, _err = text_renderer(verbose=True)
    summary = interval(DropCount(location, 3))
    assert plain.interval_lines(summary) == ["3 packets dropped at nlmon_xmit (reason: NO_SOCKET)"]
    assert verbose.interval_lines(summary) == [
        "3 packets dropped at nlmon_xmit [nlmon] (reason: NO_SOCKET)"
    ]


def test_a_location_without_symbol_or_address() -> None:
    renderer, _out, _err = text_renderer()
    assert renderer.interval_lines(interval(DropCount(DropLocation(), 1))) == [
        "1 packet dropped at (unknown location)"
    ]


def test_losses_line() -> None:
    renderer, _out, _err = text_renderer()
    lines = renderer.interval_lines(
        interval(
            sw(TUN_DO_READ, 4),
            losses=LossCounts(enobufs=12, decode_errors=1, sw_tail_drops=3, hw_tail_drops=1),
        )
    )
    assert lines == [
        "4 packets dropped at tun_do_read",
        "(lost: 3 packets (kernel queue full), 1 hardware packet (kernel queue full), "
        "some notifications (socket buffer overflowed 12 times), 1 undecodable message)",
    ]


def test_exact_socket_losses_replace_some_notifications() -> None:
    """With the socket's Drops counter read, the line says how many notifications were lost."""
    renderer, _out, _err = text_renderer()
    both = renderer.interval_lines(interval(losses=LossCounts(enobufs=21, socket_dropped=945483)))
    assert both == ["(lost: 945483 notifications (socket buffer overflowed 21 times))"]
    # Drops read in a later window than the ENOBUFS that announced them: no overflow count.
    alone = renderer.interval_lines(interval(losses=LossCounts(socket_dropped=1)))
    assert alone == ["(lost: 1 notification (socket buffer full))"]


def test_stop_with_exact_socket_losses() -> None:
    renderer, out, _err = text_renderer()
    renderer.stop(Totals(intervals=4, drops=300, enobufs=3, socket_dropped=353387, sw_tail_drops=2))
    assert out.getvalue() == (
        "Stopping dropped packet monitor\n"
        "Total: 300 packets dropped in 4 intervals (lost: 2 packets (kernel queue full), "
        "353387 notifications (socket buffer overflowed 3 times))\n"
    )


def test_quiet_intervals_print_nothing_but_losses_alone_do() -> None:
    renderer, out, _err = text_renderer()
    renderer.interval(interval())
    assert out.getvalue() == ""
    renderer.interval(interval(losses=LossCounts(enobufs=1)))
    assert out.getvalue() == (
        "Tue Nov 17 00:26:51 2020\n(lost: some notifications (socket buffer overflowed 1 time))\n"
    )


def test_notice_goes_to_stderr_escaped() -> None:
    renderer, out, err = text_renderer()
    renderer.notice("addresses in /proc/kallsyms are hidden\x1b[2J")
    assert out.getvalue() == ""
    assert err.getvalue() == "netdm: addresses in /proc/kallsyms are hidden\\x1b[2J\n"


def test_stop_with_totals() -> None:
    renderer, out, _err = text_renderer()
    renderer.stop(Totals(intervals=3, drops=1766, decode_errors=0, enobufs=2))
    assert out.getvalue() == (
        "Stopping dropped packet monitor\n"
        "Total: 1766 packets dropped in 3 intervals "
        "(lost: some notifications (socket buffer overflowed 2 times))\n"
    )


def test_kernel_strings_are_escaped_in_text() -> None:
    renderer, _out, _err = text_renderer(verbose=True)
    lines = renderer.interval_lines(
        interval(
            hw("evil\x1b]0;owned\x07", 1, group="g\x9b1m"),
            DropCount(DropLocation(function="bad\udcffname", module="m\nx", reason="R\x00"), 1),
        )
    )
    assert lines == [
        "1 packet dropped at bad\\xffname [m\\x0ax] (reason: R\\x00)",
        "1 packet dropped by hardware trap evil\\x1b]0;owned\\x07 (group g\\u009b1m)",
    ]


# --- JSON lines


def test_json_schema() -> None:
    out = io.StringIO()
    renderer = JsonRenderer(out, SYMBOLS)
    renderer.start()
    renderer.notice("hello")
    renderer.interval(
        interval(
            sw(UNIX_STREAM_RECVMSG, 1762),
            sw(0, 2),
            DropCount(DropLocation(function="nlmon_xmit", module="nlmon"), 1),
            sw(0xFFFFFFFF80ABCDEF, 1),
            hw("blackhole_route", 7),
            losses=LossCounts(enobufs=1, socket_dropped=40),
        )
    )
    renderer.stop(Totals(intervals=1, drops=1773, enobufs=1, socket_dropped=40))
    text = out.getvalue()
    assert text.isascii()
    records = [json.loads(line) for line in text.splitlines()]
    assert records[0] == {
        "type": "start",
        "version": 1,
        "source": "netdm",
        "symbols": "/proc/kallsyms (6 text symbols)",
    }
    assert records[1] == {"type": "notice", "message": "hello"}
    assert records[2] == {
        "type": "interval",
        "start": "2020-11-17T00:26:46.000+00:00",
        "end": "2020-11-17T00:26:51.000+00:00",
        "start_epoch": END - 5,
        "end_epoch": END,
        "partial": False,
        "entries": [
            {
                "origin": "sw",
                "address": "0xffffffff81a2c3ea",
                "symbol": "unix_stream_recvmsg",
                "offset": 0x1A,
                "module": None,
                "reason": None,
                "count": 1762,
            },
            {
                "origin": "sw",
                "address": "0x0",
                "symbol": "(device rx_dropped)",
                "offset": None,
                "module": None,
                "reason": None,
                "count": 2,
            },
            {
                "origin": "sw",
                "address": None,
                "symbol": "nlmon_xmit",
                "offset": None,
                "module": "nlmon",
                "reason": None,
                "count": 1,
            },
            {
                "origin": "sw",
                "address": "0xffffffff80abcdef",
                "symbol": None,
                "offset": None,
                "module": None,
                "reason": None,
                "count": 1,
            },
        ],
        "hw_entries": [{"origin": "hw", "trap": "blackhole_route", "trap_group": None, "count": 7}],
        "lost": {
            "enobufs": 1,
            "socket_dropped": 40,
            "decode_errors": 0,
            "sw_tail_drops": 0,
            "hw_tail_drops": 0,
            "tracefs_lost": 0,
        },
        "total": 1773,
    }
    assert records[3] == {
        "type": "stop",
        "intervals": 1,
        "total": 1773,
        "lost": {
            "enobufs": 1,
            "socket_dropped": 40,
            "decode_errors": 0,
            "sw_tail_drops": 0,
            "hw_tail_drops": 0,
            "tracefs_lost": 0,
        },
        "filtered": 0,
    }


def test_json_quiet_intervals_are_written_and_time_zone_is_chosen() -> None:
    out = io.StringIO()
    renderer = JsonRenderer(out, SYMBOLS, tz=timezone(timedelta(hours=1)))
    renderer.interval(IntervalSummary(start=END, end=END + 2.5, partial=True))
    renderer.stop()
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["end"] == "2020-11-17T01:26:53.500+01:00"
    assert (first["entries"], first["total"], first["partial"]) == ([], 0, True)
    assert second == {"type": "stop"}


def test_json_keeps_text_but_replaces_undecodable_bytes() -> None:
    out = io.StringIO()
    renderer = JsonRenderer(out, SYMBOLS)
    renderer.interval(interval(hw("tr\u00e4p\udcff\x7f\x1b", 1)))
    line = out.getvalue()
    assert line.isascii()
    assert "\x7f" not in line and "\x1b" not in line
    assert json.loads(line)["hw_entries"][0]["trap"] == "tr\u00e4p\ufffd\x7f\x1b"


def test_make_renderer() -> None:
    out = io.StringIO()
    assert isinstance(make_renderer(json_lines=True, out=out, symbols=SYMBOLS), JsonRenderer)
    text = make_renderer(json_lines=False, out=out, symbols=SYMBOLS, verbose=True)
    assert isinstance(text, TextRenderer)


# --- terminal safety


def _unescape(text: str) -> str:
    """The inverse of escape_for_terminal, to show that no two inputs print the same."""
    result, index = [], 0
    while index < len(text):
        if text[index] != "\\":
            result.append(text[index])
            index += 1
            continue
        kind = text[index + 1]
        if kind == "\\":
            result.append("\\")
            index += 2
            continue
        width = {"x": 2, "u": 4, "U": 8}[kind]
        value = int(text[index + 2 : index + 2 + width], 16)
        if kind == "x" and value >= 0x80:
            value += 0xDC00  # an undecodable byte, as surrogateescape holds it
        result.append(chr(value))
        index += 2 + width
    return "".join(result)


def _is_control(character: str) -> bool:
    return unicodedata.category(character) == "Cc" or 0xD800 <= ord(character) < 0xE000


_any_text = st.one_of(
    st.text(st.characters(exclude_categories=())),
    st.binary().map(lambda data: data.decode("utf-8", "surrogateescape")),
)


@settings(max_examples=500)
@given(_any_text)
def test_escaped_text_has_no_controls_and_is_reversible(text: str) -> None:
    escaped = escape_for_terminal(text)
    assert not any(_is_control(character) for character in escaped)
    assert escaped.isprintable()
    escaped.encode("utf-8")  # never raises
    assert _unescape(escaped) == text


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("tcp_v4_rcv", "tcp_v4_rcv"),
        ("eth0\x1b[2J", "eth0\\x1b[2J"),
        ("a\\x1b", "a\\\\x1b"),
        ("csi\x9b", "csi\\u009b"),
        ("rtl\u202eevil", "rtl\\u202eevil"),
        ("del\x7f", "del\\x7f"),
        ("caf\u00e9", "caf\u00e9"),
        ("bad\udcff", "bad\\xff"),
    ],
)
def test_escape_examples(raw: str, shown: str) -> None:
    assert escape_for_terminal(raw) == shown


def test_escape_bytes_and_replace_invalid_text() -> None:
    assert escape_bytes_for_terminal(b"ok\xff\x1b") == "ok\\xff\\x1b"
    assert replace_invalid_text("ok\udcff\ud800") == "ok\ufffd\ufffd"
    assert replace_invalid_text("caf\u00e9") == "caf\u00e9"


@settings(max_examples=200, deadline=None)
@given(function=_any_text, module=_any_text, reason=_any_text, trap=_any_text, group=_any_text)
def test_no_kernel_string_puts_a_control_character_in_any_output(
    function: str, module: str, reason: str, trap: str, group: str
) -> None:
    summary = interval(
        DropCount(DropLocation(function=function, module=module, reason=reason), 2),
        hw(trap, 1, group=group),
        sw(UNIX_STREAM_RECVMSG, 1),
    )
    for verbose in (False, True):
        renderer, out, err = text_renderer(verbose=verbose)
        renderer.start()
        renderer.interval(summary)
        renderer.notice(reason)
        renderer.stop()
        for stream in (out, err):
            written = stream.getvalue()
            written.encode("utf-8")
            assert not any(_is_control(c) for c in written.replace("\n", ""))
    out = io.StringIO()
    renderer_json = JsonRenderer(out, SYMBOLS)
    renderer_json.interval(summary)
    renderer_json.notice(reason)
    written = out.getvalue()
    assert written.isascii()
    assert not any(_is_control(c) for c in written.replace("\n", ""))
    assert len([json.loads(line) for line in written.splitlines()]) == 2
