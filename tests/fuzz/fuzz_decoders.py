"""A long fuzz run over netdm's decoders: a million generated and mutated inputs.

    python tests/fuzz/fuzz_decoders.py                      # 1,000,000 inputs (minutes)
    python tests/fuzz/fuzz_decoders.py --quick              # 20,000 inputs (seconds)
    python tests/fuzz/fuzz_decoders.py --inputs 200000 --seed 7
    python tests/fuzz/fuzz_decoders.py --replay DIR/datagram-000123.json   # a saved failure

Strategy: the property tests (hypothesis) prove each decoder equal to its
reference on generated inputs; this script throws far more, and nastier,
inputs at the same decoders and holds every one to the documented contract.
Inputs start from real recordings (``captures/*.pcapng``, ``*.pcap``, their
datagrams and packet payloads) and from messages built with
:mod:`netdm.proto.encode`, plus random attribute trees and noise, and are
mutated with plain :mod:`random`: bit flips, length and type fields set to
boundary values, truncation, inserted, deleted and spliced spans, and for
captures whole blocks deleted, duplicated, swapped or taken from another file.

Three targets, each input going to one of them:

* ``datagram``: :func:`netdm.proto.decode_datagram` returns events or raises
  :class:`~netdm.proto.ProtocolError`, nothing else.
  :func:`~netdm.proto.sites.scan_drop_sites` agrees with it (the same drop
  sites, the same error, or ``None`` only where the datagram is not all packet
  alerts), and a long-lived :class:`~netdm.proto.sites.DropSiteScanner`
  (whose shape cache sees thousands of look-alikes) agrees with
  ``scan_drop_sites``.  A sample goes to the construct reference
  ``decode_datagram_reference`` (tests/proto/reference_decoder.py), which must give the
  same events or fail at the same offset; decoded packet alerts in a sample
  are rendered (line, verbose, JSON), which must not raise, must be terminal
  safe, and whose JSON must equal ``json.dumps`` of :func:`packet_to_json`.
* ``headers``: :func:`netdm.engine.headers.describe_packet` never raises; a sample
  must agree with construct parsing (``tests/engine/construct_oracle.py``) and render.
* ``capture``: :class:`netdm.capture.CaptureReader` over a mutated pcapng or
  pcap file gives records or raises :class:`~netdm.capture.CaptureError`,
  nothing else; the fast path equals the general one (``_fast=False``), in
  strict and in ``keep_going`` mode; ``keep_going`` never raises after the
  header, keeps every record the strict walk gave, and counts the damage the
  strict walk stopped at (``bad_records``, with its sentence first in
  ``problems``); :func:`~netdm.capture.read_symbols` gives text or
  ``CaptureError``.  A sample is replayed end to end (symbols, pipeline,
  per-packet and summary output, text and JSON), which must finish or raise
  a :class:`netdm.errors.NetdmError`.

Every input is timed: one whose checks take more than ``--slow-seconds`` (1 s)
of CPU time is a failure (CPU time, so that a busy machine fails nothing),
and a watchdog thread interrupts one still running after ``--hang-seconds``.
The process's RSS is sampled and its peak (``VmHWM``) must stay within
``--max-growth-mb`` of the RSS at the start; the address space is limited
(``RLIMIT_AS``) so that a huge allocation raises MemoryError in the input
that made it.  The capture checks read a real file, as ``netdm watch -r``
does.  A failing input is saved (data plus a JSON description) under
``--failures`` and can be rerun with ``--replay``.  The exit status is 1 when
anything failed.  docs/fuzzing.md has the method and the million-input result.
"""

from __future__ import annotations

import _thread
import argparse
import base64
import collections
import contextlib
import glob
import io
import json
import os
import random
import struct
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run as a script from anywhere: make netdm importable

from netdm.capture import (  # noqa: E402
    CaptureError,
    CaptureReader,
    CaptureRecord,
    CaptureWriter,
    read_capture,
    read_symbols,
)
from netdm.capture.read import MAX_PROBLEMS_KEPT  # noqa: E402
from netdm.engine.headers import PacketHeaders, describe_packet  # noqa: E402
from netdm.engine.symbols import SymbolTable  # noqa: E402
from netdm.errors import NetdmError  # noqa: E402
from netdm.output import packets  # noqa: E402
from netdm.proto import (  # noqa: E402
    ConfigReply,
    DropPoint,
    FamilyInfo,
    HardwareEntry,
    InPort,
    PacketAlert,
    ProtocolError,
    RawAttribute,
    StatsReply,
    decode_datagram,
    encode,  # noqa: E402
)
from netdm.proto.alert_cache import PacketAlertDecoder  # noqa: E402
from netdm.proto.sites import DropSite, DropSiteScanner, scan_drop_sites  # noqa: E402
from tests.engine.construct_oracle import check_with_construct  # noqa: E402
from tests.proto.reference_decoder import decode_datagram_reference  # noqa: E402

FULL_INPUTS = 1_000_000
QUICK_INPUTS = 20_000
CAPTURES = REPO / "captures"
DEFAULT_FAILURES = Path(tempfile.gettempdir()) / "netdm-fuzz-failures"
FAMILY_ID = 0x20  # what NET_DM got in every recording; generated datagrams pick others too
TARGET_WEIGHTS = {"datagram": 58, "headers": 30, "capture": 12}
RSS_SAMPLE_EVERY = 1000
SCANNER_RESET_EVERY = 16384  # datagrams per scanner life: a scanner failure saves that history
NLMSG_ERROR, NLMSG_DONE, GENL_ID_CTRL = 2, 3, 0x10
NLM_F_CAPPED, NLM_F_ACK_TLVS = 0x100, 0x200
NLA_F_NESTED, NLA_F_NET_BYTEORDER = 0x8000, 0x4000
_decode_seed = decode_datagram  # the seeds' own decoder, whatever a test patches
_NLMSGHDR = struct.Struct("<IHHII")
_NLATTR = struct.Struct("<HH")
_U16 = {"little": struct.Struct("<H"), "big": struct.Struct(">H")}
_U32 = {"little": struct.Struct("<I"), "big": struct.Struct(">I")}


