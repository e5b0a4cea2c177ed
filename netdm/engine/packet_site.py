"""Where a packet was dropped and on which interface, as the views and the filters see it.

Strategy: the text line, the JSON forms and the client-side filters all
name a drop's site the same way: a hardware drop by its trap, a software
drop by the function of the kernel's ``%pS`` symbol string, else of the pc
looked up in the symbol table; the interface by the kernel's name, else by
the caller's ifindex→name resolver.  Those decisions are made here, once,
and each view only formats them.  Kernel symbol strings repeat in a storm,
so their parse is cached.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from netdm.engine.headers import PacketHeaders, describe_packet
from netdm.engine.symbols import SymbolTable, parse_kernel_symbol
from netdm.proto.events import PacketAlert

__all__ = [
    "ORIGIN_HARDWARE",
    "ORIGIN_SOFTWARE",
    "IfnameResolver",
    "Location",
    "caching_resolver",
    "headers_of",
    "interface_name",
    "origin_name",
    "resolve_quietly",
    "software_location",
]

IfnameResolver = Callable[[int], "str | None"]

ORIGIN_SOFTWARE = 0
ORIGIN_HARDWARE = 1
SYMBOL_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Location:
    """A software drop's function, offset into it and module (``None`` where unknown)."""

    function: str | None
    offset: int | None
    module: str | None


def origin_name(origin: int) -> str:
    """``"sw"``, ``"hw"``, or the number of an origin netdm does not know."""
    if origin == ORIGIN_SOFTWARE:
        return "sw"
    if origin == ORIGIN_HARDWARE:
        return "hw"
    return str(origin)


@functools.lru_cache(maxsize=SYMBOL_CACHE_SIZE)
def _kernel_symbol_location(symbol: str) -> Location:
    parsed = parse_kernel_symbol(symbol)
    return Location(parsed.name, parsed.offset, parsed.module)


def software_location(alert: PacketAlert, symbols: SymbolTable | None) -> Location | None:
    """Function, offset, module: from the kernel's ``%pS`` string, else the pc via ``symbols``."""
    if alert.symbol:
        return _kernel_symbol_location(alert.symbol)
    if alert.pc is not None and symbols is not None:
        resolved = symbols.lookup(alert.pc)
        if resolved is not None:
            return Location(resolved.name, resolved.offset, resolved.module)
    return None


def resolve_quietly(resolve: IfnameResolver, ifindex: int) -> str | None:
    """``resolve(ifindex)``, with the errors of a vanished interface as ``None``."""
    try:
        return resolve(ifindex)
    except (OSError, ValueError, OverflowError, TypeError):
        return None


def interface_name(alert: PacketAlert, resolve_ifname: IfnameResolver | None) -> str | None:
    """The kernel's name (hardware drops), else the resolver's, else ``None``."""
    port = alert.in_port
    if port is None:
        return None
    if port.name:
        return port.name
    if port.ifindex is None or resolve_ifname is None:
        return None
    return resolve_quietly(resolve_ifname, port.ifindex)


def caching_resolver(resolve: IfnameResolver, max_entries: int = 1024) -> IfnameResolver:
    """Wrap an ifindex→name function (``socket.if_indextoname``) with a small cache.

    Exceptions (``OSError`` for an index that no longer exists) become
    ``None``, and are remembered too; the cache empties itself when full.
    """
    names: dict[int, str | None] = {}

    def cached(ifindex: int) -> str | None:
        try:
            return names[ifindex]
        except KeyError:
            pass
        if len(names) >= max_entries:
            names.clear()
        names[ifindex] = resolve_quietly(resolve, ifindex)
        return names[ifindex]

    return cached


def headers_of(alert: PacketAlert, headers: PacketHeaders | None) -> PacketHeaders:
    """``headers`` when the caller decoded them already, else the payload's, decoded now."""
    if headers is not None:
        return headers
    return describe_packet(alert.proto, alert.payload or b"")
