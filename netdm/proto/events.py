"""Typed events: what the protocol layer hands to the rest of netdm.

Strategy: construct ``Container``s stop at the protocol boundary.  Everything
above ``netdm.proto`` sees these small frozen, slotted dataclasses with no
behaviour, one per kind of netlink message.  Attributes a newer kernel sends
that this version does not know are kept as :class:`RawAttribute` in
``unknown_attributes`` so that nothing is silently lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


@dataclass(frozen=True, slots=True)
class RawAttribute:
    """An attribute netdm does not interpret: its type (flags included) and data."""

    type: int
    data: bytes


@dataclass(frozen=True, slots=True)
class DropPoint:
    """One entry of a summary alert: a kernel address and how often it dropped.

    ``pc == 0`` is the kernel's NAPI heuristic ("a device's rx_dropped counter
    moved"), not an address.
    """

    pc: int
    count: int


@dataclass(frozen=True, slots=True)
class HardwareEntry:
    """One ``NET_DM_ATTR_HW_ENTRY`` of a hardware summary: a devlink trap and a count."""

    trap_name: str
    count: int


@dataclass(frozen=True, slots=True)
class SummaryAlert:
    """``NET_DM_CMD_ALERT``: one CPU's batch of drop counts (about one second's worth)."""

    drop_points: tuple[DropPoint, ...]
    hw_entries: tuple[HardwareEntry, ...] = ()
    unknown_attributes: tuple[RawAttribute, ...] = ()


@dataclass(frozen=True, slots=True)
class InPort:
    """``NET_DM_ATTR_IN_PORT``: the input interface, as much of it as the kernel sent."""

    ifindex: int | None = None
    name: str | None = None
    unknown_attributes: tuple[RawAttribute, ...] = ()


@dataclass(frozen=True, slots=True)
class PacketAlert:
    """``NET_DM_CMD_PACKET_ALERT``: one dropped packet (packet mode, 5.4+).

    Every field but ``origin`` is optional because kernels differ: software
    drops carry pc/symbol (and reason on 5.18+), hardware drops carry trap
    names.  ``payload`` starts at the MAC header and is truncated to the
    configured length; ``orig_len`` is the packet's full length.
    """

    origin: int = 0
    pc: int | None = None
    symbol: str | None = None
    reason: str | None = None
    in_port: InPort | None = None
    timestamp_ns: int | None = None
    proto: int | None = None
    payload: bytes | None = None
    orig_len: int | None = None
    hw_trap_group_name: str | None = None
    hw_trap_name: str | None = None
    flow_action_cookie: bytes | None = None
    unknown_attributes: tuple[RawAttribute, ...] = ()


@dataclass(frozen=True, slots=True)
class ConfigReply:
    """``NET_DM_CMD_CONFIG_NEW``: the kernel's global configuration."""

    seq: int
    alert_mode: int | None = None
    trunc_len: int | None = None
    queue_len: int | None = None
    unknown_attributes: tuple[RawAttribute, ...] = ()


@dataclass(frozen=True, slots=True)
class StatsReply:
    """``NET_DM_CMD_STATS_NEW``: cumulative per-CPU queue tail drops since module load."""

    seq: int
    sw_dropped: int | None = None
    hw_dropped: int | None = None
    unknown_attributes: tuple[RawAttribute, ...] = ()


@dataclass(frozen=True, slots=True)
class UnknownCommand:
    """A NET_DM message whose command this version does not know (a newer kernel)."""

    cmd: int
    seq: int
    attributes: tuple[RawAttribute, ...]


@dataclass(frozen=True, slots=True)
class Ack:
    """``NLMSG_ERROR`` with error 0: the request with ``seq`` succeeded.

    ``message`` is the extended-ack text, which the kernel also sends with
    successful acks as a warning (e.g. STOP when already stopped).
    """

    seq: int
    port_id: int
    message: str | None = None


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """``NLMSG_ERROR`` with a negative error: the request with ``seq`` failed.

    ``errno`` is positive (``errno.EAGAIN``, ...); ``message`` and
    ``attribute_offset`` come from the extended ack when the kernel sent one.
    ``request_type``/``request_cmd`` identify the echoed request.
    """

    seq: int
    port_id: int
    errno: int
    message: str | None = None
    attribute_offset: int | None = None
    request_type: int | None = None
    request_cmd: int | None = None


@dataclass(frozen=True, slots=True)
class FamilyInfo:
    """nlctrl ``CTRL_CMD_NEWFAMILY``: a generic-netlink family's id and features."""

    seq: int
    family_id: int
    name: str
    version: int | None = None
    hdrsize: int | None = None
    maxattr: int | None = None
    ops: tuple[int, ...] = ()
    mcast_groups: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Done:
    """``NLMSG_DONE``: end of a multi-part reply."""

    seq: int


@dataclass(frozen=True, slots=True)
class OtherMessage:
    """A netlink message of another family or type (e.g. in an nlmon capture)."""

    nl_type: int
    flags: int
    seq: int
    port_id: int
    payload: bytes


Event = (
    SummaryAlert
    | PacketAlert
    | ConfigReply
    | StatsReply
    | UnknownCommand
    | Ack
    | ErrorReply
    | FamilyInfo
    | Done
    | OtherMessage
)


class DropSite(NamedTuple):
    """A packet alert without its packet: what a summary counts it by.

    The fields are :class:`PacketAlert`'s of the same names, decoded by the
    same readers.  A named tuple, because it is built and hashed in C.
    """

    origin: int = 0
    pc: int | None = None
    symbol: str | None = None
    reason: str | None = None
    hw_trap_group_name: str | None = None
    hw_trap_name: str | None = None

    @classmethod
    def of(cls, alert: PacketAlert) -> DropSite:
        """The drop site of a fully decoded alert."""
        return cls(
            alert.origin,
            alert.pc,
            alert.symbol,
            alert.reason,
            alert.hw_trap_group_name,
            alert.hw_trap_name,
        )