class Violation(Exception):  # noqa: N818 (a broken contract, not an error of this script)
    """The contract did not hold: ``kind`` names how (disagreement, contract)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def expect(condition: bool, kind: str, message: str | Callable[[], str]) -> None:
    if not condition:
        raise Violation(kind, message() if callable(message) else message)


# =========================================================================== random values

KERNEL_TEXTS = [
    "__udp4_lib_rcv+0x5f7/0xa90",
    "icmpv6_rcv+0x3b2/0x5d0",
    "__netif_receive_skb_core.constprop.0+0x2bb/0x1050",
    "tun_do_read+0x1c/0x400 [tun]",
    "NO_SOCKET",
    "SKB_DROP_REASON_TCP_CSUM",
    "NOT_SPECIFIED",
    "l3_drops",
    "blackhole_route",
    "lo",
    "eth0",
    "swp1",
    "",
    " ",
    'quote"and\\backslash',
    "esc\x1b[2Jape",
    "del\x7f",
    "c1\x9bcsi",
    "bidi\u202eoverride",
    "tab\tnew\nline",
    "caf\u00e9",
    "\U0001f600 emoji",
    "nul\x00inside",
    "\u2028separator",
]


def random_text(rng: random.Random) -> str:
    if rng.random() < 0.7:
        return rng.choice(KERNEL_TEXTS)
    return "".join(rng.choice(KERNEL_TEXTS) for _ in range(rng.randint(1, 3)))[:40]


def random_bytes(rng: random.Random, low: int, high: int) -> bytes:
    return rng.randbytes(rng.randint(low, high))


def maybe(rng: random.Random, value: Any, probability: float = 0.8) -> Any:
    return value if rng.random() < probability else None


def interesting_u32(rng: random.Random, current: int, room: int) -> int:
    """A value for a length or count field: boundaries, near the current value, or anything."""
    choice = rng.randrange(12)
    if choice == 0:
        return rng.choice([0, 1, 2, 3, 4, 5, 7, 8, 11, 12, 15, 16, 19, 20, 24, 28, 32, 48])
    if choice == 1:
        return max(0, current + rng.choice([-8, -4, -3, -2, -1, 1, 2, 3, 4, 8]))
    if choice == 2:
        return max(0, room + rng.choice([-4, -1, 0, 1, 4]))
    if choice == 3:
        return rng.choice([0xFF, 0x100, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF])
    if choice == 4:
        return current * 2
    if choice == 5:
        return rng.choice([1 << 20, 16 * 1024 * 1024, 16 * 1024 * 1024 + 4, 262144, 262145])
    return rng.getrandbits(rng.choice([8, 16, 32]))


# =========================================================================== generic mutations


def mutate_bytes(rng: random.Random, data: bytearray, donors: Sequence[bytes]) -> None:
    """One structure-blind change: flip, set, cut, insert, delete, duplicate or splice."""
    size = len(data)
    choice = rng.randrange(9)
    at = rng.randrange(size) if size else 0
    if choice == 0 and size:
        data[at] ^= 1 << rng.randrange(8)
    elif choice == 1 and size:
        data[at] = rng.choice([0, 0xFF, 0x7F, 0x80, 0x01, rng.getrandbits(8)])
    elif choice == 2 and size >= 4:
        at = min(at & ~3, size - 4)
        data[at : at + 4] = rng.getrandbits(32).to_bytes(4, "little")
    elif choice == 3:
        del data[at:]
    elif choice == 4:
        data[at:at] = random_bytes(rng, 1, 16)
    elif choice == 5:
        del data[at : at + rng.randint(1, 16)]
    elif choice == 6 and size:
        span = data[at : at + rng.randint(1, 64)]
        data[rng.randrange(size + 1) : 0] = span  # a copy of a span, somewhere
    elif donors:
        donor = rng.choice(donors)
        start = rng.randrange(len(donor) + 1)
        piece = donor[start : start + rng.randint(1, 64)]
        if rng.random() < 0.5:
            data[at:] = piece  # cross over: this one's head, a donor's tail
        else:
            data[at:at] = piece
    elif size:
        data[at] = rng.getrandbits(8)


# =========================================================================== datagrams


def netlink_fields(data: bytes) -> list[tuple[int, int, str]]:
    """(offset, size, kind) of the length and type fields a netlink walk of ``data`` meets.

    Best effort on any bytes: message headers, the genl command, and every
    attribute header, descending into values that frame as attribute lists.
    """
    found: list[tuple[int, int, str]] = []
    offset = 0
    while len(data) - offset >= 16:
        length, nl_type = _NLMSGHDR.unpack_from(data, offset)[:2]
        found += [(offset, 4, "nlmsg_len"), (offset + 4, 2, "nlmsg_type")]
        found.append((offset + 6, 2, "nlmsg_flags"))
        end = min(len(data), offset + max(length, 16))
        if nl_type == NLMSG_ERROR:
            found.append((offset + 20, 4, "nlmsg_len"))  # the echoed request's length
            _attribute_fields(data, offset + 36, end, found, 0)
        elif nl_type != NLMSG_DONE and end - offset >= 20:
            found.append((offset + 16, 1, "genl_cmd"))
            _attribute_fields(data, offset + 20, end, found, 0)
        if length < 16:
            break
        offset += (length + 3) & ~3
    return found


def _attribute_fields(
    data: bytes, start: int, end: int, found: list[tuple[int, int, str]], depth: int
) -> bool:
    position = start
    while end - position >= 4:
        length, _ = _NLATTR.unpack_from(data, position)
        if length < 4 or position + length > end:
            return False
        found += [(position, 2, "nla_len"), (position + 2, 2, "nla_type")]
        if depth < 3 and length >= 8:
            mark = len(found)
            if not _attribute_fields(data, position + 4, position + length, found, depth + 1):
                del found[mark:]  # not a nest after all
        position += (length + 3) & ~3
    return position >= end


def mutate_datagram(rng: random.Random, data: bytearray, donors: Sequence[bytes]) -> None:
    """One change aimed at the netlink framing (or, sometimes, a blind one)."""
    fields = netlink_fields(bytes(data)) if rng.random() < 0.75 else []
    if not fields:
        mutate_bytes(rng, data, donors)
        return
    offset, size, kind = rng.choice(fields)
    if kind == "genl_cmd":
        data[offset] = rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, rng.getrandbits(8)])
        return
    current = int.from_bytes(data[offset : offset + size], "little")
    if kind in ("nla_type", "nlmsg_type"):
        value = rng.choice(
            [
                rng.randrange(30),
                current ^ NLA_F_NESTED,
                current ^ NLA_F_NET_BYTEORDER,
                rng.choice([NLMSG_ERROR, NLMSG_DONE, GENL_ID_CTRL, FAMILY_ID, 1]),
                rng.getrandbits(16),
            ]
        )
    elif kind == "nlmsg_flags":
        value = current ^ rng.choice([NLM_F_CAPPED, NLM_F_ACK_TLVS, 1 << rng.randrange(16)])
    else:
        value = interesting_u32(rng, current, len(data) - offset)
    data[offset : offset + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


def attribute(nla_type: int, value: bytes) -> bytes:
    return _NLATTR.pack(4 + len(value), nla_type & 0xFFFF) + value + bytes(-len(value) % 4)


def random_value(rng: random.Random, depth: int) -> bytes:
    choice = rng.randrange(8)
    if choice == 0 and depth < 3:
        return b"".join(random_attribute(rng, depth + 1) for _ in range(rng.randint(0, 4)))
    if choice == 1:
        return rng.randbytes(rng.choice([0, 1, 2, 4, 8, 12, 16]))
    if choice == 2:
        text = random_text(rng).encode("utf-8", "surrogateescape")
        return text + (b"\x00" if rng.random() < 0.7 else b"")
    if choice == 3:  # a summary alert's struct: a count, then 12-byte drop points
        entries = rng.randint(0, 3)
        claimed = entries if rng.random() < 0.8 else rng.randint(0, 5)
        return struct.pack("<I", claimed) + rng.randbytes(12 * entries)
    return random_bytes(rng, 0, 24)


def random_attribute(rng: random.Random, depth: int = 0) -> bytes:
    kind = rng.randrange(26) if rng.random() < 0.85 else rng.getrandbits(14)
    if rng.random() < 0.2:
        kind |= rng.choice([NLA_F_NESTED, NLA_F_NET_BYTEORDER])
    return attribute(kind, random_value(rng, depth))


def random_message(rng: random.Random, family_id: int) -> bytes:
    """A netlink message of any type, with a random attribute tree or body."""
    nl_type = rng.choice([family_id, family_id, NLMSG_ERROR, NLMSG_DONE, GENL_ID_CTRL, 1, 0x21])
    flags = rng.choice([0, NLM_F_CAPPED, NLM_F_ACK_TLVS, NLM_F_CAPPED | NLM_F_ACK_TLVS, 2])
    seq, pid = rng.getrandbits(32), rng.choice([0, rng.getrandbits(32)])
    if nl_type == NLMSG_ERROR:
        echoed_body = random_bytes(rng, 0, 24)
        echoed = _NLMSGHDR.pack(16 + len(echoed_body), family_id, 5, seq, 0)
        body = struct.pack("<i", rng.choice([0, -1, -11, -16, -95, rng.randint(-(2**31), 0)]))
        body += echoed if flags & NLM_F_CAPPED else echoed + echoed_body
        if flags & NLM_F_ACK_TLVS:
            body += b"".join(random_attribute(rng) for _ in range(rng.randint(0, 3)))
    elif nl_type == NLMSG_DONE:
        body = random_bytes(rng, 0, 8)
    else:
        cmd = rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0, rng.getrandbits(8)])
        body = bytes([cmd, 2, 0, 0])
        body += b"".join(random_attribute(rng) for _ in range(rng.randint(0, 8)))
    return _NLMSGHDR.pack(16 + len(body), nl_type, flags, seq, pid) + body


def random_datagram(rng: random.Random, family_id: int) -> bytes:
    parts = [random_message(rng, family_id) for _ in range(rng.randint(1, 3))]
    data = b"".join(part + bytes(-len(part) % 4) for part in parts)
    if rng.random() < 0.3:
        data = data[: len(data) - (-len(parts[-1]) % 4)]
    return data


def headed_noise(rng: random.Random, family_id: int) -> bytes:
    """A consistent netlink header over random bytes: noise that gets past the framing."""
    body = random_bytes(rng, 0, 64)
    nl_type = rng.choice([NLMSG_ERROR, NLMSG_DONE, GENL_ID_CTRL, family_id, 1])
    if nl_type in (GENL_ID_CTRL, family_id):
        body = bytes([rng.randint(0, 11), 2, 0, 0]) + body
    flags = rng.choice([0, NLM_F_CAPPED, NLM_F_ACK_TLVS, NLM_F_CAPPED | NLM_F_ACK_TLVS])
    return _NLMSGHDR.pack(16 + len(body), nl_type, flags, 0, 0) + body


def random_alert(rng: random.Random, payloads: Sequence[tuple[int | None, bytes]]) -> PacketAlert:
    hardware = rng.random() < 0.3
    proto, payload = rng.choice(payloads)
    port = InPort(
        ifindex=maybe(rng, rng.choice([1, 2, 3, rng.getrandbits(32)])),
        name=maybe(rng, random_text(rng), 0.5 if hardware else 0.1),
        unknown_attributes=tuple(
            RawAttribute(rng.randrange(2, 200), random_bytes(rng, 0, 8))
            for _ in range(rng.choice([0, 0, 0, 1]))
        ),
    )
    return PacketAlert(
        origin=1 if hardware else rng.choice([0, 0, 0, 2]),
        pc=None if hardware else maybe(rng, rng.getrandbits(64)),
        symbol=None if hardware else maybe(rng, random_text(rng).replace("\x00", "")),
        reason=maybe(rng, random_text(rng).replace("\x00", "")),
        in_port=maybe(rng, port),
        timestamp_ns=maybe(rng, rng.choice([0, 1_605_572_811_123_456_789, rng.getrandbits(64)])),
        proto=maybe(rng, proto if proto is not None else rng.getrandbits(16)),
        payload=maybe(rng, payload),
        orig_len=maybe(rng, rng.choice([len(payload), rng.getrandbits(32)])),
        hw_trap_group_name=maybe(rng, random_text(rng).replace("\x00", ""), 0.9 * hardware),
        hw_trap_name=maybe(rng, random_text(rng).replace("\x00", ""), 0.9 * hardware),
        flow_action_cookie=maybe(rng, random_bytes(rng, 0, 12), 0.2 * hardware),
        unknown_attributes=tuple(
            RawAttribute(rng.randrange(24, 400), random_bytes(rng, 0, 8))
            for _ in range(rng.choice([0, 0, 0, 1, 2]))
        ),
    )


def built_message(rng: random.Random, family_id: int, payloads: Sequence[Any]) -> bytes:
    """A well-formed message from :mod:`netdm.proto.encode` with random values."""
    choice = rng.randrange(10)
    seq = rng.getrandbits(32)
    if choice <= 3:
        return encode.build_packet_alert(
            family_id, random_alert(rng, payloads), pad_u64=rng.random() < 0.3
        )
    if choice == 4:
        points = [DropPoint(rng.getrandbits(64), rng.getrandbits(32)) for _ in range(3)]
        entries = [
            HardwareEntry(random_text(rng).replace("\x00", ""), rng.getrandbits(32))
            for _ in range(rng.randint(0, 2))
        ]
        return encode.build_summary_alert(family_id, points[: rng.randint(0, 3)], entries)
    if choice == 5:
        reply = ConfigReply(seq, maybe(rng, rng.randint(0, 1)), maybe(rng, 128), maybe(rng, 1000))
        return encode.build_config_new(family_id, reply)
    if choice == 6:
        stats = StatsReply(seq, maybe(rng, rng.getrandbits(64)), maybe(rng, rng.getrandbits(20)))
        return encode.build_stats_new(family_id, stats, pad_u64=rng.random() < 0.5)
    if choice == 7:
        request = encode.build_start(family_id, seq)
        return encode.build_ack(
            seq,
            rng.getrandbits(32),
            request,
            rng.choice([0, -16, -11, -1]),
            maybe(rng, random_text(rng).replace("\x00", ""), 0.5),
            maybe(rng, rng.randint(0, 64), 0.3),
        )
    if choice == 8:
        info = FamilyInfo(
            seq, family_id, "NET_DM", 2, 0, 23, (1, 2, 3, 8), {"events": rng.randint(1, 20)}
        )
        return encode.build_family_reply(info)
    return rng.choice(
        [
            encode.build_done(seq),
            encode.build_getfamily("NET_DM", seq),
            encode.build_config(family_id, seq, alert_mode=1, trunc_len=rng.getrandbits(16)),
            encode.build_stop(family_id, seq, hw=True),
            encode.build_config_get(family_id, seq),
            encode.build_stats_get(family_id, seq),
        ]
    )


# =========================================================================== packet headers


def ethernet(ethertype: int, tags: int = 0, zero: bool = False) -> bytes:
    head = bytes(12) if zero else bytes.fromhex("020000000002020000000001")
    for index in range(tags):
        head += struct.pack("!HH", 0x88A8 if index == 0 and tags > 1 else 0x8100, 10 + index)
    return head + struct.pack("!H", ethertype)


def transport(rng: random.Random, protocol: int) -> bytes:
    if protocol == 6:
        offset = rng.choice([5, 5, 6, 8, 15, 2])
        options = rng.randbytes(max(0, offset - 5) * 4)
        return (
            struct.pack(
                "!HHIIBBHHH",
                rng.getrandbits(16),
                rng.choice([80, 443, 22]),
                rng.getrandbits(32),
                rng.getrandbits(32),
                offset << 4,
                rng.getrandbits(8),
                65535,
                0,
                0,
            )
            + options
        )
    if protocol == 17:
        return struct.pack("!HHHH", rng.getrandbits(16), rng.choice([9, 53]), 8, 0)
    if protocol in (1, 58):
        return bytes([rng.choice([0, 3, 8, 11, 128, 129, 135, 1, 255]), rng.randrange(16), 0, 0])
    return rng.randbytes(8)


def ipv4(rng: random.Random, protocol: int, body: bytes) -> bytes:
    ihl = rng.choice([5, 5, 5, 6, 15, 4])
    fragment = rng.choice([0, 0, 0, 0x2000, 185, 0x2000 | 185])
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl,
        0,
        20 + len(body),
        rng.getrandbits(16),
        fragment,
        64,
        protocol,
        0,
        bytes([127, 0, 0, 1]),
        rng.randbytes(4),
    )
    return header + rng.randbytes(max(0, ihl - 5) * 4) + body


def ipv6(rng: random.Random, protocol: int, body: bytes) -> bytes:
    chain = b""
    next_header = protocol
    for extension in rng.sample([0, 43, 60, 44], rng.choice([0, 0, 1, 2])):
        if extension == 44:
            piece = struct.pack("!BBHI", next_header, 0, rng.choice([0, 1, 8 * 185]), 7)
        else:
            piece = bytes([next_header, 0]) + bytes(6)
        chain = piece + chain
        next_header = extension
    addresses = rng.choice([bytes(15) + b"\x01", bytes(10) + b"\xff\xff" + rng.randbytes(4)])
    header = struct.pack(
        "!IHBB16s16s", 0x60000000, len(chain) + len(body), next_header, 64, addresses, addresses
    )
    return header + chain + body


def random_frame(rng: random.Random) -> tuple[int | None, bytes]:
    """(proto, payload): a synthetic frame of some kind, its EtherType usually given."""
    kind = rng.randrange(6)
    protocol = rng.choice([6, 17, 1, 58, 47, 132])
    if kind in (0, 1):
        ethertype, packet = 0x0800, ipv4(rng, protocol, transport(rng, protocol))
    elif kind in (2, 3):
        ethertype, packet = 0x86DD, ipv6(rng, protocol, transport(rng, protocol))
    elif kind == 4:
        ethertype = 0x0806
        hardware = rng.choice([1, 1, 6])
        packet = struct.pack("!HHBBH", hardware, 0x0800, 6, 4, rng.choice([1, 2, 3, 9]))
        packet += rng.randbytes(20)
    else:
        ethertype, packet = rng.choice([0x88CC, 0x8847, 0x0842, 0x1234, 0x05DC]), rng.randbytes(30)
    bare = rng.random() < 0.2
    frame = packet if bare else ethernet(ethertype, rng.choice([0, 0, 1, 2]), rng.random() < 0.3)
    frame = frame if bare else frame + packet
    proto = rng.choice([ethertype, ethertype, ethertype, 0, None, rng.getrandbits(16)])
    return proto, frame


# =========================================================================== captures


def capture_blocks(data: bytes) -> tuple[str, str, list[tuple[int, int, int]]]:
    """(format, byte order, [(offset, length, type)]): the blocks or records a walk frames.

    Classic pcap records have type -1; the file header is the first entry
    (type -2).  Best effort on damaged bytes: the walk stops where framing does.
    """
    if len(data) >= 24 and data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        order = "little"
    elif len(data) >= 24 and data[:4] in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        order = "big"
    else:
        return _pcapng_blocks(data)
    u32 = _U32[order]
    blocks = [(0, 24, -2)]
    offset = 24
    while len(data) - offset >= 16:
        length = 16 + u32.unpack_from(data, offset + 8)[0]
        if offset + length > len(data):
            break
        blocks.append((offset, length, -1))
        offset += length
    return "pcap", order, blocks


def _pcapng_blocks(data: bytes) -> tuple[str, str, list[tuple[int, int, int]]]:
    order = "big" if data[8:12] == b"\x1a\x2b\x3c\x4d" else "little"
    header = struct.Struct(("<" if order == "little" else ">") + "II")
    blocks = []
    offset = 0
    while len(data) - offset >= 12:
        block_type, length = header.unpack_from(data, offset)
        if length < 12 or length % 4 or offset + length > len(data):
            break
        blocks.append((offset, length, block_type))
        offset += length
    return "pcapng", order, blocks


# Field offsets inside a block that mutations aim at, by block type (pcapng) or kind (pcap).
_PCAPNG_FIELDS = {
    0x0A0D0D0A: [(8, 4), (12, 2), (14, 2), (16, 4), (20, 4)],  # SHB: BOM, version, section len
    1: [(8, 2), (10, 2), (12, 4)],  # IDB: linktype, reserved, snaplen
    6: [(8, 4), (12, 4), (16, 4), (20, 4), (24, 4), (28, 2), (42, 2)],  # EPB (+ cooked header)
    5: [(8, 4), (12, 4), (16, 4)],  # ISB
    3: [(8, 4)],  # SPB
    2: [(8, 2), (10, 2), (20, 4), (24, 4)],  # PB
}
_PCAP_HEADER_FIELDS = [(0, 4), (4, 2), (6, 2), (16, 4), (20, 4)]
_PCAP_RECORD_FIELDS = [(0, 4), (4, 4), (8, 4), (12, 4), (16, 2), (30, 2)]
_BLOCK_TYPES = [1, 2, 3, 4, 5, 6, 10, 0xBAD, 0x40000BAD, 0x0A0D0D0A, 0xDEADBEEF]
_PCAP_MAGICS = [0xA1B2C3D4, 0xA1B23C4D, 0xD4C3B2A1, 0x4D3CB2A1, 0x0A0D0D0A, 0]


def mutate_capture(
    rng: random.Random, data: bytearray, donors: Sequence[tuple[str, bytes, list[Any]]]
) -> None:
    """One change that knows about blocks and records (or, sometimes, a blind one)."""
    fmt, order, blocks = capture_blocks(bytes(data))
    choice = rng.randrange(10)
    if not blocks or choice == 0:
        mutate_bytes(rng, data, [donor for _, donor, _ in donors])
        return
    offset, length, block_type = rng.choice(blocks)
    u32 = _U32[order]
    if choice == 1:  # cut at or near a boundary
        cut = offset + rng.choice([0, length, length - 4, 4, 8, 12, 1, rng.randrange(length + 1)])
        del data[max(0, cut) :]
    elif choice in (2, 3):  # a length field
        if fmt == "pcapng":
            at = rng.choice([offset + 4, offset + length - 4])
        else:
            at = offset + (16 if block_type == -2 else rng.choice([8, 12]))
        current = u32.unpack_from(data, at)[0]
        data[at : at + 4] = u32.pack(interesting_u32(rng, current, len(data) - offset) & 0xFFFFFFFF)
    elif choice == 4:  # another field of the block
        if fmt == "pcapng":
            fields = _PCAPNG_FIELDS.get(block_type, [(8, 4)]) + [(0, 4)]
        else:
            fields = _PCAP_HEADER_FIELDS if block_type == -2 else _PCAP_RECORD_FIELDS
        at, size = rng.choice(fields)
        at += offset
        if at + size > offset + length:
            return
        if at == offset and fmt == "pcapng":
            value = rng.choice(_BLOCK_TYPES)
        elif at == 0 and fmt == "pcap":
            value = rng.choice(_PCAP_MAGICS)
        else:
            value = interesting_u32(rng, 0, length)
        packer = u32 if size == 4 else _U16[order]
        data[at : at + size] = packer.pack(value & ((1 << (8 * size)) - 1))
    elif choice == 5:  # an option's code or length, or any u16/u32 inside the block
        at = offset + 4 * rng.randrange(2, max(3, length // 4))
        if at + 4 <= len(data):
            if rng.random() < 0.5:
                data[at + 2 : at + 4] = _U16[order].pack(interesting_u32(rng, 0, length) & 0xFFFF)
            else:
                data[at : at + 2] = _U16[order].pack(rng.choice([0, 1, 2, 3, 4, 9, 14, 0xFFFF]))
    elif choice == 6:  # delete a block
        del data[offset : offset + length]
    elif choice == 7:  # duplicate a block, here or elsewhere
        target, _, _ = rng.choice(blocks)
        data[target:target] = data[offset : offset + length]
    elif choice == 8:  # swap with another block
        other, other_length, _ = rng.choice(blocks)
        if other > offset + length:
            first, second = (
                bytes(data[offset : offset + length]),
                bytes(data[other : other + other_length]),
            )
            data[other : other + other_length] = first
            data[offset : offset + length] = second
    else:  # a block from another capture (or a pcap record in a pcapng, and so on)
        _, donor, donor_blocks = rng.choice(donors)
        if donor_blocks:
            start, size, _ = rng.choice(donor_blocks)
            data[offset:offset] = donor[start : start + size]


def pcap_copy(data: bytes, *, big_endian: bool = False) -> bytes:
    """The records of a capture rewritten as a classic pcap (by CaptureWriter, or swapped)."""
    stream = io.BytesIO()
    writer = CaptureWriter(stream, format="pcap")
    for record in CaptureReader(io.BytesIO(data)):
        writer.write(record.data, record.timestamp_ns, outgoing=bool(record.outgoing))
    writer.close()
    little = stream.getvalue()
    if not big_endian:
        return little
    # Every header field swapped; the cooked header's protocol (host order) too; data as is.
    header = struct.unpack_from("<IHHiIII", little)
    swapped = bytearray(struct.pack(">IHHiIII", *header))
    offset = 24
    while offset < len(little):
        seconds, fraction, caplen, length = struct.unpack_from("<IIII", little, offset)
        record = bytearray(little[offset + 16 : offset + 16 + caplen])
        record[14:16] = record[14:16][::-1]
        swapped += struct.pack(">IIII", seconds, fraction, caplen, length) + record
        offset += 16 + caplen
    return bytes(swapped)


# =========================================================================== seeds


@dataclass
class Seeds:
    """What inputs grow from: real recordings and messages built from the schema."""

    datagrams: list[tuple[int, bytes]]
    payloads: list[tuple[int | None, bytes]]
    captures: list[tuple[str, bytes, list[Any]]]  # (name, bytes, blocks)
    symbols: SymbolTable

    @classmethod
    def load(cls, rng: random.Random, built: int) -> Seeds:
        datagrams: list[tuple[int, bytes]] = []
        payloads: list[tuple[int | None, bytes]] = []
        captures: list[tuple[str, bytes, list[Any]]] = []
        symbol_text = ""
        paths = sorted(glob.glob(str(CAPTURES / "*.pcapng")) + glob.glob(str(CAPTURES / "*.pcap")))
        for path in paths:
            data = Path(path).read_bytes()
            name = Path(path).name
            captures.append((name, data, capture_blocks(data)[2]))
            symbol_text += read_symbols(io.BytesIO(data))
            for record in read_capture(io.BytesIO(data)):
                datagrams.append((FAMILY_ID, record.data))
                try:
                    events = _decode_seed(record.data, FAMILY_ID)
                except ProtocolError:
                    continue
                payloads += [
                    (event.proto, event.payload)
                    for event in events
                    if isinstance(event, PacketAlert) and event.payload
                ]
            if name.endswith(".pcapng") and "control" not in name:
                for big_endian in (False, True):
                    copy = pcap_copy(data, big_endian=big_endian)
                    label = f"{name} as {'big-endian ' if big_endian else ''}pcap"
                    captures.append((label, copy, capture_blocks(copy)[2]))
        payloads = sorted(set(payloads), key=lambda item: (item[0] or 0, item[1]))
        payloads += [random_frame(rng) for _ in range(max(50, built // 4))]
        for _ in range(built):
            family_id = rng.choice([FAMILY_ID, FAMILY_ID, 0x11, 0xFFFF])
            count = rng.choice([1, 1, 1, 2, 3])
            parts = [built_message(rng, family_id, payloads) for _ in range(count)]
            datagrams.append((family_id, b"".join(part + bytes(-len(part) % 4) for part in parts)))
        symbols = SymbolTable.from_kallsyms_text(symbol_text, source_description="the captures")
        return cls(datagrams, payloads, captures, symbols)


# =========================================================================== checks


def resolve_ifname(ifindex: int) -> str | None:
    """An interface-name resolver as odd as a real one can be."""
    if ifindex == 1:
        return "lo"
    if ifindex == 2:
        return "eth\x1b[31m0 \u202e"
    if ifindex == 3:
        raise OSError("no such device")
    return None


def reference_json_line(alert: PacketAlert, symbols: SymbolTable, encoding: str) -> str:
    """``packet_json_line`` as first written: ``json.dumps`` of :func:`packet_to_json`."""
    record = packets.packet_to_json(
        alert,
        resolve_ifname=resolve_ifname,
        symbols=symbols,
        payload_encoding=encoding,  # type: ignore[arg-type]
    )
    line = json.dumps(record, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return line.replace("\x7f", "\\u007f")


def check_rendering(alert: PacketAlert, symbols: SymbolTable, rng: random.Random) -> None:
    """Every per-packet view of ``alert``: no exception, terminal safe, JSON as specified."""
    text = packets.format_packet_line(alert, resolve_ifname=resolve_ifname, symbols=symbols)
    expect(text.isprintable(), "contract", lambda: f"line not terminal safe: {text!r}")
    verbose = packets.format_packet_verbose(
        alert, resolve_ifname=resolve_ifname, symbols=symbols, nanoseconds=True
    )
    for line in verbose:
        expect(line.isprintable(), "contract", lambda: f"verbose not safe: {line!r}")  # noqa: B023
    encoding = rng.choice(["hex", "base64"])
    fast = packets.packet_json_line(
        alert,
        resolve_ifname=resolve_ifname,
        symbols=symbols,
        payload_encoding=encoding,  # type: ignore[arg-type]
    )
    reference = reference_json_line(alert, symbols, encoding)
    expect(fast == reference, "disagreement", lambda: f"JSON line {fast!r} != {reference!r}")
    expect(fast.isascii() and "\n" not in fast, "contract", "JSON line not one ASCII line")
    decoded = json.loads(fast)
    if alert.payload is not None and encoding == "base64":
        expect(base64.b64decode(decoded["payload"]) == alert.payload, "contract", "payload")


Outcome = tuple[str, Any]


def _full(data: bytes, family_id: int) -> Outcome:
    return _decoded(lambda datagram: decode_datagram(datagram, family_id), data)


def _decoded(decode: Callable[[bytes], list[Any]], data: bytes) -> Outcome:
    try:
        return ("events", decode(data))
    except ProtocolError as error:
        return ("error", (error.offset, str(error)))


def _lazy(scan: Callable[[bytes], tuple[DropSite, ...] | None], data: bytes) -> Outcome:
    try:
        sites = scan(data)
    except ProtocolError as error:
        return ("error", (error.offset, str(error)))
    return ("none", None) if sites is None else ("sites", sites)


class DatagramTarget:
    """decode_datagram, scan_drop_sites, DropSiteScanner, the reference and the renderers."""

    name = "datagram"

    def __init__(self, seeds: Seeds, reference_every: int, render_every: int) -> None:
        self.seeds = seeds
        self.donors = [data for _, data in seeds.datagrams]
        self.reference_every = reference_every
        self.render_every = render_every
        # Per family: the long-lived shape caches (the lazy scanner and the full decoder's)
        # and the datagrams they have seen.
        self.scanners: dict[int, tuple[DropSiteScanner, PacketAlertDecoder, list[bytes]]] = {}
        self.alert_inputs = 0
        self.sub = collections.Counter[str]()

    def generate(self, rng: random.Random) -> tuple[bytes, int]:
        roll = rng.random()
        if roll < 0.08:
            family_id = rng.choice([FAMILY_ID, rng.randint(0x11, 0xFFFF)])
            return random_datagram(rng, family_id), family_id
        if roll < 0.11:
            family_id = rng.choice([FAMILY_ID, rng.randint(0x11, 0xFFFF)])
            return headed_noise(rng, family_id), family_id
        if roll < 0.12:
            return random_bytes(rng, 0, 128), rng.choice([FAMILY_ID, 0, 0x10])
        family_id, seed = rng.choice(self.seeds.datagrams)
        data = bytearray(seed)
        if roll < 0.45:  # look-alikes: only values change, so the scanner's shapes are hit
            for _ in range(rng.randint(1, 4)):
                if data:
                    data[rng.randrange(len(data))] = rng.getrandbits(8)
        elif roll < 0.5:
            data += rng.choice(self.donors)  # one more message behind (or not quite)
        else:
            for _ in range(rng.choice([1, 1, 2, 3, 5])):
                mutate_datagram(rng, data, self.donors)
        if rng.random() < 0.03:
            family_id = rng.choice([0, 0x10, 0x11, rng.getrandbits(16)])
        return bytes(data), family_id

    def check(self, case: tuple[bytes, int], index: int, rng: random.Random) -> str:
        data, family_id = case
        full = _full(data, family_id)
        lazy = _lazy(lambda datagram: scan_drop_sites(datagram, family_id), data)
        only_alerts = full[0] == "events" and all(isinstance(e, PacketAlert) for e in full[1])
        if lazy[0] == "error":
            expect(lazy == full, "disagreement", lambda: f"scan_drop_sites {lazy} != {full}")
        elif lazy[0] == "sites":
            expect(only_alerts, "disagreement", lambda: f"scan_drop_sites gave sites, {full}")
            sites = tuple(DropSite.of(alert) for alert in full[1])
            expect(lazy[1] == sites, "disagreement", lambda: f"sites {lazy[1]} != {sites}")
        else:
            expect(not only_alerts, "disagreement", "scan_drop_sites gave up on packet alerts")
        scanner, alert_decoder, history = self._scanner(family_id)
        history.append(data)
        cached = _lazy(scanner.scan, data)
        expect(cached == lazy, "scanner", lambda: f"DropSiteScanner {cached} != {lazy}")
        remembered = _decoded(alert_decoder.decode, data)
        expect(
            remembered == full, "scanner", lambda: f"PacketAlertDecoder {remembered} != {full}"
        )
        self.sub[f"scan:{lazy[0]}"] += 1
        if index % self.reference_every == 0:
            self._check_reference(data, family_id, full)
        alerts = [e for e in full[1] if isinstance(e, PacketAlert)] if full[0] == "events" else []
        if alerts:
            self.alert_inputs += 1
            if self.alert_inputs % self.render_every == 0:
                for alert in alerts[:3]:
                    check_rendering(alert, self.seeds.symbols, rng)
                    self.sub["rendered alerts"] += 1
        if full[0] == "error":
            return "ProtocolError"
        return "events" if full[1] else "no events"

    def _check_reference(self, data: bytes, family_id: int, full: Outcome) -> None:
        try:
            reference: Outcome = ("events", decode_datagram_reference(data, family_id))
        except ProtocolError as error:
            reference = ("error", error.offset)
        mine = full if full[0] == "events" else ("error", full[1][0])
        expect(mine == reference, "disagreement", lambda: f"reference {reference} != {mine}")
        self.sub["reference:" + reference[0]] += 1

    def _scanner(
        self, family_id: int
    ) -> tuple[DropSiteScanner, PacketAlertDecoder, list[bytes]]:
        entry = self.scanners.get(family_id)
        if entry is None or len(entry[2]) >= SCANNER_RESET_EVERY:
            if len(self.scanners) >= 64:
                self.scanners.clear()
            entry = (DropSiteScanner(family_id), PacketAlertDecoder(family_id), [])
            self.scanners[family_id] = entry
        return entry

    def context(self, case: tuple[bytes, int]) -> dict[str, Any]:
        """What a saved failure needs besides the data: the family and the scanner's past."""
        data, family_id = case
        history = self.scanners.get(family_id, (None, None, []))[2]
        return {
            "family_id": family_id,
            "scanner_history": [item.hex() for item in history[:-1] if item is not data],
        }


