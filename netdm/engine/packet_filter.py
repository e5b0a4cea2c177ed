"""Which dropped packets to show or count, decided on the client side.

Strategy: the kernel sends every drop; ``netdm watch --reason/--location/
--interface/--protocol/--origin`` keep some of them.  :class:`PacketFilter`
normalises and checks its values once, compiles each criterion's globs
into one regular expression, and decides per alert with the cheap
criteria first: only ``protocols`` needs the payload's headers, which the
caller may pass on so they are decoded once.  :func:`parse_filter_arguments`
reads the same options from command-line words (the ``--filter`` form).
Sites and interfaces are named as :mod:`netdm.engine.packet_site` names them
for output, so a filter matches what the user sees.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from netdm.engine.headers import (
    ETHERTYPE_NAMES,
    IP_PROTOCOL_NAMES,
    PacketHeaders,
    ethertype_name,
)
from netdm.engine.packet_site import ORIGIN_HARDWARE, headers_of, origin_name, software_location
from netdm.engine.symbols import SymbolTable
from netdm.proto.events import PacketAlert

__all__ = ["PacketFilter", "normalize_reason", "parse_filter_arguments"]

_REASON_PREFIX = "SKB_DROP_REASON_"

_ORIGIN_ALIASES = {
    "sw": "sw",
    "software": "sw",
    "0": "sw",
    "hw": "hw",
    "hardware": "hw",
    "1": "hw",
}
_PROTOCOL_ALIASES = {"ip": "ipv4", "ip4": "ipv4", "ip6": "ipv6", "icmp6": "icmpv6"}
_PROTOCOL_TOKENS = frozenset(
    {"ipv4", "ipv6", "arp", "vlan"}
    | {name.lower() for name in IP_PROTOCOL_NAMES.values()}
    | {name.lower() for name in ETHERTYPE_NAMES.values()}
)
_NUMBER = re.compile(r"(?:0x[0-9a-f]+|[0-9]+)\Z")


def normalize_reason(reason: str) -> str:
    """``"skb_drop_reason_no_socket"`` → ``"NO_SOCKET"``: upper case, without the enum prefix."""
    reason = reason.strip().upper()
    if reason.startswith(_REASON_PREFIX):
        reason = reason[len(_REASON_PREFIX) :]
    return reason


def _split_values(values: Iterable[str]) -> list[str]:
    """Option values, each possibly a comma-separated list; empty items are dropped."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _values(values: Iterable[str]) -> list[str]:
    """The values of one criterion; a lone string is one value, not its characters."""
    return [values] if isinstance(values, str) else list(values)


def _glob_matcher(patterns: Iterable[str]) -> re.Pattern[str] | None:
    patterns = sorted(patterns)
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(pattern)})" for pattern in patterns))


def _normalize_protocol(value: str) -> str | int:
    text = value.strip().lower()
    if _NUMBER.match(text):
        number = int(text, 0) if text.startswith("0x") else int(text)
        if number > 0xFFFF:
            raise ValueError(f"EtherType {value!r} is larger than 0xffff")
        return number
    text = _PROTOCOL_ALIASES.get(text, text)
    if text not in _PROTOCOL_TOKENS:
        known = ", ".join(sorted(_PROTOCOL_TOKENS))
        raise ValueError(f"unknown protocol {value!r}; use an EtherType such as 0x0800 or: {known}")
    return text


