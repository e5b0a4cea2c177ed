"""Which link layer a dropped packet's bytes start with: the EtherTypes that decide it.

Strategy: the kernel's payload starts at the MAC header, which is Ethernet
for Ethernet devices and loopback (all-zero addresses) but nothing at all
for tun and IP tunnels.  The rule is Wireshark's NET_DM dissector's: the
payload is Ethernet when it is at least 14 bytes long, ``proto`` (the skb's
EtherType) is at least 0x600, and bytes 12-13 equal ``proto``.  Without a
protocol from the kernel, a common EtherType at bytes 12-13 makes it
Ethernet.  Both the header decoder (:mod:`netdm.engine.headers`) and the
pcap writer of dropped packets (:mod:`netdm.capture.packet_pcap`) decide
with :func:`payload_is_ethernet`, so they cannot disagree; it lives in the
capture layer because the writer may not import the engine.
"""

from __future__ import annotations

__all__ = [
    "ETHERNET_HEADER_LEN",
    "ETHERTYPE_ARP",
    "ETHERTYPE_IPV4",
    "ETHERTYPE_IPV6",
    "ETHERTYPE_QINQ",
    "ETHERTYPE_QINQ_OLD",
    "ETHERTYPE_VLAN",
    "GUESSABLE_ETHERTYPES",
    "MIN_ETHERTYPE",
    "VLAN_TAG_LEN",
    "VLAN_TPIDS",
    "payload_is_ethernet",
]

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_VLAN = 0x8100  # 802.1Q customer tag
ETHERTYPE_QINQ = 0x88A8  # 802.1ad service tag
ETHERTYPE_QINQ_OLD = 0x9100  # pre-standard double tagging
MIN_ETHERTYPE = 0x0600  # below this, bytes 12-13 of an 802.3 frame are a length
ETHERNET_HEADER_LEN = 14
VLAN_TAG_LEN = 4
VLAN_TPIDS = frozenset({ETHERTYPE_VLAN, ETHERTYPE_QINQ, ETHERTYPE_QINQ_OLD})
# Without a protocol from the kernel, these EtherTypes at bytes 12-13 make the payload Ethernet.
GUESSABLE_ETHERTYPES = frozenset({ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_ARP}) | VLAN_TPIDS


def payload_is_ethernet(proto: int | None, payload: bytes) -> bool:
    """Whether ``payload`` starts with an Ethernet header (see the module docstring).

    True when ``proto`` ≥ 0x600 equals bytes 12-13 (Wireshark's rule), or,
    without ``proto``, when bytes 12-13 hold a common EtherType.
    """
    if len(payload) < ETHERNET_HEADER_LEN:
        return False
    outer = (payload[12] << 8) | payload[13]
    if proto:
        return proto >= MIN_ETHERTYPE and outer == proto
    return outer in GUESSABLE_ETHERTYPES