class HeadersTarget:
    """describe_packet, sampled against the construct reference and rendered in an alert."""

    name = "headers"

    def __init__(self, seeds: Seeds, reference_every: int, render_every: int) -> None:
        self.seeds = seeds
        self.donors = [payload for _, payload in seeds.payloads]
        self.reference_every = reference_every
        self.render_every = render_every
        self.sub = collections.Counter[str]()

    def generate(self, rng: random.Random) -> tuple[bytes, int | None]:
        roll = rng.random()
        if roll < 0.1:
            return random_frame(rng)[1], rng.choice([0x0800, 0x86DD, 0x0806, 0, None])
        if roll < 0.12:
            return random_bytes(rng, 0, 80), rng.choice([0x0800, 0x86DD, 0x0806, 0x8100, 0, None])
        proto, seed = rng.choice(self.seeds.payloads)
        payload = bytearray(seed)
        for _ in range(rng.choice([1, 1, 2, 3])):
            if rng.random() < 0.25:
                del payload[rng.randrange(len(payload) + 1) :]  # trunc_len
            else:
                mutate_bytes(rng, payload, self.donors)
        if rng.random() < 0.15:
            proto = rng.choice([0, None, 0x0800, 0x86DD, 0x0806, 0x8100, 0x88A8, 0x05FF, 0x0600])
        return bytes(payload), proto

    def check(self, case: tuple[bytes, int | None], index: int, rng: random.Random) -> str:
        payload, proto = case
        headers = describe_packet(proto, payload)
        expect(isinstance(headers, PacketHeaders), "contract", "describe_packet gave no headers")
        if index % self.reference_every == 0:
            try:
                check_with_construct(proto, payload, headers)
                problem = None
            except AssertionError as error:
                problem = repr(error.args)
            expect(problem is None, "disagreement", lambda: f"{headers}: {problem}")
            self.sub["reference"] += 1
        if index % self.render_every == 0:
            alert = random_alert(rng, [(proto, payload)])
            check_rendering(alert, self.seeds.symbols, rng)
            self.sub["rendered alerts"] += 1
        return f"{headers.l3 or 'no l3'}{', notes' if headers.notes else ''}"

    def context(self, case: tuple[bytes, int | None]) -> dict[str, Any]:
        return {"proto": case[1]}


