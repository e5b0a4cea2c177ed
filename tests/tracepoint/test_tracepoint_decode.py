"""The tracepoint source's pure layer: format files, ring-buffer pages, kfree_skb records.

The fast readers (:func:`page_records`, :class:`KfreeSkbDecoder`) are proven
equal to the construct definitions: pages built *by* the construct
definitions read back as the events that built them, and any bytes at all
(mutated real-shaped pages, random records) give the same result as the
construct reference reader, or the same error at the same offset.

``data/`` holds format files copied from real kernels: the development
host's 6.18 (``/sys/kernel/tracing/events/skb/kfree_skb/format``) and
(``*-6.1.0-debian``) Debian's 6.1.0-56-amd64, booted by tests/vm/harness.py.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netdm.proto.decode import DropSite
from netdm.proto.errors import ProtocolError
from netdm.tracepoint.format import PageLayout, parse_event_format, parse_header_page
from netdm.tracepoint.ringbuffer import (
    MISSED_EVENTS,
    MISSED_STORED,
    TYPE_PADDING,
    TYPE_TIME_EXTEND,
    TYPE_TIME_STAMP,
    KfreeSkbDecoder,
    drop_site_reference,
    event_construct,
    kfree_skb_construct,
    page_header_construct,
    page_records,
    parse_page_reference,
)

DATA = Path(__file__).parent / "data"
FORMAT_FILES = sorted(DATA.glob("kfree_skb-*.format"))
HEADER_PAGE = parse_header_page((DATA / "header_page-6.18").read_text())
LAYOUT = PageLayout()


def kernel_format(name: str = "kfree_skb-6.18.format"):  # type: ignore[no-untyped-def]
    return parse_event_format((DATA / name).read_text())


# ------------------------------------------------------------------ format files


def test_real_format_files_give_the_kfree_skb_layout() -> None:
    assert FORMAT_FILES, "no format files in tests/tracepoint/data"
    for path in FORMAT_FILES:
        event = parse_event_format(path.read_text())
        assert event.name == "kfree_skb"
        assert event.event_id > 0
        location = event.field("location")
        assert location is not None and location.size == 8
        assert event.field("common_type") is not None
        reason = event.field("reason")
        if reason is not None:
            # The numbers differ between kernels (NO_SOCKET is 2 in 6.1, 3 in 6.18):
            # exactly why they are read from this kernel's format file.
            names = set(event.symbols["reason"].values())
            assert {"NOT_SPECIFIED", "NO_SOCKET", "TCP_CSUM"} <= names


def test_the_6_18_format_in_detail() -> None:
    event = kernel_format()
    assert event.event_id == 2310
    assert [(f.name, f.offset, f.size) for f in event.fields] == [
        ("common_type", 0, 2),
        ("common_flags", 2, 1),
        ("common_preempt_count", 3, 1),
        ("common_pid", 4, 4),
        ("skbaddr", 8, 8),
        ("location", 16, 8),
        ("rx_sk", 24, 8),
        ("protocol", 32, 2),
        ("reason", 36, 4),
    ]
    assert event.record_size == 40
    assert event.symbols["reason"][128] == "MAX"
    assert len(event.symbols["reason"]) == 127


def test_header_page_of_a_64_bit_kernel() -> None:
    assert PageLayout(0, 8, 8, 16, 4080) == HEADER_PAGE
    assert HEADER_PAGE.page_size == 4096


@pytest.mark.parametrize(
    "text",
    ["", "name: x\n", "ID: 3\n", "name: x\nID: 3\nformat:\n", "name: x\nID: 3\n\tfield:int a;\n"],
)
def test_what_is_not_a_format_file_is_a_protocol_error(text: str) -> None:
    with pytest.raises(ProtocolError):
        parse_event_format(text)


def test_header_page_without_commit_is_an_error() -> None:
    with pytest.raises(ProtocolError, match="commit"):
        parse_header_page("\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n")


# ------------------------------------------------------------------ pages by construct

Event = tuple[str, object]  # ("record", bytes) | ("extend", int) | ("stamp", int) | ("pad", n)

small_records = st.integers(1, 28).flatmap(
    lambda words: st.binary(min_size=words * 4, max_size=words * 4)
)
events = st.one_of(
    st.tuples(st.just("record"), small_records),
    st.tuples(st.just("big"), st.binary(min_size=0, max_size=300)),
    st.tuples(st.just("extend"), st.integers(0, 2**32 - 1)),
    st.tuples(st.just("stamp"), st.integers(0, 2**32 - 1)),
    st.tuples(st.just("pad"), st.integers(1, 20).map(lambda words: words * 4)),
)


def build_event(kind: str, value: object, delta: int) -> tuple[bytes, bytes | None]:
    """One event built by the construct definition, and the record it holds (if any)."""
    build = event_construct().build
    if kind == "record":
        assert isinstance(value, bytes)
        header = {"time_delta": delta, "type_len": len(value) // 4}
        return build({"header": header, "body": {"record": value}}), value
    if kind == "big":
        assert isinstance(value, bytes)
        header = {"time_delta": delta, "type_len": 0}
        body = {"length_plus_4": len(value) + 4, "record": value}
        return build({"header": header, "body": body}), value
    if kind in ("extend", "stamp"):
        type_len = TYPE_TIME_EXTEND if kind == "extend" else TYPE_TIME_STAMP
        key = "extend" if kind == "extend" else "stamp"
        return build(
            {"header": {"time_delta": delta, "type_len": type_len}, "body": {key: value}}
        ), None
    assert isinstance(value, int)
    header = {"time_delta": max(delta, 1), "type_len": TYPE_PADDING}
    return build({"header": header, "body": {"length": value}}), None


@st.composite
def pages(draw: st.DrawFn) -> tuple[bytes, list[bytes], bool, int | None]:
    """A page built by the construct definitions, with the records it holds."""
    data = b""
    records: list[bytes] = []
    for kind, value in draw(st.lists(events, max_size=30)):
        built, record = build_event(kind, value, draw(st.integers(0, 2**27 - 1)))
        if len(data) + len(built) > LAYOUT.data_size - 16:
            break
        data += built
        if record is not None:
            records.append(record)
    missed = draw(st.booleans())
    stored = missed and draw(st.booleans())
    commit = len(data) | (MISSED_EVENTS if missed else 0) | (MISSED_STORED if stored else 0)
    header = page_header_construct(LAYOUT).build(
        {"timestamp": draw(st.integers(0, 2**64 - 1)), "commit": commit}
    )
    missed_count = draw(st.integers(0, 2**64 - 1)) if stored else None
    tail = b"" if missed_count is None else struct.pack("<Q", missed_count)
    if draw(st.booleans()):
        # The end of a page a writer left: a null padding event (time delta 0).
        tail += event_construct().build(
            {"header": {"time_delta": 0, "type_len": TYPE_PADDING}, "body": None}
        )
    page = header + data + tail
    page += bytes(LAYOUT.page_size - len(page))
    return page, records, missed, missed_count


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(pages())
def test_pages_built_by_construct_read_back_the_same(
    case: tuple[bytes, list[bytes], bool, int | None],
) -> None:
    page, records, missed, missed_count = case
    fast = page_records(page, LAYOUT)
    reference = parse_page_reference(page, LAYOUT)
    assert fast.records == records == reference.records
    assert fast.missed_events == missed == reference.missed_events
    assert fast.missed_count == missed_count == reference.missed_count


def outcome(read, page: bytes):  # type: ignore[no-untyped-def]
    try:
        result = read(page, LAYOUT)
    except ProtocolError as error:
        return ("error", error.offset)
    return ("ok", result.records, result.missed_events, result.missed_count)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    pages(),
    st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), max_size=6),
    st.integers(0, 4096),
)
def test_damaged_pages_fail_alike(
    case: tuple[bytes, list[bytes], bool, int | None], flips: list[tuple[int, int]], cut: int
) -> None:
    page = bytearray(case[0])
    for position, value in flips:
        page[position] = value
    damaged = bytes(page[: max(cut, 0)]) if cut < 200 else bytes(page)
    assert outcome(page_records, damaged) == outcome(parse_page_reference, damaged)


@settings(max_examples=200)
@given(st.binary(min_size=0, max_size=4096))
def test_any_bytes_give_records_or_the_protocol_error(page: bytes) -> None:
    assert outcome(page_records, page) == outcome(parse_page_reference, page)


# ------------------------------------------------------------------ kfree_skb records

FORMATS = [kernel_format(path.name) for path in FORMAT_FILES]


@st.composite
def kfree_skb_records(draw: st.DrawFn):  # type: ignore[no-untyped-def]
    event = draw(st.sampled_from(FORMATS))
    values = {}
    for field in event.fields:
        bits = field.size * 8
        signed = field.signed and "*" not in field.declaration and "enum" not in field.declaration
        low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        values[field.name] = draw(st.integers(low, high))
    if draw(st.booleans()):
        values["common_type"] = event.event_id
    if "reason" in values and draw(st.booleans()):
        values["reason"] = draw(st.sampled_from(sorted(event.symbols["reason"])))
    record = kfree_skb_construct(event).build(values)
    record += draw(st.binary(max_size=8))  # ring-buffer records are padded to 4 bytes
    return event, record, values


@settings(max_examples=300)
@given(kfree_skb_records())
def test_kfree_skb_decoder_equals_the_construct_definition(case) -> None:  # type: ignore[no-untyped-def]
    event, record, values = case
    decoder = KfreeSkbDecoder(event)
    try:
        expected: object = drop_site_reference(record, event)
    except ProtocolError:
        expected = ProtocolError
    try:
        got: object = decoder.drop_site(record)
        got_again: object = decoder.drop_site(record)  # the remembered site
    except ProtocolError:
        got = got_again = ProtocolError
    assert got == expected == got_again
    if values["common_type"] == event.event_id:
        assert isinstance(got, DropSite)
        assert got.pc == values["location"]


@settings(max_examples=300)
@given(st.sampled_from(FORMATS), st.binary(max_size=64))
def test_kfree_skb_decoder_on_any_bytes(event, record: bytes) -> None:  # type: ignore[no-untyped-def]
    def result(read):  # type: ignore[no-untyped-def]
        try:
            return read(record)
        except ProtocolError:
            return ProtocolError

    assert result(KfreeSkbDecoder(event).drop_site) == result(
        lambda data: drop_site_reference(data, event)
    )


def test_reason_names_and_unknown_values() -> None:
    event = kernel_format()
    decoder = KfreeSkbDecoder(event)
    base = {field.name: 0 for field in event.fields}
    record = kfree_skb_construct(event).build(
        {**base, "common_type": event.event_id, "location": 0xFFFFFFFF81000000, "reason": 3}
    )
    assert decoder.drop_site(record) == DropSite(0, 0xFFFFFFFF81000000, None, "NO_SOCKET")
    unknown = kfree_skb_construct(event).build(
        {**base, "common_type": event.event_id, "location": 1, "reason": 0x10005}
    )
    assert decoder.drop_site(unknown).reason == "UNKNOWN_65541"


def test_a_kernel_without_drop_reasons() -> None:
    """Before 5.17 kfree_skb had no reason field (this format is 6.18's with it removed)."""
    text = (DATA / "kfree_skb-6.18.format").read_text()
    lines = [line for line in text.splitlines(keepends=True) if "reason" not in line.split(";")[0]]
    event = parse_event_format("".join(lines))
    assert event.field("reason") is None
    base = {field.name: 0 for field in event.fields}
    record = kfree_skb_construct(event).build(
        {**base, "common_type": event.event_id, "location": 7}
    )
    assert KfreeSkbDecoder(event).drop_site(record) == DropSite(0, 7, None, None)


def test_a_storm_of_real_shaped_pages_reads_fast_and_right() -> None:
    """Whole pages of 40-byte records, as the kernel writes them, in both readers."""
    event = kernel_format()
    rng = random.Random(7)
    build = kfree_skb_construct(event).build
    base = {field.name: 0 for field in event.fields}
    data = b""
    expected = []
    while len(data) + 44 <= LAYOUT.data_size:
        record = build(
            {
                **base,
                "common_type": event.event_id,
                "location": rng.choice([1, 2, 3]),
                "reason": rng.choice([2, 3]),
            }
        )
        data += struct.pack("<I", (rng.randrange(2**27) << 5) | 10) + record
        expected.append(record)
    page = struct.pack("<QQ", 0, len(data)) + data
    page += bytes(LAYOUT.page_size - len(page))
    assert (
        page_records(page, LAYOUT).records == expected == parse_page_reference(page, LAYOUT).records
    )
    decoder = KfreeSkbDecoder(event)
    sites = [decoder.drop_site(record) for record in expected]
    assert sites == [drop_site_reference(record, event) for record in expected]
