"""Interval summaries → text in dropwatch's format, or JSON lines.

Strategy: a renderer gets the whole run as four calls, ``start()``,
``interval(summary)`` for every closed window, ``notice(message)`` for things
the user should know (addresses hidden, lines skipped), and ``stop(totals)``.
Aggregation keyed drops by address; names are looked up here, through the
:class:`netdm.engine.symbols.SymbolTable`.  Every string that came from the kernel,
a symbol file or a capture is passed through
:func:`netdm.textsafe.escape_for_terminal` before it reaches a terminal, and
through :func:`netdm.textsafe.replace_invalid_text` plus ASCII-only
``json.dumps`` before it reaches JSON, so neither output ever carries a raw
control character or invalid UTF-8.

Text, the classic dropwatch look (the timestamp is the end of the interval,
local time; intervals without drops or losses print nothing)::

    Monitoring for dropped packets
    Tue Nov 17 00:26:51 2020
    1762 packets dropped at unix_stream_recvmsg
    4 packets dropped at tun_do_read
    1 packet dropped at tcp_v4_rcv
    7 packets dropped by hardware trap blackhole_route
    2 times a device's rx_dropped counter grew (driver drops, count unknown)
    (lost: 3 packets (kernel queue full), 5210 notifications (socket buffer overflowed 2 times))
    Stopping dropped packet monitor
    Total: 1776 packets dropped in 3 intervals

Lines are sorted by count, largest first.  Without ``verbose`` a location is
its function name, and several addresses in one function add up to one line;
with ``verbose`` it is ``tun_do_read+0x1c [tun]``.  Unresolved addresses
print as ``0xffffffff81abcdef``.  "1 packet" is singular.

JSON lines (:class:`JsonRenderer`), one object per line, ASCII only::

    {"type":"start","version":1,"source":"netdm","symbols":"/proc/kallsyms (121851 text symbols)"}
    {"type":"notice","message":"addresses in /proc/kallsyms are hidden ..."}
    {"type":"interval",
     "start":"2020-11-16T23:26:46.000+00:00","end":"2020-11-16T23:26:51.000+00:00",
     "start_epoch":1605569206.0,"end_epoch":1605569211.0,"partial":false,
     "entries":[{"origin":"sw","address":"0xffffffff81a2c3ea","symbol":"unix_stream_recvmsg",
                 "offset":26,"module":null,"reason":null,"count":1762}],
     "hw_entries":[{"origin":"hw","trap":"blackhole_route","trap_group":null,"count":7}],
     "lost":{"enobufs":0,"socket_dropped":0,"decode_errors":0,"sw_tail_drops":0,
             "hw_tail_drops":0,"tracefs_lost":0},
     "total":1769}
    {"type":"stop","intervals":3,"total":1776,"lost":{...},"filtered":0}

* ``version``: the output schema's version (docs/json.md); ``source``: where
  the drops come from: ``netdm`` (the NET_DM drop monitor), ``tracepoint``
  (``skb:kfree_skb`` through tracefs) or ``capture`` (a replay).

* ``start``/``end``: ISO 8601 with the time zone (UTC unless told otherwise),
  millisecond precision; ``start_epoch``/``end_epoch``: the same as float
  seconds since the epoch, full precision.  Every interval is written, quiet
  ones too (``entries`` empty), so a consumer sees time pass; one after a long
  quiet stretch may span several intervals.  ``partial``: the last interval,
  cut short at exit.
* ``entries`` (software, most drops first): ``address`` is the hex pc, or null
  when the kernel gave a symbol string instead (packet mode); ``symbol`` is the
  function name or null when unresolved; ``offset`` (int) and ``module`` come
  from the symbol table or the kernel's symbol string; ``reason`` is set when
  counting by drop reason.  Address ``0x0`` is the NAPI heuristic, with
  ``symbol`` ``"(device rx_dropped)"`` and a count of detections, not packets.
* ``hw_entries``: devlink traps, ``trap_group`` known in packet mode only.
* ``lost``: see :class:`netdm.engine.aggregate.LossCounts`.  ``total``: all drops.
* Strings keep their text; bytes that were not UTF-8 become U+FFFD.
* Notices go into the stream as ``{"type":"notice"}`` objects (nothing on stderr).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from typing import TYPE_CHECKING, Any, Literal, Protocol, TextIO

from netdm.engine.aggregate import DropCount, IntervalSummary, LossCounts
from netdm.engine.symbols import RX_DROPPED_LABEL, SymbolTable, format_address
from netdm.textsafe import escape_for_terminal, replace_invalid_text

if TYPE_CHECKING:  # at run time through __getattr__, below
    from netdm.output.packet_printer import PACKET_FLUSH_SECONDS, PacketPrinter

__all__ = [
    "BANNER",
    "CAPTURE_SOURCE",
    "CLOSING_LINE",
    "JSON_SCHEMA_VERSION",
    "NET_DM_SOURCE",
    "PACKET_FLUSH_SECONDS",
    "DropSource",
    "JsonRenderer",
    "PacketPrinter",
    "Renderer",
    "RunTotalsView",
    "TextRenderer",
    "escape_for_terminal",
    "local_time",
    "make_renderer",
]

BANNER = "Monitoring for dropped packets"
JSON_SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class DropSource:
    """Where a run's drops come from, for the first line of output.

    ``kind`` is what JSON says (``netdm``, ``tracepoint``, ``capture``);
    ``banner_note``, when set, follows the text banner in parentheses.
    """

    kind: Literal["netdm", "tracepoint", "capture"]
    banner_note: str | None = None


NET_DM_SOURCE = DropSource("netdm")
CAPTURE_SOURCE = DropSource("capture")
CLOSING_LINE = "Stopping dropped packet monitor"
TIMESTAMP_FORMAT = "%a %b %d %H:%M:%S %Y"
UNKNOWN_LOCATION = "(unknown location)"


class RunTotalsView(Protocol):
    """What :meth:`Renderer.stop` reads of the run's totals."""

    @property
    def intervals(self) -> int: ...

    @property
    def drops(self) -> int: ...

    @property
    def decode_errors(self) -> int: ...

    @property
    def sw_tail_drops(self) -> int: ...

    @property
    def hw_tail_drops(self) -> int: ...

    @property
    def filtered(self) -> int: ...

    @property
    def enobufs(self) -> int: ...

    @property
    def socket_dropped(self) -> int: ...

    @property
    def tracefs_lost(self) -> int: ...


