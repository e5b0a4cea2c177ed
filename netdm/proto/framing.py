"""The fixed netlink headers as ``struct`` formats and offsets, read off the schema.

Strategy: ``nlmsghdr``, ``genlmsghdr``, ``nlattr``'s header and ``nlmsgerr``
are defined once, with construct, in :mod:`netdm.proto.schema`.  The fast
paths need them as :class:`struct.Struct` objects and byte offsets; this
module computes those from the definitions when it loads, so that a field
moved there moves here too.
"""

from __future__ import annotations

import struct
from typing import Any

from construct import FormatField, Subconstruct

from netdm.proto.constants import NLMSG_HDRLEN
from netdm.proto.schema import GenlMsgHdr, NlmsgErrBody, NlMsgHdr, nlattr


def _field(subcon: Any) -> FormatField:
    """The format field inside ``subcon`` (through renames and ``Rebuild``)."""
    while isinstance(subcon, Subconstruct):
        subcon = subcon.subcon
    assert isinstance(subcon, FormatField), subcon
    return subcon


def struct_format(definition: Any, count: int | None = None) -> str:
    """The ``struct`` format of a ``Struct`` of fixed-size fields (of its first ``count``)."""
    fields = definition.subcons[:count]
    return "<" + "".join(_field(subcon).fmtstr.lstrip("<") for subcon in fields)


def offset_of(definition: Any, name: str) -> int:
    """Where field ``name`` of a construct ``Struct`` of fixed-size fields starts."""
    offset = 0
    for subcon in definition.subcons:
        if subcon.name == name:
            return offset
        offset += _field(subcon).sizeof()
    raise KeyError(name)


NLMSGHDR = struct.Struct(struct_format(NlMsgHdr))  # len, type, flags, seq, pid
assert NLMSGHDR.size == NLMSG_HDRLEN
NLMSG_LEN_TYPE = struct.Struct(struct_format(NlMsgHdr, 2))  # nlmsg_len, nlmsg_type
NLMSG_TYPE = struct.Struct("<" + _field(NlMsgHdr.subcons[1]).fmtstr.lstrip("<"))
NLMSG_TYPE_OFFSET = offset_of(NlMsgHdr, "nlmsg_type")
NLMSG_FLAGS_OFFSET = offset_of(NlMsgHdr, "nlmsg_flags")

GENL_CMD_OFFSET = NLMSG_HDRLEN + offset_of(GenlMsgHdr, "cmd")
GENL_VERSION_OFFSET = NLMSG_HDRLEN + offset_of(GenlMsgHdr, "version")
GENL_MESSAGE_MIN = NLMSG_HDRLEN + GenlMsgHdr.sizeof()  # nlmsghdr + genlmsghdr

# nlattr: Aligned(4, Prefixed(nla_len, Struct(nla_type, value)))
_NLATTR_PREFIXED = nlattr({}).subcon
NLATTR = struct.Struct(  # nla_len, nla_type
    "<"
    + _field(_NLATTR_PREFIXED.lengthfield).fmtstr.lstrip("<")
    + _field(_NLATTR_PREFIXED.subcon.subcons[0]).fmtstr.lstrip("<")
)

# struct nlmsgerr: s32 error, then the echoed request's nlmsghdr
NLMSGERR_ERROR = struct.Struct(struct_format(NlmsgErrBody, 1))
NLMSGERR_MIN = NLMSG_HDRLEN + NLMSGERR_ERROR.size + NLMSG_HDRLEN
ECHOED_LEN_TYPE = NLMSG_LEN_TYPE  # nlmsg_len, nlmsg_type of the request echoed in nlmsgerr
