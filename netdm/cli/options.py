"""The options `watch` and `exporter` share, declared once.

Strategy: each option's name, type, range and default lives in one decorator
here; a command passes only its own help sentence, where the two commands
explain the option differently.  Defaults that differ on purpose are
constants side by side, with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

QUEUE_LEN = 1000
# Packet mode copies this many bytes of each dropped packet.  watch prints the
# headers, and 128 bytes hold Ethernet, VLAN, IPv6 with options and TCP; the
# exporter reads none of the bytes, so it asks the kernel to copy fewer
# (docs/exporter.md; the VM test checks the kernel got 64).
WATCH_TRUNC_LEN = 128
EXPORTER_TRUNC_LEN = 64


# Upper bounds of the numeric options: beyond them a value is a typo, not a plan, and
# would overflow a kernel attribute (u32), a socket option (int) or the clock (ns).
MAX_INTERVAL = 86_400.0  # a day per summary
MAX_DURATION = 366 * 86_400.0  # a year
MAX_COUNT = 1_000_000_000
MAX_RCVBUF = 2**31 - 1  # SO_RCVBUF is an int
MAX_U32 = 2**32 - 1  # NET_DM_ATTR_TRUNC_LEN and NET_DM_ATTR_QUEUE_LEN are u32
MAX_SERIES = 1_000_000  # --max-locations, --max-reasons


class FiniteFloatRange(click.FloatRange):
    """A :class:`click.FloatRange` that also refuses ``nan`` and ``inf``."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)  # the float itself
        if not math.isfinite(number):
            self.fail(f"{number!r} is not a finite number of seconds.", param, ctx)
        return super().convert(number, param, ctx)


def interval_option(default: float, help: str) -> Callable[[F], F]:
    return click.option(
        "-i",
        "--interval",
        type=FiniteFloatRange(min=0.1, max=MAX_INTERVAL),
        default=default,
        show_default=True,
        help=help,
    )


def origin_option(help: str) -> Callable[[F], F]:
    return click.option(
        "--origin",
        type=click.Choice(["sw", "hw", "all"]),
        default="sw",
        show_default=True,
        help=help,
    )


def symbols_option() -> Callable[[F], F]:
    return click.option(
        "--symbols",
        "symbols_file",
        type=click.Path(exists=True, dir_okay=False),
        help="Resolve addresses with this System.map or kallsyms file.",
    )


def rcvbuf_option() -> Callable[[F], F]:
    return click.option(
        "--rcvbuf",
        type=click.IntRange(min=4096, max=MAX_RCVBUF),
        help="Socket receive buffer in bytes (16 MiB).",
    )


def trunc_len_option(default: int, help: str) -> Callable[[F], F]:
    return click.option(
        "--trunc-len",
        type=click.IntRange(min=0, max=MAX_U32),
        default=default,
        show_default=True,
        help=help,
    )


def queue_len_option(help: str) -> Callable[[F], F]:
    return click.option(
        "--queue-len",
        type=click.IntRange(min=1, max=MAX_U32),
        default=QUEUE_LEN,
        show_default=True,
        help=help,
    )


def source_option(help: str) -> Callable[[F], F]:
    return click.option(
        "--source",
        type=click.Choice(["auto", "netdm", "tracepoint"]),
        default="auto",
        show_default=True,
        help=help,
    )


def packet_filter_options(command: F) -> F:
    """--reason, --exclude-reason, --location, --interface, --protocol (repeatable)."""
    filters = [
        click.option(
            "--reason", "reasons", multiple=True, help="Only these drop reasons (a,b or repeat)."
        ),
        click.option(
            "--exclude-reason",
            "exclude_reasons",
            multiple=True,
            help="Not these (e.g. NOT_SPECIFIED).",
        ),
        click.option(
            "--location", "locations", multiple=True, help="Only these functions (glob: '*udp*')."
        ),
        click.option("--interface", "interfaces", multiple=True, help="Only this input interface."),
        click.option(
            "--protocol",
            "protocols",
            multiple=True,
            callback=_check_protocols,
            help="Only ipv4, ipv6, arp, tcp, udp, icmp, ...",
        ),
    ]
    for add in reversed(filters):  # decorators apply bottom-up; --help keeps this order
        command = add(command)
    return command


def _check_protocols(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    """An unknown --protocol is a usage error before anything starts."""
    if value:
        from netdm.engine.packet_filter import PacketFilter

        try:
            PacketFilter.from_options(protocols=value)
        except ValueError as error:
            raise click.BadParameter(str(error), ctx, param) from None
    return value