class Renderer(Protocol):
    """The calls a session makes on its output."""

    def start(self, source: DropSource = ...) -> None: ...

    def interval(self, summary: IntervalSummary) -> None: ...

    def notice(self, message: str) -> None: ...

    def stop(self, totals: RunTotalsView | None = None) -> None: ...



def local_time(epoch: float) -> str:
    """``Tue Nov 17 00:26:51 2020``: ``epoch`` in local time, as dropwatch prints it."""
    return time.strftime(TIMESTAMP_FORMAT, time.localtime(epoch))


def _plural(count: int, singular: str, plural: str) -> str:
    return f"{count} {singular if count == 1 else plural}"


def _loss_phrases(losses: LossCounts) -> list[str]:
    phrases = []
    if losses.sw_tail_drops:
        phrases.append(f"{_plural(losses.sw_tail_drops, 'packet', 'packets')} (kernel queue full)")
    if losses.hw_tail_drops:
        phrases.append(
            f"{_plural(losses.hw_tail_drops, 'hardware packet', 'hardware packets')}"
            " (kernel queue full)"
        )
    # The exact count (the socket's Drops counter) when netdm could read it; ENOBUFS
    # alone only says that the buffer overflowed, not how much was lost each time.
    notifications = (
        _plural(losses.socket_dropped, "notification", "notifications")
        if losses.socket_dropped
        else "some notifications"
    )
    if losses.enobufs:
        overflows = _plural(losses.enobufs, "time", "times")
        phrases.append(f"{notifications} (socket buffer overflowed {overflows})")
    elif losses.socket_dropped:
        phrases.append(f"{notifications} (socket buffer full)")
    if losses.decode_errors:
        phrases.append(_plural(losses.decode_errors, "undecodable message", "undecodable messages"))
    if losses.tracefs_lost:
        phrases.append(
            f"{_plural(losses.tracefs_lost, 'drop event', 'drop events')} (tracefs buffer full)"
        )
    return phrases


