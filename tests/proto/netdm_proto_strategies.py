"""Hypothesis strategies for netlink messages, as the containers netdm.proto.schema builds.

Strategy: generate field values, not bytes.  Every message is described as the
nested dicts the construct definitions parse into and build from, so building
it gives well-formed bytes with every attribute combination: known attributes
in any order and repeated, unknown types, PAD anywhere, NLA_F_NESTED and
NLA_F_NET_BYTEORDER set or not, empty nests, several messages per datagram.
Mutations of those bytes then reach deep into the decoders.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from netdm.proto.constants import (
    GENL_ID_CTRL,
    NLA_F_NESTED,
    NLA_F_NET_BYTEORDER,
    NLA_TYPE_MASK,
    NLM_F_ACK_TLVS,
    NLM_F_CAPPED,
    NLMSG_DONE,
    NLMSG_ERROR,
    Attr,
    Cmd,
    CtrlAttr,
    CtrlAttrMcastGrp,
    CtrlAttrOp,
    CtrlCmd,
    NlmsgerrAttr,
    PortAttr,
    StatsAttr,
)
from netdm.proto.schema import NetlinkMessage, V36SummaryAlertMessage

Strategy = st.SearchStrategy[Any]

family_ids = st.integers(GENL_ID_CTRL + 1, 0xFFFF)
u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
u64 = st.integers(0, 0xFFFF_FFFF_FFFF_FFFF)
binary = st.binary(max_size=24)
# Strings that survive a round trip: no NUL, no lone surrogates (they do not encode).
texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=24)
_FLAG_BITS = (0, NLA_F_NESTED, NLA_F_NET_BYTEORDER, NLA_F_NESTED | NLA_F_NET_BYTEORDER)


def strings(raw: bool) -> Strategy:
    """Kernel strings; ``raw`` adds arbitrary bytes (bad UTF-8, inner NULs, no NUL)."""
    return st.one_of(texts, st.binary(max_size=24)) if raw else texts


def nla_type(kind: int) -> Strategy:
    return st.sampled_from([kind | bits for bits in _FLAG_BITS])


def attribute(kind: int | Strategy, value: Strategy) -> Strategy:
    kinds = kind if isinstance(kind, st.SearchStrategy) else nla_type(kind)
    return st.fixed_dictionaries({"nla_type": kinds, "value": value})


def unknown_attribute(known: set[int]) -> Strategy:
    """An attribute whose (masked) type the table does not name: raw bytes."""
    kinds = st.integers(0, NLA_TYPE_MASK).filter(lambda kind: kind not in known)
    return attribute(kinds.flatmap(nla_type), binary)


def pad_attribute() -> Strategy:
    return attribute(Attr.PAD, st.one_of(st.just(b""), st.binary(max_size=8)))


def attribute_list(
    values: dict[int, Strategy], *, pad: bool = True, min_size: int = 0, max_size: int = 8
) -> Strategy:
    """Attributes of a table in any order and number, with PAD and unknown types mixed in."""
    known = set(values) | ({Attr.PAD} if pad else set())
    choices = [attribute(kind, value) for kind, value in values.items()]
    choices.append(unknown_attribute(known))
    if pad:
        choices.append(pad_attribute())
    return st.lists(st.one_of(*choices), min_size=min_size, max_size=max_size)


def with_required(required: list[Strategy], extras: Strategy, *, max_extras: int = 3) -> Strategy:
    """A nest holding each required attribute at least once, shuffled among extras."""
    return st.tuples(st.tuples(*required), st.lists(extras, max_size=max_extras)).flatmap(
        lambda parts: st.permutations([*parts[0], *parts[1]])
    )


# --------------------------------------------------------------------------- NET_DM


def in_port(raw: bool) -> Strategy:
    return attribute_list(
        {PortAttr.NETDEV_IFINDEX: u32, PortAttr.NETDEV_NAME: strings(raw)}, max_size=4
    )


def stats_nest() -> Strategy:
    return attribute_list({StatsAttr.DROPPED: u64}, max_size=3)


def alert_msg() -> Strategy:
    points = st.fixed_dictionaries({"pc": u64, "count": u32})
    return st.lists(points, max_size=4).map(lambda ps: {"entries": len(ps), "points": ps})


def hw_entries(raw: bool) -> Strategy:
    values = {Attr.HW_TRAP_NAME: strings(raw), Attr.HW_TRAP_COUNT: u32}
    name, count = (attribute(kind, value) for kind, value in values.items())
    extras = st.one_of(name, count, pad_attribute(), unknown_attribute(set(values) | {Attr.PAD}))
    entry = attribute(Attr.HW_ENTRY, with_required([name, count], extras))
    others = st.one_of(pad_attribute(), unknown_attribute({Attr.HW_ENTRY, Attr.PAD}))
    return st.lists(st.one_of(entry, entry, others), max_size=4)


def net_dm_values(cmd: int, raw: bool) -> dict[int, Strategy]:
    """Value strategies for a command's attribute table (NET_DM_ATTRIBUTES in the schema)."""
    config = {Attr.ALERT_MODE: u8, Attr.TRUNC_LEN: u32, Attr.QUEUE_LEN: u32}
    trace = {Attr.SW_DROPS: st.none(), Attr.HW_DROPS: st.none()}
    tables: dict[int, dict[int, Strategy]] = {
        Cmd.ALERT: {Attr.UNSPEC: alert_msg(), Attr.HW_ENTRIES: hw_entries(raw)},
        Cmd.PACKET_ALERT: {
            Attr.ORIGIN: u16,
            Attr.PC: u64,
            Attr.SYMBOL: strings(raw),
            Attr.REASON: strings(raw),
            Attr.IN_PORT: in_port(raw),
            Attr.TIMESTAMP: u64,
            Attr.PROTO: u16,
            Attr.PAYLOAD: binary,
            Attr.ORIG_LEN: u32,
            Attr.HW_TRAP_GROUP_NAME: strings(raw),
            Attr.HW_TRAP_NAME: strings(raw),
            Attr.FLOW_ACTION_COOKIE: binary,
        },
        Cmd.CONFIG_NEW: config,
        Cmd.STATS_NEW: {Attr.STATS: stats_nest(), Attr.HW_STATS: stats_nest()},
        Cmd.CONFIG: config,
        Cmd.START: trace,
        Cmd.STOP: trace,
        Cmd.CONFIG_GET: {},
        Cmd.STATS_GET: {},
    }
    return tables[cmd]


