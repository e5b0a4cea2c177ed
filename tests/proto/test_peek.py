"""netdm.proto.peek: the header peeks replay uses, equal to the engine's own.

The three functions below are the engine's (``netdm/engine/session.py`` at
5108e6d: ``_is_alert``, ``_is_net_dm_command``, ``_looks_like_net_dm_alert``),
copied as they were so that the peeks can replace them: on every datagram,
generated, random or real, both give the same answer.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netdm.capture import read_capture
from netdm.proto import PacketAlert, ProtocolError, SummaryAlert, decode_datagram
from netdm.proto.constants import GENL_ID_CTRL, Cmd
from netdm.proto.peek import is_alert, is_net_dm_command, looks_like_net_dm_alert
from tests.proto.netdm_proto_strategies import datagrams

CAPTURES = Path(__file__).resolve().parents[2] / "captures"


def engine_is_alert(datagram: bytes, family_id: int) -> bool:
    return (
        len(datagram) >= 20
        and int.from_bytes(datagram[4:6], "little") == family_id
        and datagram[16] in (Cmd.ALERT, Cmd.PACKET_ALERT)
    )


def engine_is_net_dm_command(datagram: bytes, family_id: int, cmd: Cmd) -> bool:
    return (
        len(datagram) >= 20
        and int.from_bytes(datagram[4:6], "little") == family_id
        and datagram[16] == cmd
    )


def engine_looks_like_net_dm_alert(data: bytes) -> bool:
    flags_seq_pid = data[6:16]
    if flags_seq_pid != bytes(10) or data[17] != 2:
        return False
    nl_type = int.from_bytes(data[4:6], "little")
    if data[16] not in (Cmd.ALERT, Cmd.PACKET_ALERT):
        return False
    try:
        events = decode_datagram(data, nl_type)
    except ProtocolError:
        return False
    return all(isinstance(event, (SummaryAlert, PacketAlert)) for event in events)


def assert_peeks_agree(data: bytes, family_id: int) -> None:
    assert is_alert(data, family_id) == engine_is_alert(data, family_id)
    for cmd in Cmd:
        assert is_net_dm_command(data, family_id, cmd) == engine_is_net_dm_command(
            data, family_id, cmd
        )
    if len(data) >= 20:  # the engine only asks of datagrams this long (shorter: IndexError)
        assert looks_like_net_dm_alert(data) == engine_looks_like_net_dm_alert(data)
    else:
        assert not looks_like_net_dm_alert(data)


def _multicast_header(family_id: int, cmd: int, version: int) -> bytes:
    nlmsghdr = (20).to_bytes(4, "little") + family_id.to_bytes(2, "little") + bytes(10)
    return nlmsghdr + bytes([cmd, version, 0, 0])


@settings(max_examples=300, deadline=None)
@given(datagrams(raw=True))
def test_generated_datagrams_are_peeked_alike(case: tuple[int, bytes]) -> None:
    family_id, data = case
    assert_peeks_agree(data, family_id)
    assert_peeks_agree(data, family_id + 1)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(GENL_ID_CTRL - 2, 0x30),
    st.sampled_from([*Cmd, 0, 99]),
    st.sampled_from([2, 1, 3]),
    st.binary(max_size=40),
    st.integers(0, 40),
)
def test_alert_like_headers_are_peeked_alike(
    family_id: int, cmd: int, version: int, tail: bytes, cut: int
) -> None:
    """Headers that get past the first checks, cut anywhere, with anything behind them."""
    data = (_multicast_header(family_id, cmd, version) + tail)[: max(cut, 20)]
    assert_peeks_agree(data, family_id)
    assert_peeks_agree(data[:cut], family_id)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=48), st.integers(0, 0x30))
def test_random_bytes_are_peeked_alike(data: bytes, family_id: int) -> None:
    assert_peeks_agree(data, family_id)


@pytest.mark.parametrize("path", sorted(CAPTURES.glob("*.pcap*")), ids=lambda path: path.name)
def test_real_datagrams_are_peeked_alike(path: Path) -> None:
    with read_capture(path) as reader:
        records = [record.data for record in reader]
    assert records
    for data in records:
        nl_type = int.from_bytes(data[4:6], "little") if len(data) >= 6 else 0
        for family_id in (nl_type, 0, 0x1D):
            assert_peeks_agree(data, family_id)
