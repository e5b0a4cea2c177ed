"""Packet mode's printer: each dropped packet as a line, a verbose block or a JSON line.

Strategy: the pipeline calls :meth:`PacketPrinter.packet` for every packet
alert, tens of thousands of times a second in a storm, so the printer binds
its options once (the JSON writer is a ready partial) and writes to a
buffered stream that it flushes by time, not by line.  The views themselves
are :mod:`netdm.output.packet_line`, :mod:`netdm.output.packet_verbose` and
:mod:`netdm.output.packet_json`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal, TextIO

from netdm.engine.symbols import SymbolTable
from netdm.output.packet_json import packet_json_writer
from netdm.output.packet_line import format_packet_line
from netdm.output.packet_verbose import format_packet_verbose
from netdm.proto.events import PacketAlert

__all__ = ["PACKET_FLUSH_SECONDS", "PacketPrinter"]

# Packet lines are flushed at most this often, not one write per line.
PACKET_FLUSH_SECONDS = 0.2


class PacketPrinter:
    """Packet mode: one line (or a block, with ``verbose``) or one JSON object per drop.

    Output is flushed at most every :data:`PACKET_FLUSH_SECONDS`, not per line:
    a drop storm brings tens of thousands of lines a second.
    """

    def __init__(
        self,
        out: TextIO,
        symbols: SymbolTable,
        *,
        json_lines: bool = False,
        verbose: bool = False,
        nanoseconds: bool = False,
        payload_encoding: Literal["hex", "base64"] = "hex",
        resolve_ifname: Callable[[int], str | None] | None = None,
    ) -> None:
        self._out = out
        self._symbols = symbols
        self._json = json_lines
        self._verbose = verbose
        self._nanoseconds = nanoseconds
        self._payload_encoding = payload_encoding
        self._resolve_ifname = resolve_ifname
        self._last_flush = time.monotonic()
        # The JSON line writer (newline included) with this printer's options bound once.
        self._json_line = packet_json_writer(
            resolve_ifname=resolve_ifname, symbols=symbols, payload_encoding=payload_encoding
        )

    def packet(self, alert: PacketAlert) -> None:
        """Print ``alert``; every kernel-provided string is escaped by the packet views."""
        if self._json:
            line = self._json_line(alert)  # with its newline
        elif self._verbose:
            text = "\n".join(
                format_packet_verbose(
                    alert,
                    resolve_ifname=self._resolve_ifname,
                    symbols=self._symbols,
                    nanoseconds=self._nanoseconds,
                )
            )
            line = text + "\n"
        else:
            text = format_packet_line(
                alert,
                resolve_ifname=self._resolve_ifname,
                symbols=self._symbols,
                nanoseconds=self._nanoseconds,
            )
            line = text + "\n"
        self._out.write(line)
        now = time.monotonic()
        if now - self._last_flush >= PACKET_FLUSH_SECONDS:
            self._out.flush()
            self._last_flush = now