def genl_header(cmd: int) -> Strategy:
    return st.fixed_dictionaries({"cmd": st.just(cmd), "version": u8, "reserved": u16})


def header(nlmsg_type: int) -> dict[str, Strategy]:
    return {
        "nlmsg_type": st.just(nlmsg_type),
        "nlmsg_flags": u16,
        "nlmsg_seq": u32,
        "nlmsg_pid": u32,
    }


def net_dm_message(family_id: int, raw: bool = False, cmds: Strategy | None = None) -> Strategy:
    """A NET_DM message: a known command with its table, or an unknown one with raw attributes."""
    unknown_cmds = st.one_of(st.just(0), st.integers(10, 0xFF))
    cmds = cmds if cmds is not None else st.one_of(st.sampled_from(list(Cmd)[1:]), unknown_cmds)

    def for_cmd(cmd: int) -> Strategy:
        if cmd in (Cmd.UNSPEC,) or cmd > max(Cmd):
            attributes = st.lists(st.one_of(unknown_attribute(set()), pad_attribute()), max_size=5)
        else:
            # an ALERT always carries its type-0 struct; an empty one would look like v3.6's
            attributes = attribute_list(net_dm_values(cmd, raw), min_size=cmd == Cmd.ALERT)
        body = st.fixed_dictionaries(
            {"value": st.fixed_dictionaries({"genl": genl_header(cmd), "attributes": attributes})}
        )
        return st.fixed_dictionaries({**header(family_id), "body": body})

    return cmds.flatmap(for_cmd)


# --------------------------------------------------------------------------- errors, done, ctrl


