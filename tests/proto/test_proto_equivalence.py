"""The fast decoder and the construct reference decoder agree, on good bytes and bad.

Strategy: the construct definitions in netdm.proto.schema are the format; the
struct walk in netdm.proto.decode is an optimisation of them.  For generated
well-formed datagrams both must return equal events; for mutated or random
bytes both must either return equal events or raise ProtocolError at the same
offset, and nothing else may ever escape.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from netdm_proto_strategies import datagrams, family_ids, headed_noise, mutated

from netdm.proto import ProtocolError, decode_datagram, decode_datagram_reference

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