CaptureOutcome = tuple[list[CaptureRecord], str | None, int, list[str], bool]


def read_all(source: bytes | str, *, keep_going: bool, fast: bool) -> CaptureOutcome:
    """(records, (offset, reason) of the error, bad_records, problems, failed at open).

    ``source``: the bytes (read from memory) or a path (read as the CLI reads a file).
    """
    records: list[CaptureRecord] = []
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        reader = CaptureReader(stream, keep_going=keep_going, _fast=fast)
    except CaptureError as error:
        return records, (error.offset, error.reason), 0, [], True
    with reader:
        try:
            for record in reader:
                records.append(record)
        except CaptureError as error:
            failure = (error.offset, error.reason)
            return records, failure, reader.bad_records, list(reader.problems), False
    return records, None, reader.bad_records, list(reader.problems), False


class CaptureTarget:
    """CaptureReader (fast and general, strict and keep_going), read_symbols, and replays."""

    name = "capture"

    def __init__(self, seeds: Seeds, replay_every: int, scratch: Path) -> None:
        self.seeds = seeds
        self.replay_every = replay_every
        self.sub = collections.Counter[str]()
        self.path = str(scratch / "fuzzed-capture")  # rewritten for every input

    def generate(self, rng: random.Random) -> bytes:
        _, seed, _ = rng.choice(self.seeds.captures)
        data = bytearray(seed)
        for _ in range(rng.choice([1, 1, 1, 2, 2, 3, 4])):
            mutate_capture(rng, data, self.seeds.captures)
        return bytes(data)

    def check(self, data: bytes, index: int, rng: random.Random) -> str:
        with open(self.path, "wb") as file:  # the strict walk reads a file, as the CLI does
            file.write(data)
        strict = read_all(self.path, keep_going=False, fast=True)
        general = read_all(data, keep_going=False, fast=False)
        expect(strict == general, "disagreement", "fast and general paths differ (strict)")
        kept = read_all(data, keep_going=True, fast=True)
        expect(kept == read_all(data, keep_going=True, fast=False), "disagreement", "keep_going")
        records, error, _, _, at_open = strict
        kept_records, kept_error, bad, problems, kept_at_open = kept
        if at_open:
            expect(kept_at_open and kept_error == error, "contract", "keep_going opened it")
        else:
            expect(kept_error is None, "contract", lambda: f"keep_going raised: {kept_error}")
            expect(kept_records[: len(records)] == records, "contract", "keep_going lost records")
            expect(len(problems) <= min(bad, MAX_PROBLEMS_KEPT), "contract", "problems > bad")
            if error is None:
                expect(kept_records == records and bad == 0, "contract", "clean file, damage")
            else:
                first = f"<stream> {error[1]}"
                expect(bad >= 1 and problems[:1] == [first], "contract", "damage not counted")
        for record in kept_records:
            expect(isinstance(record.truncated, bool), "contract", "truncated")
        try:
            read_symbols(self.path)
        except CaptureError:
            self.sub["read_symbols: CaptureError"] += 1
        if index % self.replay_every == 0:
            self.sub["replay: " + replay(self.path, rng)] += 1
        if at_open:
            return "CaptureError at open"
        if error is not None:
            return f"CaptureError after records, {min(bad, 3)}{'+' if bad > 3 else ''} bad"
        return "records"

    def context(self, data: bytes) -> dict[str, Any]:
        return {}


