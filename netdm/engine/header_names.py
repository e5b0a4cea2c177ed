"""What the headers of a dropped packet say: the result object, its notes, and names.

Strategy: the description side of header decoding, without any decoding:
the numbers and names netdm prints (EtherTypes, IP protocols, ICMP and
ICMPv6 types and codes, ARP operations, tcpdump's TCP flag letters), the
sentences of :attr:`PacketHeaders.notes`, and :class:`PacketHeaders`
itself.  The definitions of the header layouts are
:mod:`netdm.engine.header_definitions` (construct) and the decoder is
:mod:`netdm.engine.headers`; the views in :mod:`netdm.output` and the
filters in :mod:`netdm.engine.packet_filter` only need what is here.
"""

from __future__ import annotations

from dataclasses import dataclass

from netdm.capture.link_layer import (
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    ETHERTYPE_QINQ,
    ETHERTYPE_QINQ_OLD,
    ETHERTYPE_VLAN,
)

ETHERTYPE_NAMES: dict[int, str] = {
    ETHERTYPE_IPV4: "IPv4",
    ETHERTYPE_ARP: "ARP",
    0x0842: "Wake-on-LAN",
    0x6558: "TEB",
    0x8035: "RARP",
    ETHERTYPE_VLAN: "802.1Q",
    ETHERTYPE_IPV6: "IPv6",
    0x8808: "Ethernet-flow-control",
    0x8847: "MPLS",
    0x8848: "MPLS-multicast",
    0x8863: "PPPoE-discovery",
    0x8864: "PPPoE-session",
    0x888E: "EAPOL",
    ETHERTYPE_QINQ: "802.1ad",
    0x88CC: "LLDP",
    0x88E5: "MACsec",
    0x88F7: "PTP",
    0x8906: "FCoE",
    0x894F: "NSH",
    ETHERTYPE_QINQ_OLD: "QinQ",
}

IPPROTO_HOPOPTS = 0
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ROUTING = 43
IPPROTO_FRAGMENT = 44
IPPROTO_ICMPV6 = 58
IPPROTO_DSTOPTS = 60
IPV6_EXTENSION_HEADERS = frozenset({IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_DSTOPTS})
IPV6_SKIPPED_HEADERS = IPV6_EXTENSION_HEADERS | {IPPROTO_FRAGMENT}

# Transport (and tunnel) protocols by IP protocol number.  Extension-header numbers are absent
# on purpose: a walk that stops at one has no transport protocol.
IP_PROTOCOL_NAMES: dict[int, str] = {
    IPPROTO_ICMP: "ICMP",
    2: "IGMP",
    4: "IPIP",
    IPPROTO_TCP: "TCP",
    IPPROTO_UDP: "UDP",
    33: "DCCP",
    41: "IPv6-in-IP",
    47: "GRE",
    50: "ESP",
    51: "AH",
    IPPROTO_ICMPV6: "ICMPv6",
    89: "OSPF",
    103: "PIM",
    112: "VRRP",
    115: "L2TP",
    132: "SCTP",
    136: "UDPLite",
    137: "MPLS-in-IP",
}

ICMP_TYPE_NAMES: dict[int, str] = {
    0: "echo reply",
    3: "destination unreachable",
    4: "source quench",
    5: "redirect",
    8: "echo request",
    9: "router advertisement",
    10: "router solicitation",
    11: "time exceeded",
    12: "parameter problem",
    13: "timestamp request",
    14: "timestamp reply",
}
ICMP_CODE_NAMES: dict[int, dict[int, str]] = {
    3: {
        0: "net unreachable",
        1: "host unreachable",
        2: "protocol unreachable",
        3: "port unreachable",
        4: "fragmentation needed",
        5: "source route failed",
        6: "destination network unknown",
        7: "destination host unknown",
        9: "network administratively prohibited",
        10: "host administratively prohibited",
        13: "communication administratively prohibited",
    },
    5: {0: "redirect for network", 1: "redirect for host"},
    11: {0: "TTL exceeded in transit", 1: "fragment reassembly time exceeded"},
}
ICMPV6_TYPE_NAMES: dict[int, str] = {
    1: "destination unreachable",
    2: "packet too big",
    3: "time exceeded",
    4: "parameter problem",
    128: "echo request",
    129: "echo reply",
    130: "multicast listener query",
    131: "multicast listener report",
    132: "multicast listener done",
    133: "router solicitation",
    134: "router advertisement",
    135: "neighbor solicitation",
    136: "neighbor advertisement",
    137: "redirect",
    143: "multicast listener report v2",
}
ICMPV6_CODE_NAMES: dict[int, dict[int, str]] = {
    1: {
        0: "no route to destination",
        1: "administratively prohibited",
        2: "beyond scope of source address",
        3: "address unreachable",
        4: "port unreachable",
        5: "source address failed policy",
        6: "reject route",
    },
    3: {0: "hop limit exceeded in transit", 1: "fragment reassembly time exceeded"},
}