def _normalize_origin(value: str) -> str:
    try:
        return _ORIGIN_ALIASES[value.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown origin {value!r}; use sw or hw") from None


@dataclass(frozen=True)
class PacketFilter:
    """Which dropped packets to show, decided on the client side.

    Each set is one criterion; an empty set accepts everything.  A packet
    must pass every criterion, and passes one when it matches any value in
    its set (``--reason A --reason B`` is A or B; ``--reason A --protocol
    udp`` is A and UDP).

    * ``include_reasons`` / ``exclude_reasons``: drop reasons, case
      insensitive, with or without the ``SKB_DROP_REASON_`` prefix, glob
      patterns allowed (``TCP_*``).  A drop without a reason (hardware,
      kernels before 5.18) never matches ``include_reasons`` and is never
      excluded.
    * ``locations``: glob patterns over the function name (the kernel's
      symbol string without ``+0xoff/0xsize`` and module, else the pc's name
      from the symbol table), or, for hardware drops, the trap name.
      Case sensitive, as symbols are.
    * ``interfaces``: interface names (glob patterns) or ifindex numbers.
    * ``protocols``: ``ipv4`` (``ip``), ``ipv6`` (``ip6``), ``arp``, ``vlan``,
      ``tcp``, ``udp``, ``icmp``, ``icmpv6`` (``icmp6``), any other IP
      protocol or EtherType name netdm knows (``gre``, ``sctp``, ``lldp``),
      or an EtherType number (``0x0800``, ``2048``) matched against the
      kernel's ``proto`` and the EtherType after VLAN tags.
    * ``origins``: ``sw`` / ``hw`` (``software`` / ``hardware``).

    Values are normalised and checked on construction; a bad protocol or
    origin raises :class:`ValueError`.
    """

    include_reasons: frozenset[str] = frozenset()
    exclude_reasons: frozenset[str] = frozenset()
    locations: frozenset[str] = frozenset()
    interfaces: frozenset[str] = frozenset()
    protocols: frozenset[str] = frozenset()
    origins: frozenset[str] = frozenset()
    _include_reason_matcher: re.Pattern[str] | None = field(
        init=False, repr=False, compare=False, default=None
    )
    _exclude_reason_matcher: re.Pattern[str] | None = field(
        init=False, repr=False, compare=False, default=None
    )
    _location_matcher: re.Pattern[str] | None = field(
        init=False, repr=False, compare=False, default=None
    )
    _interface_matcher: re.Pattern[str] | None = field(
        init=False, repr=False, compare=False, default=None
    )
    _protocol_names: frozenset[str] = field(
        init=False, repr=False, compare=False, default=frozenset()
    )
    _protocol_numbers: frozenset[int] = field(
        init=False, repr=False, compare=False, default=frozenset()
    )

    def __post_init__(self) -> None:
        def store(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        include = frozenset(map(normalize_reason, _values(self.include_reasons)))
        exclude = frozenset(map(normalize_reason, _values(self.exclude_reasons)))
        protocols = [_normalize_protocol(protocol) for protocol in _values(self.protocols)]
        locations = frozenset(_values(self.locations))
        interfaces = frozenset(_values(self.interfaces))
        store("include_reasons", include)
        store("exclude_reasons", exclude)
        store("locations", locations)
        store("interfaces", interfaces)
        store(
            "protocols",
            frozenset(p if isinstance(p, str) else f"{p:#06x}" for p in protocols),
        )
        store("origins", frozenset(map(_normalize_origin, _values(self.origins))))
        store("_include_reason_matcher", _glob_matcher(include))
        store("_exclude_reason_matcher", _glob_matcher(exclude))
        store("_location_matcher", _glob_matcher(locations))
        store("_interface_matcher", _glob_matcher(interfaces))
        store("_protocol_names", frozenset(p for p in protocols if isinstance(p, str)))
        store("_protocol_numbers", frozenset(p for p in protocols if isinstance(p, int)))

    @classmethod
    def from_options(
        cls,
        *,
        reasons: Iterable[str] = (),
        exclude_reasons: Iterable[str] = (),
        locations: Iterable[str] = (),
        interfaces: Iterable[str] = (),
        protocols: Iterable[str] = (),
        origins: Iterable[str] = (),
    ) -> PacketFilter:
        """A filter from repeated command-line option values; each may be ``a,b,c``."""
        return cls(
            include_reasons=frozenset(_split_values(reasons)),
            exclude_reasons=frozenset(_split_values(exclude_reasons)),
            locations=frozenset(_split_values(locations)),
            interfaces=frozenset(_split_values(interfaces)),
            protocols=frozenset(_split_values(protocols)),
            origins=frozenset(_split_values(origins)),
        )

    @property
    def active(self) -> bool:
        """Whether the filter rejects anything at all."""
        return bool(
            self.include_reasons
            or self.exclude_reasons
            or self.locations
            or self.interfaces
            or self.protocols
            or self.origins
        )

    @property
    def needs_headers(self) -> bool:
        """Whether :meth:`matches` decodes the payload (only for ``protocols``)."""
        return bool(self.protocols)

    def matches(
        self,
        alert: PacketAlert,
        headers: PacketHeaders | None = None,
        ifname: str | None = None,
        *,
        symbols: SymbolTable | None = None,
    ) -> bool:
        """Whether ``alert`` passes every criterion.

        ``headers`` (decoded here when needed and not given), ``ifname`` (the
        resolved interface name; the alert's own name is used otherwise) and
        ``symbols`` (to name a pc when the alert has no symbol string) are
        what the caller already knows.
        """
        if self.origins and origin_name(alert.origin) not in self.origins:
            return False
        if not self._reason_passes(alert.reason):
            return False
        if self._location_matcher is not None and not self._location_passes(alert, symbols):
            return False
        if self.interfaces and not self._interface_passes(alert, ifname):
            return False
        return not self.protocols or self._protocol_passes(alert, headers)

    def _reason_passes(self, reason: str | None) -> bool:
        include, exclude = self._include_reason_matcher, self._exclude_reason_matcher
        if include is None and exclude is None:
            return True
        if reason is None:
            return include is None
        normalized = normalize_reason(reason)
        if include is not None and not include.match(normalized):
            return False
        return exclude is None or not exclude.match(normalized)

    def _location_passes(self, alert: PacketAlert, symbols: SymbolTable | None) -> bool:
        assert self._location_matcher is not None
        if alert.origin == ORIGIN_HARDWARE:
            name = alert.hw_trap_name
        else:
            location = software_location(alert, symbols)
            name = None if location is None else location.function
        return name is not None and self._location_matcher.match(name) is not None

    def _interface_passes(self, alert: PacketAlert, ifname: str | None) -> bool:
        port = alert.in_port
        if port is not None and port.ifindex is not None and str(port.ifindex) in self.interfaces:
            return True
        name = ifname if ifname is not None else (None if port is None else port.name)
        matcher = self._interface_matcher
        return name is not None and matcher is not None and matcher.match(name) is not None

    def _protocol_passes(self, alert: PacketAlert, headers: PacketHeaders | None) -> bool:
        packet = headers_of(alert, headers)
        numbers = self._protocol_numbers
        if numbers and (alert.proto in numbers or packet.ethertype in numbers):
            return True
        names = self._protocol_names
        if not names:
            return False
        candidates = {
            packet.l3,
            packet.l4,
            ethertype_name(packet.ethertype),
            ethertype_name(alert.proto),
        }
        if packet.vlan_ids:
            candidates.add("vlan")
        return any(candidate is not None and candidate.lower() in names for candidate in candidates)


_FILTER_OPTIONS = {
    "--reason": "reasons",
    "--exclude-reason": "exclude_reasons",
    "--location": "locations",
    "--interface": "interfaces",
    "--protocol": "protocols",
    "--origin": "origins",
}


def parse_filter_arguments(arguments: Sequence[str]) -> PacketFilter:
    """A :class:`PacketFilter` from command-line words.

    ``["--reason", "NO_SOCKET", "--exclude-reason=NOT_SPECIFIED", "--location",
    "*udp*", "--interface", "lo", "--protocol", "udp,tcp"]``: every option may
    repeat, take ``=value``, and hold a comma-separated list.  Options are
    ``--reason``, ``--exclude-reason``, ``--location``, ``--interface``,
    ``--protocol`` and ``--origin``.  Raises :class:`ValueError` for an
    unknown option, a missing value, or a bad protocol or origin.
    """
    values: dict[str, list[str]] = {name: [] for name in _FILTER_OPTIONS.values()}
    position = 0
    while position < len(arguments):
        word = arguments[position]
        option, has_value, value = word.partition("=")
        if option not in _FILTER_OPTIONS:
            raise ValueError(f"unknown filter option {word!r}")
        if not has_value:
            position += 1
            if position >= len(arguments):
                raise ValueError(f"{option} needs a value")
            value = arguments[position]
        if not value.strip():
            raise ValueError(f"{option} needs a value")
        values[_FILTER_OPTIONS[option]].append(value)
        position += 1
    return PacketFilter.from_options(**values)