def replay(path: str, rng: random.Random) -> str:
    """``netdm watch -r FILE`` in-process, as the CLI calls the library: finishes or NetdmError."""
    from netdm.engine.aggregate import IntervalAggregator
    from netdm.engine.session import DatagramDecoder, Pipeline, replay_capture
    from netdm.output.render import PacketPrinter, make_renderer

    out = io.StringIO()
    as_json = rng.random() < 0.5
    keep_going = rng.random() < 0.5
    per_packet = rng.random() < 0.6
    try:
        text = read_symbols(path)
        symbols = SymbolTable.from_kallsyms_text(text, source_description="fuzzed")
        renderer = make_renderer(json_lines=as_json, out=out, symbols=symbols)
        printer = PacketPrinter(out, symbols, json_lines=as_json, verbose=rng.random() < 0.2)

        def new_pipeline(decoder: DatagramDecoder, start: float) -> Pipeline:
            aggregator = IntervalAggregator(interval=rng.choice([0.5, 5.0]), start=start)
            return Pipeline(
                decoder,
                aggregator,
                renderer.interval,
                on_packet=printer.packet if per_packet else None,
            )

        renderer.start()
        result = replay_capture(lambda: read_capture(path, keep_going=keep_going), new_pipeline)
        renderer.stop(result.totals)
    except NetdmError as error:
        return type(error).__name__
    if as_json:  # every line is one JSON object (parsing a sample: a long quiet gap is
        lines = out.getvalue().splitlines()  # thousands of empty intervals, by design)
        for line in lines[:50] + lines[-50:]:
            json.loads(line)
    return "replayed"