@st.composite
def error_message(draw: Any, raw: bool = False) -> dict[str, Any]:
    """NLMSG_ERROR in any of its four shapes (capped or not, extended ack or not)."""
    flags = draw(u16)
    payload = draw(st.binary(max_size=24))
    shape = flags & (NLM_F_CAPPED | NLM_F_ACK_TLVS)
    request = {
        "nlmsg_len": 16 + len(payload) if shape == NLM_F_ACK_TLVS else draw(u32),
        "nlmsg_type": draw(u16),
        "nlmsg_flags": draw(u16),
        "nlmsg_seq": draw(u32),
        "nlmsg_pid": draw(u32),
    }
    ext_ack = None
    if flags & NLM_F_ACK_TLVS:
        values = {NlmsgerrAttr.MSG: strings(raw), NlmsgerrAttr.OFFS: u32}
        ext_ack = draw(attribute_list(values, pad=False, max_size=4))
    body = {
        "error": draw(st.one_of(st.just(0), st.integers(-4095, -1), st.integers(-(2**31), 0))),
        "request": request,
        "request_payload": None if flags & NLM_F_CAPPED else payload,
        "ext_ack": ext_ack,
    }
    return {**draw(st.fixed_dictionaries(header(NLMSG_ERROR))), "nlmsg_flags": flags, "body": body}


def done_message() -> Strategy:
    return st.fixed_dictionaries({**header(NLMSG_DONE), "body": binary})


def ctrl_values(raw: bool) -> dict[int, Strategy]:
    op_values = {CtrlAttrOp.ID: u32, CtrlAttrOp.FLAGS: u32}
    op_id = attribute(CtrlAttrOp.ID, u32)
    op = with_required([op_id], st.one_of(*(attribute(k, v) for k, v in op_values.items())))
    group_values = {CtrlAttrMcastGrp.NAME: strings(raw), CtrlAttrMcastGrp.ID: u32}
    group_name, group_id = (attribute(k, v) for k, v in group_values.items())
    group = with_required([group_name, group_id], st.one_of(group_name, group_id))
    any_type = u16
    return {
        CtrlAttr.FAMILY_ID: u16,
        CtrlAttr.FAMILY_NAME: strings(raw),
        CtrlAttr.VERSION: u32,
        CtrlAttr.HDRSIZE: u32,
        CtrlAttr.MAXATTR: u32,
        CtrlAttr.OPS: st.lists(attribute(any_type, op), max_size=4),
        CtrlAttr.MCAST_GROUPS: st.lists(attribute(any_type, group), max_size=3),
    }


def ctrl_message(raw: bool = False) -> Strategy:
    """nlctrl: a NEWFAMILY reply, a GETFAMILY request, or another command (raw bytes)."""
    values = ctrl_values(raw)
    family_id, name = attribute(CtrlAttr.FAMILY_ID, u16), attribute(CtrlAttr.FAMILY_NAME, texts)
    extras = st.one_of(
        *(attribute(kind, value) for kind, value in values.items()),
        unknown_attribute(set(values)),
    )
    bodies = {
        CtrlCmd.NEWFAMILY: with_required([family_id, name], extras, max_extras=6),
        CtrlCmd.GETFAMILY: attribute_list(values, pad=False, max_size=3),
    }

    def for_cmd(cmd: int) -> Strategy:
        attributes = bodies.get(cmd, binary)
        body = st.fixed_dictionaries(
            {"value": st.fixed_dictionaries({"genl": genl_header(cmd), "attributes": attributes})}
        )
        return st.fixed_dictionaries({**header(GENL_ID_CTRL), "body": body})

    cmds = st.one_of(st.sampled_from([CtrlCmd.NEWFAMILY, CtrlCmd.GETFAMILY]), u8)
    return cmds.flatmap(for_cmd)


def other_message(family_id: int) -> Strategy:
    fixed = {NLMSG_ERROR, NLMSG_DONE, GENL_ID_CTRL, family_id}
    types = u16.filter(lambda kind: kind not in fixed)
    return types.flatmap(lambda kind: st.fixed_dictionaries({**header(kind), "body": binary}))


def any_message(family_id: int, raw: bool = False) -> Strategy:
    return st.one_of(
        net_dm_message(family_id, raw),
        net_dm_message(family_id, raw, st.sampled_from([Cmd.ALERT, Cmd.PACKET_ALERT])),
        error_message(raw),
        done_message(),
        ctrl_message(raw),
        other_message(family_id),
    )


# --------------------------------------------------------------------------- datagrams


def build_message(message: dict[str, Any], family_id: int) -> bytes:
    return bytes(NetlinkMessage.build(message, family_id=family_id))