ARP_OPERATION_NAMES: dict[int, str] = {
    1: "request",
    2: "reply",
    3: "RARP request",
    4: "RARP reply",
    8: "InARP request",
    9: "InARP reply",
}
ARP_HARDWARE_ETHERNET = 1

# TCP flag bits of header byte 13, most significant first, with tcpdump's letters.
TCP_FLAG_BITS: tuple[tuple[str, int, str], ...] = (
    ("cwr", 0x80, "W"),
    ("ece", 0x40, "E"),
    ("urg", 0x20, "U"),
    ("ack", 0x10, "."),
    ("psh", 0x08, "P"),
    ("rst", 0x04, "R"),
    ("syn", 0x02, "S"),
    ("fin", 0x01, "F"),
)
_TCP_LETTERS_IN_TCPDUMP_ORDER = tuple(
    (bit, letter)
    for wanted in ("syn", "fin", "psh", "rst", "urg", "ece", "cwr", "ack")
    for name, bit, letter in TCP_FLAG_BITS
    if name == wanted
)

# --------------------------------------------------------------------------- notes

NOTE_NO_PAYLOAD = "no payload"
NOTE_GUESSED_ETHERNET = "no protocol from the kernel: guessed Ethernet"
NOTE_UNKNOWN_LINK = "no protocol from the kernel: link layer unknown"
NOTE_TRUNCATED_VLAN = "truncated VLAN tag"
NOTE_TRUNCATED_ARP = "truncated ARP header"
NOTE_TRUNCATED_IPV4 = "truncated IPv4 header"
NOTE_TRUNCATED_IPV4_OPTIONS = "truncated IPv4 options"
NOTE_TRUNCATED_IPV6 = "truncated IPv6 header"
NOTE_TRUNCATED_IPV6_EXTENSION = "truncated IPv6 extension header"
NOTE_TRUNCATED_IPV6_FRAGMENT = "truncated IPv6 fragment header"
NOTE_TRUNCATED_TCP = "truncated TCP header"
NOTE_TRUNCATED_TCP_OPTIONS = "truncated TCP options"
NOTE_TRUNCATED_UDP = "truncated UDP header"
NOTE_TRUNCATED_ICMP = "truncated ICMP header"
NOTE_TRUNCATED_ICMPV6 = "truncated ICMPv6 header"


def note_wrong_version(l3: str, version: int) -> str:
    return f"not {l3} (version {version})"


def note_bad_ipv4_header_length(length: int) -> str:
    return f"bad IPv4 header length {length}"


def note_bad_tcp_header_length(length: int) -> str:
    return f"bad TCP header length {length}"


def note_arp_not_decoded(hardware_type: int, protocol_type: int) -> str:
    return f"ARP for hardware type {hardware_type}, protocol {protocol_type:#06x} not decoded"


# --------------------------------------------------------------------------- the result