def _summed_by_label(labelled: Iterable[tuple[str, int]]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for label, count in labelled:
        totals[label] = totals.get(label, 0) + count
    return totals


class TextRenderer:
    """dropwatch-style text on ``out``; notices on ``err`` (default stderr).

    ``format_time`` turns the interval's end (epoch seconds) into the
    timestamp line; the default is :func:`local_time`.
    """

    def __init__(
        self,
        out: TextIO,
        symbols: SymbolTable,
        *,
        verbose: bool = False,
        err: TextIO | None = None,
        format_time: Callable[[float], str] = local_time,
    ) -> None:
        self._out = out
        self._err = err
        self._symbols = symbols
        self._verbose = verbose
        self._format_time = format_time

    def _write(self, lines: Iterable[str]) -> None:
        self._out.write("".join(f"{line}\n" for line in lines))
        self._out.flush()

    def start(self, source: DropSource = NET_DM_SOURCE) -> None:
        """The banner line, with the source when it is not the classic one."""
        note = source.banner_note
        self._write([BANNER if note is None else f"{BANNER} ({escape_for_terminal(note)})"])

    def _software_label(self, entry: DropCount) -> str:
        location = entry.location
        if location.function is not None:
            label = escape_for_terminal(location.function)
            if self._verbose and location.module is not None:
                label += f" [{escape_for_terminal(location.module)}]"
        elif location.pc is not None:
            label = escape_for_terminal(
                self._symbols.display_name(location.pc, verbose=self._verbose)
            )
        else:  # a packet alert with neither symbol nor pc
            label = UNKNOWN_LOCATION
        if location.reason is not None:
            label += f" (reason: {escape_for_terminal(location.reason)})"
        return label

    def _hardware_label(self, entry: DropCount) -> str:
        location = entry.location
        label = escape_for_terminal(location.trap_name or "(unnamed)")
        if self._verbose and location.trap_group is not None:
            label += f" (group {escape_for_terminal(location.trap_group)})"
        return label

    def interval_lines(self, summary: IntervalSummary) -> list[str]:
        """The lines for one interval after its timestamp (empty when it was quiet)."""
        rx_dropped = sum(
            entry.count for entry in summary.entries if entry.location.is_rx_dropped_heuristic
        )
        software = _summed_by_label(
            (self._software_label(entry), entry.count)
            for entry in summary.entries
            if not entry.location.is_rx_dropped_heuristic
        )
        hardware = _summed_by_label(
            (self._hardware_label(entry), entry.count) for entry in summary.hw_entries
        )
        counted = [
            (count, f"{_plural(count, 'packet', 'packets')} dropped at {label}")
            for label, count in software.items()
        ] + [
            (count, f"{_plural(count, 'packet', 'packets')} dropped by hardware trap {label}")
            for label, count in hardware.items()
        ]
        lines = [line for _count, line in sorted(counted, key=lambda item: (-item[0], item[1]))]
        if rx_dropped:
            lines.append(
                f"{_plural(rx_dropped, 'time', 'times')} a device's rx_dropped counter grew"
                " (driver drops, count unknown)"
            )
        lost = _loss_phrases(summary.losses)
        if lost:
            lines.append(f"(lost: {', '.join(lost)})")
        return lines

    def interval(self, summary: IntervalSummary) -> None:
        """The timestamp and one line per location; nothing for a quiet interval."""
        lines = self.interval_lines(summary)
        if lines:
            self._write([self._format_time(summary.end), *lines])

    def notice(self, message: str) -> None:
        """``netdm: message`` on stderr (or ``err``)."""
        err = self._err if self._err is not None else sys.stderr
        err.write(f"netdm: {escape_for_terminal(message)}\n")
        err.flush()

    def stop(self, totals: RunTotalsView | None = None) -> None:
        """The closing line, then a totals line when ``totals`` is given."""
        lines = [CLOSING_LINE]
        if totals is not None:
            line = (
                f"Total: {_plural(totals.drops, 'packet', 'packets')} dropped"
                f" in {_plural(totals.intervals, 'interval', 'intervals')}"
            )
            lost = _loss_phrases(_run_losses(totals))
            if lost:
                line += f" (lost: {', '.join(lost)})"
            if totals.filtered:
                line += f"; {_plural(totals.filtered, 'packet', 'packets')} filtered out"
            lines.append(line)
        self._write(lines)


def _run_losses(totals: RunTotalsView) -> LossCounts:
    return LossCounts(
        enobufs=totals.enobufs,
        socket_dropped=totals.socket_dropped,
        decode_errors=totals.decode_errors,
        sw_tail_drops=totals.sw_tail_drops,
        hw_tail_drops=totals.hw_tail_drops,
        tracefs_lost=totals.tracefs_lost,
    )


def _json_text(value: str | None) -> str | None:
    return None if value is None else replace_invalid_text(value)


def _lost_object(losses: LossCounts) -> dict[str, int]:
    return {
        "enobufs": losses.enobufs,
        "socket_dropped": losses.socket_dropped,
        "decode_errors": losses.decode_errors,
        "sw_tail_drops": losses.sw_tail_drops,
        "hw_tail_drops": losses.hw_tail_drops,
        "tracefs_lost": losses.tracefs_lost,
    }


class JsonRenderer:
    """JSON lines on ``out``, one object per call; the schema is in the module docstring.

    ``tz`` is the time zone of the ISO 8601 timestamps (default UTC).
    """

    def __init__(self, out: TextIO, symbols: SymbolTable, *, tz: tzinfo = timezone.utc) -> None:
        self._out = out
        self._symbols = symbols
        self._tz = tz

    def _emit(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
        # ensure_ascii escapes everything but DEL; DEL can only occur inside strings.
        self._out.write(line.replace("\x7f", "\\u007f") + "\n")
        self._out.flush()

    def _iso(self, epoch: float) -> str:
        return datetime.fromtimestamp(epoch, self._tz).isoformat(timespec="milliseconds")

    def start(self, source: DropSource = NET_DM_SOURCE) -> None:
        """``{"type":"start","version":1,"source":...,"symbols":...}``."""
        self._emit(
            {
                "type": "start",
                "version": JSON_SCHEMA_VERSION,
                "source": source.kind,
                "symbols": _json_text(self._symbols.source_description),
            }
        )

    def _software_entry(self, entry: DropCount) -> dict[str, Any]:
        location = entry.location
        symbol, offset, module = location.function, None, location.module
        if location.is_rx_dropped_heuristic:
            symbol = RX_DROPPED_LABEL
        elif location.function is None and location.pc is not None:
            resolved = self._symbols.lookup(location.pc)
            if resolved is not None:
                symbol, offset, module = resolved.name, resolved.offset, resolved.module
        return {
            "origin": "sw",
            "address": None if location.pc is None else format_address(location.pc),
            "symbol": _json_text(symbol),
            "offset": offset,
            "module": _json_text(module),
            "reason": _json_text(location.reason),
            "count": entry.count,
        }

    @staticmethod
    def _hardware_entry(entry: DropCount) -> dict[str, Any]:
        return {
            "origin": "hw",
            "trap": _json_text(entry.location.trap_name),
            "trap_group": _json_text(entry.location.trap_group),
            "count": entry.count,
        }

    def interval(self, summary: IntervalSummary) -> None:
        """One ``{"type":"interval"}`` object, quiet intervals included."""
        self._emit(
            {
                "type": "interval",
                "start": self._iso(summary.start),
                "end": self._iso(summary.end),
                "start_epoch": summary.start,
                "end_epoch": summary.end,
                "partial": summary.partial,
                "entries": [self._software_entry(entry) for entry in summary.entries],
                "hw_entries": [self._hardware_entry(entry) for entry in summary.hw_entries],
                "lost": _lost_object(summary.losses),
                "total": summary.total,
            }
        )

    def notice(self, message: str) -> None:
        """``{"type":"notice","message":...}`` in the stream."""
        self._emit({"type": "notice", "message": _json_text(message)})

    def stop(self, totals: RunTotalsView | None = None) -> None:
        """``{"type":"stop"}``, with the run's totals when given."""
        record: dict[str, Any] = {"type": "stop"}
        if totals is not None:
            record["intervals"] = totals.intervals
            record["total"] = totals.drops
            record["lost"] = _lost_object(_run_losses(totals))
            record["filtered"] = totals.filtered
        self._emit(record)


def make_renderer(
    *,
    json_lines: bool,
    out: TextIO,
    symbols: SymbolTable,
    verbose: bool = False,
    err: TextIO | None = None,
) -> TextRenderer | JsonRenderer:
    """The renderer the command line asked for (``verbose`` only affects text)."""
    if json_lines:
        return JsonRenderer(out, symbols)
    return TextRenderer(out, symbols, verbose=verbose, err=err)


_PACKET_PRINTER_NAMES = frozenset({"PACKET_FLUSH_SECONDS", "PacketPrinter"})


def __getattr__(name: str) -> Any:
    """``PacketPrinter`` and ``PACKET_FLUSH_SECONDS``, from :mod:`netdm.output.packet_printer`.

    Imported on first use, so that summaries (which import this module) do not
    load the packet views and the header decoder.
    """
    if name in _PACKET_PRINTER_NAMES:
        from netdm.output import packet_printer

        return getattr(packet_printer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