# =========================================================================== the run


def virtual_mb() -> float:
    """This process's address space (VmSize) in MB, 0 where /proc does not tell."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def limit_address_space(limit_mb: float) -> Callable[[], None]:
    """Lower the soft RLIMIT_AS to ``limit_mb`` for the run; return what restores it.

    A decoder that asks for a huge buffer because a length field lies then
    raises MemoryError in the input that did it (a failure, saved), even where
    the kernel would have let the untouched allocation pass unnoticed.
    """
    try:
        import resource
    except ImportError:
        return lambda: None
    if limit_mb <= 0:
        return lambda: None
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    wanted = int(limit_mb * 1024 * 1024)
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft <= wanted:
        return lambda: None
    resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def reset_peak_rss() -> bool:
    """Start ``VmHWM`` afresh (Linux 4.0+), so that an earlier peak of this process (a test
    run before this one) does not count; False where that cannot be done."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def rss_kb() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process in kB, from /proc (ru_maxrss for both elsewhere)."""
    try:
        with open("/proc/self/status") as status:
            values = dict(line.split(":", 1) for line in status if line.startswith("Vm"))
        return int(values["VmRSS"].split()[0]), int(values["VmHWM"].split()[0])
    except (OSError, KeyError, ValueError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak, peak


@dataclass
class Failure:
    kind: str  # exception, disagreement, scanner, contract, slow, hang, memory
    target: str
    index: int
    message: str
    saved: str | None = None


@dataclass
class TargetReport:
    inputs: int = 0
    seconds: float = 0.0  # wall time in the checks
    cpu_seconds: float = 0.0  # CPU time in the checks (a shared machine steals only wall time)
    outcomes: dict[str, int] = field(default_factory=dict)
    checks: dict[str, int] = field(default_factory=dict)


@dataclass
class Report:
    seed: int
    inputs: int
    elapsed_seconds: float = 0.0
    cpu_seconds: float = 0.0  # the whole run's, generating inputs included
    targets: dict[str, TargetReport] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    baseline_rss_mb: float = 0.0
    virtual_limit_mb: float = 0.0
    max_rss_mb: float = 0.0
    rss_by_tenth: list[float] = field(default_factory=list)  # RSS (MB) after each tenth
    peak_rss_mb: float = 0.0
    slowest_seconds: float = 0.0
    slowest: str = ""
    failures_directory: str = ""

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass
class Options:
    inputs: int = FULL_INPUTS
    seed: int = 1
    failures: Path = DEFAULT_FAILURES
    slow_seconds: float = 1.0
    hang_seconds: float = 30.0
    max_growth_mb: float = 256.0
    max_virtual_growth_mb: float = 1024.0
    reference_every: int = 40
    render_every: int = 10
    replay_every: int = 10
    progress: bool = False


class Watchdog(threading.Thread):
    """Interrupts the main thread when one input runs longer than ``limit`` seconds.

    The main loop publishes what it is working on; on a hang the watchdog
    saves that input, then raises KeyboardInterrupt in the main thread (which
    reaches a pure-Python loop at its next bytecode).  If even that does not
    come back, it exits the process after another ``limit``.
    """

    def __init__(self, limit: float, save: Callable[[str, str, int, Any, str], str]) -> None:
        super().__init__(daemon=True, name="fuzz-watchdog")
        self.limit = limit
        self.save = save
        self.current: tuple[str, int, Any] | None = None
        self.started = 0.0
        self.fired_for: int | None = None
        self.saved_as: str | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(min(0.5, self.limit / 4)):
            current, started = self.current, self.started
            if current is None or time.perf_counter() - started < self.limit:
                continue
            target, index, case = current
            if self.fired_for == index:
                print(f"fuzz: input {index} ({target}) cannot be interrupted", file=sys.stderr)
                os._exit(3)
            message = f"still running after {self.limit} s"
            self.saved_as = self.save("hang", target, index, case, message)
            self.fired_for = index
            _thread.interrupt_main()


class Fuzzer:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.rng = random.Random(options.seed)
        built = max(200, min(3000, options.inputs // 300))
        self.seeds = Seeds.load(random.Random(options.seed ^ 0x5EED), built)
        shm = Path("/dev/shm")
        self.scratch = tempfile.TemporaryDirectory(
            prefix="netdm-fuzz-", dir=shm if shm.is_dir() and os.access(shm, os.W_OK) else None
        )
        self.targets: dict[str, Any] = {
            "datagram": DatagramTarget(self.seeds, options.reference_every, options.render_every),
            "headers": HeadersTarget(self.seeds, options.reference_every, options.render_every),
            "capture": CaptureTarget(self.seeds, options.replay_every, Path(self.scratch.name)),
        }
        self.report = Report(seed=options.seed, inputs=options.inputs)
        self.report.targets = {name: TargetReport() for name in self.targets}
        self.saved = 0
        self.peak_is_ours = False

    # ----------------------------------------------------------------------- failures

    def save(self, kind: str, target: str, index: int, case: Any, message: str) -> str:
        directory = self.options.failures
        directory.mkdir(parents=True, exist_ok=True)
        stem = directory / f"{target}-{index:07d}-{kind}"
        data = case if isinstance(case, bytes) else case[0]
        stem.with_suffix(".bin").write_bytes(data)
        description = {
            "target": target,
            "kind": kind,
            "index": index,
            "seed": self.options.seed,
            "message": message,
            "data": stem.with_suffix(".bin").name,
            **self.targets[target].context(case),
        }
        stem.with_suffix(".json").write_text(json.dumps(description, indent=1) + "\n")
        self.saved += 1
        return str(stem.with_suffix(".json"))

    def fail(self, kind: str, target: str, index: int, case: Any, message: str) -> None:
        saved = None
        if self.saved < 200:  # a systematic bug would otherwise write a million files
            saved = self.save(kind, target, index, case, message)
        self.report.failures.append(Failure(kind, target, index, message[:2000], saved))

    # ----------------------------------------------------------------------- the loop

    def run(self) -> Report:
        options, report, rng = self.options, self.report, self.rng
        names = list(TARGET_WEIGHTS)
        weights = list(TARGET_WEIGHTS.values())
        per_target_index = dict.fromkeys(names, 0)
        watchdog = Watchdog(options.hang_seconds, self.save)
        watchdog.start()
        self.peak_is_ours = reset_peak_rss()
        baseline, _ = rss_kb()
        report.baseline_rss_mb = report.max_rss_mb = baseline / 1024
        if options.max_virtual_growth_mb > 0:
            report.virtual_limit_mb = virtual_mb() + options.max_virtual_growth_mb
        restore_limit = limit_address_space(report.virtual_limit_mb)
        began, began_cpu = time.perf_counter(), time.thread_time()
        perf_counter, thread_time = time.perf_counter, time.thread_time
        try:
            for index in range(options.inputs):
                name = rng.choices(names, weights)[0]
                target = self.targets[name]
                stats = report.targets[name]
                target_index = per_target_index[name]
                per_target_index[name] += 1
                case = target.generate(rng)
                check_rng = random.Random(index)
                watchdog.current = (name, index, case)
                started = watchdog.started = perf_counter()
                cpu_started = thread_time()
                try:
                    outcome = target.check(case, target_index, check_rng)
                except Violation as violation:
                    outcome = f"FAILED ({violation.kind})"
                    self.fail(violation.kind, name, index, case, str(violation))
                except KeyboardInterrupt:
                    if watchdog.fired_for != index:
                        raise
                    outcome = "FAILED (hang)"
                    report.failures.append(
                        Failure("hang", name, index, "interrupted", watchdog.saved_as)
                    )
                except Exception:  # the point of the exercise: any other exception is a bug
                    outcome = "FAILED (exception)"
                    self.fail("exception", name, index, case, traceback.format_exc())
                cpu = thread_time() - cpu_started
                elapsed = perf_counter() - started
                watchdog.current = None
                stats.inputs += 1
                stats.seconds += elapsed
                stats.cpu_seconds += cpu
                stats.outcomes[outcome] = stats.outcomes.get(outcome, 0) + 1
                if cpu > report.slowest_seconds:
                    report.slowest_seconds = cpu
                    report.slowest = f"{name} input {index} ({len(_data(case))} bytes)"
                if cpu > options.slow_seconds and watchdog.fired_for != index:
                    # CPU time: a busy machine must not fail a run
                    self.fail("slow", name, index, case, f"took {cpu:.2f} s of CPU time")
                if index % RSS_SAMPLE_EVERY == 0:
                    self._sample_memory(index, baseline)
                    if options.progress and index % (RSS_SAMPLE_EVERY * 50) == 0 and index:
                        rate = index / (perf_counter() - began)
                        print(f"  {index:,} inputs, {rate:,.0f}/s", file=sys.stderr, flush=True)
                if (index + 1) % max(1, options.inputs // 10) == 0:
                    report.rss_by_tenth.append(round(rss_kb()[0] / 1024, 1))
        finally:
            restore_limit()
            watchdog.stopping.set()
            watchdog.join()
            self.scratch.cleanup()
        self._sample_memory(options.inputs, baseline)
        report.elapsed_seconds = time.perf_counter() - began
        report.cpu_seconds = time.thread_time() - began_cpu
        for name, target in self.targets.items():
            report.targets[name].checks = dict(sorted(target.sub.items()))
        report.failures_directory = str(options.failures)
        return report

    def _sample_memory(self, index: int, baseline: int) -> None:
        rss, peak = rss_kb()
        if not self.peak_is_ours:
            peak = rss  # the process's peak may predate this run: sampled RSS only
        report = self.report
        report.max_rss_mb = max(report.max_rss_mb, rss / 1024)
        report.peak_rss_mb = max(report.peak_rss_mb, peak / 1024)
        growth = (peak - baseline) / 1024
        if growth > self.options.max_growth_mb and not any(
            failure.kind == "memory" for failure in report.failures
        ):
            report.failures.append(
                Failure(
                    "memory",
                    "all",
                    index,
                    f"peak RSS {peak / 1024:.1f} MB is {growth:.1f} MB above the "
                    f"{baseline / 1024:.1f} MB at start, in the {RSS_SAMPLE_EVERY} inputs "
                    f"before input {index}",
                )
            )


def _data(case: Any) -> bytes:
    return case if isinstance(case, bytes) else case[0]


# =========================================================================== output


def print_report(report: Report, out: Any = sys.stdout) -> None:
    out.write(
        f"netdm fuzz: {report.inputs:,} inputs, seed {report.seed}, "
        f"{report.elapsed_seconds:.1f} s wall, {report.cpu_seconds:.1f} s CPU "
        f"({report.inputs / max(report.cpu_seconds, 1e-9):,.0f} inputs per CPU second)\n"
    )
    for name, target in report.targets.items():
        rate = target.inputs / max(target.cpu_seconds, 1e-9)
        out.write(
            f"\n{name}: {target.inputs:,} inputs, checks took {target.cpu_seconds:.1f} s CPU "
            f"({rate:,.0f}/s), {target.seconds:.1f} s wall\n"
        )
        for outcome, count in sorted(target.outcomes.items(), key=lambda item: -item[1]):
            out.write(f"  {count:>9,}  {outcome}\n")
        for check, count in target.checks.items():
            out.write(f"  {count:>9,}  ({check})\n")
    out.write(
        f"\nmemory: RSS {report.baseline_rss_mb:.1f} MB at start, max sampled "
        f"{report.max_rss_mb:.1f} MB, peak (VmHWM) {report.peak_rss_mb:.1f} MB; "
        f"address space limited to {report.virtual_limit_mb or float('inf'):,.0f} MB\n"
        f"RSS after each tenth of the run (MB): {report.rss_by_tenth}\n"
        f"slowest input: {report.slowest_seconds * 1000:.1f} ms, {report.slowest}\n"
    )
    if report.ok:
        out.write("contract held for every input: no failures\n")
        return
    out.write(f"\n{len(report.failures)} FAILURES (saved under {report.failures_directory}):\n")
    for failure in report.failures[:20]:
        first = failure.message.strip().splitlines()[-1] if failure.message.strip() else ""
        out.write(f"  {failure.kind} in {failure.target} input {failure.index}: {first[:200]}\n")
        if failure.saved:
            out.write(f"    saved: {failure.saved}\n")


# =========================================================================== replay


def replay_failure(path: Path, options: Options) -> int:
    """Run a saved input through its target again, printing what happens."""
    description = json.loads(path.read_text())
    data = (path.parent / description["data"]).read_bytes()
    seed = description.get("seed", options.seed)
    # Every sampled check runs on a replayed input (reference, rendering, replay).
    everything = Options(inputs=0, seed=seed, reference_every=1, render_every=1, replay_every=1)
    fuzzer = Fuzzer(everything)
    try:
        return _replay_case(fuzzer, description, data, path, options)
    finally:
        fuzzer.scratch.cleanup()


def _replay_case(
    fuzzer: Fuzzer, description: dict[str, Any], data: bytes, path: Path, options: Options
) -> int:
    target = fuzzer.targets[description["target"]]
    if description["target"] == "datagram":
        family_id = description["family_id"]
        scanner, alert_decoder, history = target._scanner(family_id)
        for item in description.get("scanner_history", []):  # the caches' past, as it was
            with contextlib.suppress(ProtocolError):
                scanner.scan(bytes.fromhex(item))
            with contextlib.suppress(ProtocolError):
                alert_decoder.decode(bytes.fromhex(item))
            history.append(bytes.fromhex(item))
        case: Any = (data, family_id)
    elif description["target"] == "headers":
        case = (data, description["proto"])
    else:
        case = data
    print(f"{path}: {description['kind']} in {description['target']}: {description['message']}")
    started = time.perf_counter()
    growth = options.max_virtual_growth_mb
    restore_limit = limit_address_space(virtual_mb() + growth if growth > 0 else 0)
    try:
        outcome = target.check(case, 0, random.Random(description["index"]))
    except Violation as violation:
        print(f"still failing ({violation.kind}): {violation}")
        return 1
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        restore_limit()
    print(f"passes now: {outcome} in {time.perf_counter() - started:.3f} s")
    return 0


# =========================================================================== main


def parse_arguments(argv: Sequence[str] | None) -> tuple[Options, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--inputs", type=int, help=f"how many inputs ({FULL_INPUTS:,})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_INPUTS:,} inputs")
    parser.add_argument("--seed", type=int, help="random seed (default: from the clock)")
    parser.add_argument(
        "--failures",
        type=Path,
        default=DEFAULT_FAILURES,
        help=f"failing inputs ({DEFAULT_FAILURES})",
    )
    parser.add_argument("--slow-seconds", type=float, default=1.0, help="per-input bound (1)")
    parser.add_argument("--hang-seconds", type=float, default=30.0, help="interrupt after (30)")
    parser.add_argument("--max-growth-mb", type=float, default=256.0, help="RSS bound (256)")
    parser.add_argument(
        "--max-virtual-growth-mb",
        type=float,
        default=1024.0,
        help="address-space limit above the start (1024; 0: none)",
    )
    parser.add_argument("--reference-every", type=int, default=40, help="reference sample (40)")
    parser.add_argument("--render-every", type=int, default=10, help="rendering sample (10)")
    parser.add_argument("--replay-every", type=int, default=10, help="replay sample (10)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--progress", action="store_true", help="a line every 50,000 inputs")
    parser.add_argument("--replay", type=Path, nargs="+", help="rerun saved failures")
    arguments = parser.parse_args(argv)
    inputs = arguments.inputs or (QUICK_INPUTS if arguments.quick else FULL_INPUTS)
    seed = arguments.seed if arguments.seed is not None else int(time.time()) % 1_000_000
    options = Options(
        inputs=inputs,
        seed=seed,
        failures=arguments.failures,
        slow_seconds=arguments.slow_seconds,
        hang_seconds=arguments.hang_seconds,
        max_growth_mb=arguments.max_growth_mb,
        max_virtual_growth_mb=arguments.max_virtual_growth_mb,
        reference_every=arguments.reference_every,
        render_every=arguments.render_every,
        replay_every=arguments.replay_every,
        progress=arguments.progress,
    )
    return options, arguments


def run(options: Options) -> Report:
    """The whole run in this process (what the quick test calls)."""
    return Fuzzer(options).run()


def main(argv: Sequence[str] | None = None) -> int:
    options, arguments = parse_arguments(argv)
    if arguments.replay:
        return max(replay_failure(path, options) for path in arguments.replay)
    report = run(options)
    if arguments.json:
        json.dump(asdict(report), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print_report(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
