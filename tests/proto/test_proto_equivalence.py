"""The fast decoder and the construct reference decoder agree, on good bytes and bad.

Strategy: the construct definitions in netdm.proto.schema are the format; the
struct walk in netdm.proto.decode is an optimisation of them.  For generated
well-formed datagrams both must return equal events; for mutated or random
bytes both must either return equal events or raise ProtocolError at the same
offset, and nothing else may ever escape.  The same holds on the real
datagrams in captures/ (as recorded and mutated), and the two shape caches
(DropSiteScanner, PacketAlertDecoder) are held to the construct definition
directly, on datagrams they have and have not seen.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from netdm.capture import read_capture
from netdm.proto import FamilyInfo, ProtocolError, decode_datagram
from netdm.proto.alert_cache import PacketAlertDecoder
from netdm.proto.constants import FAMILY_NAME
from netdm.proto.decode import DropSite, DropSiteScanner
from netdm.proto.peek import looks_like_net_dm_alert, message_type
from tests.proto.netdm_proto_strategies import datagrams, family_ids, headed_noise, mutated
from tests.proto.reference_decoder import decode_datagram_reference

Outcome = tuple[str, object]

# NETDM_PROTO_SOAK=50 runs fifty times the examples (minutes): for changes to a decoder.
_SCALE = int(os.environ.get("NETDM_PROTO_SOAK", "1"))


def _budget(examples: int) -> settings:
    return settings(
        max_examples=examples * _SCALE,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


def _outcome(decode: object, data: bytes, family_id: int) -> Outcome:
    try:
        return ("events", decode(data, family_id))  # type: ignore[operator]
    except ProtocolError as error:
        return ("error", error.offset)


def assert_same(data: bytes, family_id: int) -> Outcome:
    fast = _outcome(decode_datagram, data, family_id)
    reference = _outcome(decode_datagram_reference, data, family_id)
    assert fast == reference, (data.hex(), fast, reference)
    return fast


@_budget(150)
@given(datagrams())
def test_well_formed_datagrams_decode_equally(case: tuple[int, bytes]) -> None:
    family_id, data = case
    kind, _ = assert_same(data, family_id)
    assert kind == "events"


@_budget(150)
@given(datagrams(raw=True))
def test_raw_strings_decode_equally(case: tuple[int, bytes]) -> None:
    """Strings with bad UTF-8, inner NULs or no NUL at all."""
    family_id, data = case
    kind, _ = assert_same(data, family_id)
    assert kind == "events"


@_budget(300)
@given(mutated(datagrams(raw=True, max_messages=2)))
def test_mutated_datagrams_decode_equally_or_fail_at_the_same_offset(
    case: tuple[int, bytes],
) -> None:
    family_id, data = case
    assert_same(data, family_id)


@_budget(500)
@given(headed_noise())
def test_noise_behind_a_valid_header_decodes_equally(case: tuple[int, bytes]) -> None:
    family_id, data = case
    assert_same(data, family_id)


@_budget(500)
@given(st.binary(max_size=128), family_ids)
@example(b"", 0x1C)
@example(b"\x10\x00\x00\x00" + bytes(12), 0x1C)
@example(b"\x14\x00\x00\x00\x1c\x00" + bytes(10) + b"\x01\x02\x00\x00\x01", 0x1C)
def test_random_bytes_give_events_or_protocol_error_only(data: bytes, family_id: int) -> None:
    """The h11 fuzz invariant: parse it, or raise ProtocolError, never anything else."""
    assert_same(data, family_id)


# --------------------------------------------------------------------------- real datagrams

CAPTURES = Path(__file__).resolve().parents[2] / "captures"


def _capture_family_id(records: list[bytes]) -> int:
    """NET_DM's id in a capture: from its nlctrl reply, else from its first alert."""
    for data in records:
        try:
            events = decode_datagram_reference(data, 0)
        except ProtocolError:
            continue
        for event in events:
            if isinstance(event, FamilyInfo) and event.name == FAMILY_NAME:
                return event.family_id
    return next(message_type(data) for data in records if looks_like_net_dm_alert(data))


def _real_captures() -> dict[str, tuple[int, list[bytes]]]:
    captures = {}
    for path in sorted(CAPTURES.glob("*.pcap*")):
        with read_capture(path) as reader:
            records = [record.data for record in reader]
        captures[path.name] = (_capture_family_id(records), records)
    return captures


REAL = _real_captures()


@pytest.mark.parametrize("name", REAL)
def test_real_datagrams_decode_equally(name: str) -> None:
    family_id, records = REAL[name]
    kinds = {assert_same(data, family_id)[0] for data in records}
    assert kinds == {"events"}
    for data in records[:50]:
        assert_same(data, 0)  # the family id not known yet


REAL_DATAGRAMS = [(family_id, data) for family_id, records in REAL.values() for data in records]


@_budget(300)
@given(mutated(st.sampled_from(REAL_DATAGRAMS)))
def test_mutated_real_datagrams_decode_equally(case: tuple[int, bytes]) -> None:
    family_id, data = case
    assert_same(data, family_id)


def _drop_sites_of(outcome: Outcome) -> Outcome:
    kind, value = outcome
    if kind == "error":
        return outcome
    return ("events", tuple(DropSite.of(event) for event in value))  # type: ignore[attr-defined]


def _assert_caches_agree_with_the_schema(
    decoder: PacketAlertDecoder, scanner: DropSiteScanner, data: bytes, family_id: int
) -> None:
    """The shape caches against the construct definition itself, not the fast decoder."""
    reference = _outcome(decode_datagram_reference, data, family_id)
    assert _outcome(lambda d, _: decoder.decode(d), data, family_id) == reference
    scanned = _outcome(lambda d, _: scanner.scan(d), data, family_id)
    if scanned != ("events", None):  # None: not all packet alerts, left to the full decoder
        assert scanned == _drop_sites_of(reference), data.hex()


@pytest.mark.parametrize("name", REAL)
def test_the_shape_caches_give_what_the_schema_gives_on_real_datagrams(name: str) -> None:
    family_id, records = REAL[name]
    decoder, scanner = PacketAlertDecoder(family_id), DropSiteScanner(family_id)
    for data in records + records:  # unseen, then learnt
        _assert_caches_agree_with_the_schema(decoder, scanner, data, family_id)
    if name == "packet-udp-loopback.pcapng":  # packet alerts: both caches learnt shapes
        assert decoder.memory.remembered and scanner.memory.remembered


@_budget(300)
@given(st.data())
def test_look_alikes_of_learnt_real_datagrams_give_what_the_schema_gives(
    data: st.DataObject,
) -> None:
    """A real datagram is learnt, then others like it, and unlike it, are decoded."""
    family_id, records = REAL["packet-udp-loopback.pcapng"]
    learnt = data.draw(st.sampled_from(records))
    decoder, scanner = PacketAlertDecoder(family_id), DropSiteScanner(family_id)
    _assert_caches_agree_with_the_schema(decoder, scanner, learnt, family_id)
    _, changed = data.draw(mutated(st.just((family_id, learnt))))
    _assert_caches_agree_with_the_schema(decoder, scanner, changed, family_id)
    if learnt:
        position = data.draw(st.integers(0, len(learnt) - 1))
        byte = data.draw(st.integers(0, 255))
        look_alike = learnt[:position] + bytes([byte]) + learnt[position + 1 :]
        _assert_caches_agree_with_the_schema(decoder, scanner, look_alike, family_id)