@dataclass(frozen=True)
class PacketHeaders:
    """What the headers of one dropped packet say; ``None`` where unknown.

    * ``link``: ``"Ethernet"``, or ``None`` for a bare layer-3 payload (or an
      unknown link layer).  ``eth_src``/``eth_dst``: ``"aa:bb:cc:dd:ee:ff"``.
    * ``vlan_ids``: the VLAN IDs of the 802.1Q/802.1ad tags, outermost first.
    * ``ethertype``: the layer-3 EtherType (after the tags), or ``proto`` for
      a bare layer-3 payload; ``l3_offset``: where that header starts.
    * ``l3``: ``"IPv4"``, ``"IPv6"``, ``"ARP"`` when the EtherType says so
      (even when the header then turned out truncated), else ``None``.
    * ``src``/``dst``: IP addresses (ARP: sender and target protocol
      addresses), as :mod:`ipaddress` prints them.
    * ``ip_proto``: the IPv4 protocol, or the last IPv6 next-header value
      reached (extension headers skipped); ``l4`` its name when it is a
      transport protocol (``"TCP"``, ``"UDP"``, ``"ICMP"``, ``"ICMPv6"``, ...).
    * ``ttl``: IPv4 TTL or IPv6 hop limit.  ``ip_length``: IPv4 total length
      or IPv6 payload length, as the header says.
    * ``fragment_offset``: in bytes, set for fragments (IPv4 with MF or an
      offset, IPv6 with a fragment header); ``more_fragments``: the MF bit.
      Only the fragment at offset 0 has a transport header to decode.
    * ``l4_offset``: where the transport header starts; ``sport``/``dport``,
      ``tcp_flags`` (header byte 13, ``FIN`` = 0x01), ``seq``/``ack`` (raw
      numbers, ``ack`` even without the ACK flag), ``icmp_type``/``icmp_code``.
    * ``arp_op``, ``arp_sender_mac``: ARP operation and sender hardware address.
    * ``notes``: why decoding stopped early, or what was guessed.
    """

    link: str | None = None
    eth_src: str | None = None
    eth_dst: str | None = None
    vlan_ids: tuple[int, ...] = ()
    ethertype: int | None = None
    l3_offset: int | None = None
    l3: str | None = None
    src: str | None = None
    dst: str | None = None
    ip_proto: int | None = None
    ttl: int | None = None
    ip_length: int | None = None
    fragment_offset: int | None = None
    more_fragments: bool = False
    l4: str | None = None
    l4_offset: int | None = None
    sport: int | None = None
    dport: int | None = None
    tcp_flags: int | None = None
    seq: int | None = None
    ack: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    arp_op: int | None = None
    arp_sender_mac: str | None = None
    notes: tuple[str, ...] = ()


# --------------------------------------------------------------------------- names for output


def ethertype_name(ethertype: int | None) -> str | None:
    """``"IPv4"`` for 0x0800 and so on; ``None`` for EtherTypes without a name here."""
    if ethertype is None:
        return None
    return ETHERTYPE_NAMES.get(ethertype)


def tcp_flags_text(flags: int) -> str:
    """tcpdump's flag letters: ``S`` SYN, ``F`` FIN, ``P`` PSH, ``R`` RST, ``U`` URG,
    ``E`` ECE, ``W`` CWR, ``.`` ACK (``"S."`` for a SYN-ACK); ``"none"`` for no flag."""
    text = "".join(letter for bit, letter in _TCP_LETTERS_IN_TCPDUMP_ORDER if flags & bit)
    return text or "none"


def icmp_description(l4: str | None, icmp_type: int, icmp_code: int) -> str:
    """A short phrase for an ICMP or ICMPv6 type and code.

    The code's name when the type has named codes (``port unreachable``),
    else the type's name (``echo request``, with ``code N`` when the code is
    not 0), else ``type N code M``.
    """
    if l4 == "ICMPv6":
        type_names, code_names = ICMPV6_TYPE_NAMES, ICMPV6_CODE_NAMES
    else:
        type_names, code_names = ICMP_TYPE_NAMES, ICMP_CODE_NAMES
    code_name = code_names.get(icmp_type, {}).get(icmp_code)
    if code_name is not None:
        return code_name
    type_name = type_names.get(icmp_type)
    if type_name is None:
        return f"type {icmp_type} code {icmp_code}"
    return type_name if icmp_code == 0 else f"{type_name} code {icmp_code}"