@st.composite
def datagrams(
    draw: Any, raw: bool = False, max_messages: int = 4, v36: bool = True
) -> tuple[int, bytes]:
    """(family id, datagram): messages padded to 4, maybe a v3.6 summary alert last."""
    family_id = draw(family_ids)
    messages = draw(st.lists(any_message(family_id, raw), min_size=1, max_size=max_messages))
    parts = [build_message(message, family_id) for message in messages]
    data = b"".join(part + b"\x00" * (-len(part) % 4) for part in parts)
    if v36 and draw(st.integers(0, 9)) == 0:
        v36 = draw(net_dm_message(family_id, raw, st.just(Cmd.ALERT)))
        data += V36SummaryAlertMessage.build({**v36, "nlmsg_len": 20}, family_id=family_id)
    elif draw(st.booleans()):
        data = data[: len(data) - (-len(parts[-1]) % 4)]  # no padding after the last message
    return family_id, data


@st.composite
def mutated(draw: Any, source: Strategy) -> tuple[int, bytes]:
    """A valid datagram with a few bytes changed, cut, inserted or removed."""
    family_id, data = draw(source)
    buffer = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["byte", "u16", "truncate", "insert", "delete"]))
        at = draw(st.integers(0, max(len(buffer) - 1, 0)))
        if kind == "byte" and buffer:
            buffer[at] = draw(u8)
        elif kind == "u16" and len(buffer) >= 2:  # lengths and types are u16-sized
            at = min(at & ~1, len(buffer) - 2)
            buffer[at : at + 2] = draw(st.integers(0, 64)).to_bytes(2, "little")
        elif kind == "truncate":
            del buffer[at:]
        elif kind == "insert":
            buffer[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del buffer[at : at + draw(st.integers(1, 8))]
    return family_id, bytes(buffer)


@st.composite
def headed_noise(draw: Any) -> tuple[int, bytes]:
    """A consistent nlmsghdr (+ genl command byte) over random bytes: noise that gets inside."""
    family_id = draw(family_ids)
    kind = draw(st.sampled_from([NLMSG_ERROR, NLMSG_DONE, GENL_ID_CTRL, family_id, 1]))
    body = draw(st.binary(max_size=64))
    if kind in (GENL_ID_CTRL, family_id) and draw(st.booleans()):
        body = bytes([draw(st.integers(0, 11)), 2, 0, 0]) + body
    flags = draw(st.sampled_from([0, NLM_F_CAPPED, NLM_F_ACK_TLVS, NLM_F_CAPPED | NLM_F_ACK_TLVS]))
    head = (16 + len(body)).to_bytes(4, "little") + kind.to_bytes(2, "little")
    return family_id, head + flags.to_bytes(2, "little") + bytes(8) + body


# ------------------------------------------------- shared by the shape-cache tests

# NETDM_PROTO_SOAK=50 runs fifty times the examples (minutes): for changes to a decoder.
_SCALE = int(os.environ.get("NETDM_PROTO_SOAK", "1"))


def example_budget(examples: int) -> settings:
    return settings(
        max_examples=examples * _SCALE,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@st.composite
def packet_alert_datagrams(
    draw: Any, family_id: int | None = None, raw: bool = True, max_messages: int = 3
) -> tuple[int, bytes]:
    """(family id, datagram) of packet alerts only: every attribute mix the schema allows.

    Repeats (the last one wins), unknown types, PAD anywhere, NLA_F_NESTED and
    NLA_F_NET_BYTEORDER set or not, raw strings, several messages.
    """
    family_id = draw(family_ids) if family_id is None else family_id
    alert = net_dm_message(family_id, raw, st.just(Cmd.PACKET_ALERT))
    messages = draw(st.lists(alert, min_size=1, max_size=max_messages))
    parts = [build_message(message, family_id) for message in messages]
    data = b"".join(part + b"\x00" * (-len(part) % 4) for part in parts)
    if draw(st.booleans()):
        data = data[: len(data) - (-len(parts[-1]) % 4)]  # no padding after the last message
    return family_id, data


def same_length_variant(data: bytes, draw: Any) -> bytes:
    """``data`` with a few bytes overwritten: values, headers, lengths; the length stays."""
    buffer = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(buffer) - 1))
        if draw(st.booleans()):
            buffer[at] = draw(st.integers(0, 0xFF))
        elif len(buffer) >= 2:
            at = min(at & ~1, len(buffer) - 2)  # lengths and types are u16-sized and aligned
            buffer[at : at + 2] = draw(st.integers(0, 64)).to_bytes(2, "little")
    return bytes(buffer)
