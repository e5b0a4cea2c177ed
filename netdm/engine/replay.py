"""The replay of a NET_DM capture through the same pipeline as a live run.

Strategy: recording and replay agree by construction.  Every datagram is in
the capture with the time the live pipeline was given for it (the run's
*logical* clock: arrival time, except that the kernel's last batches,
drained after the end of the run, are stamped with the end).  Replay feeds
the records at their timestamps, starts its windows where the live run
started them (at the ack of START, or at the first reply when netdm only
listened) and ends at the last record (the STOP exchange, stamped with the
end), so it prints the same summaries.  What the events socket lost is the
exception: notifications the kernel never queued are not in the capture,
nor are ENOBUFS or the socket's ``Drops`` counter, so a replay counts
``enobufs`` and ``socket_dropped`` as 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from netdm.capture.formats import NETLINK_GENERIC
from netdm.engine.pipeline import (
    NS_PER_SECOND,
    NetDmDecoder,
    Pipeline,
    PipelineFactory,
    RunTotals,
    seconds,
    within_run,
)
from netdm.errors import BadInputError
from netdm.proto import ProtocolError, decode_datagram
from netdm.proto.constants import FAMILY_NAME, GENL_ID_CTRL, Cmd
from netdm.proto.events import FamilyInfo
from netdm.proto.framing import GENL_MESSAGE_MIN
from netdm.proto.peek import is_alert, is_net_dm_command, looks_like_net_dm_alert, message_type

if TYPE_CHECKING:
    from netdm.capture import CaptureReader



def find_family_id(reader: CaptureReader) -> tuple[int, str]:
    """NET_DM's id in a capture, and how it was learnt.

    From the nlctrl reply naming NET_DM (netdm and dwdump write one first);
    failing that, from the first datagram that looks and decodes like a NET_DM
    notification (a generic-netlink multicast with version 2, seq and port 0,
    and command ALERT or PACKET_ALERT).
    """
    guess: int | None = None
    for record in reader:
        data = record.data
        if record.protocol != NETLINK_GENERIC or len(data) < GENL_MESSAGE_MIN:
            continue
        nl_type = message_type(data)
        if nl_type == GENL_ID_CTRL:
            try:
                events = decode_datagram(data, 0)
            except ProtocolError:
                continue
            for event in events:
                if isinstance(event, FamilyInfo) and event.name == FAMILY_NAME:
                    return event.family_id, "from the capture's nlctrl reply"
        elif guess is None and nl_type > GENL_ID_CTRL and looks_like_net_dm_alert(data):
            guess = nl_type
    if guess is not None:
        return guess, "recognised from its alerts (the capture has no nlctrl reply)"
    raise BadInputError(
        f"{reader.path}: no NET_DM messages found (no nlctrl reply naming NET_DM and "
        "nothing that decodes as a drop alert); if the family id is known, pass --family-id"
    )


@dataclass
class ReplayResult:
    """What a replay did, besides its intervals."""

    totals: RunTotals
    family_id: int
    family_source: str
    records: int
    bad_records: int


def replay_capture(
    open_reader: Callable[[], CaptureReader],
    pipeline_factory: PipelineFactory,
    *,
    family_id: int | None = None,
) -> ReplayResult:
    """Feed a capture through the same pipeline as a live run, on its own clock.

    ``open_reader`` is called once or twice (a first pass finds the family id
    when it is not given).
    """
    if family_id is None:
        with open_reader() as scout:
            family_id, family_source = find_family_id(scout)
    else:
        family_source = "given with --family-id"
    pipeline: Pipeline | None = None
    start_ns: int | None = None  # the live run's: the START ack, else the first reply
    awaiting_start_ack = False
    stats_baseline: bytes | None = None
    last_ns: int | None = None
    records = 0
    with open_reader() as reader:
        # A record unpacked once: this loop runs per datagram, a million times for a storm.
        for timestamp_ns, data, outgoing, protocol, _offset, _original_length in reader:
            if protocol != NETLINK_GENERIC:
                continue
            if outgoing:
                # Requests carry no drops, but netdm's START marks where its windows begin.
                if is_net_dm_command(data, family_id, Cmd.START):
                    awaiting_start_ack = True
                continue
            records += 1
            last_ns = timestamp_ns
            if pipeline is None:
                if start_ns is None or awaiting_start_ack:
                    start_ns = timestamp_ns
                    awaiting_start_ack = False
                if is_net_dm_command(data, family_id, Cmd.STATS_NEW):
                    stats_baseline = data  # live, taken before START: see LiveMonitor
                if not is_alert(data, family_id):
                    continue
                pipeline = pipeline_factory(NetDmDecoder(family_id), seconds(start_ns))
                if stats_baseline is not None:
                    pipeline.feed(stats_baseline, seconds(start_ns))
            pipeline.feed(data, timestamp_ns / NS_PER_SECOND)  # seconds(), inlined
        bad_records = reader.bad_records
    if last_ns is None:
        raise BadInputError(f"{reader.path}: the capture holds no netlink records to replay")
    if pipeline is None:
        pipeline = pipeline_factory(NetDmDecoder(family_id), seconds(start_ns or last_ns))
    # As the live run did: windows closed just before the end, then the last one at the end.
    pipeline.tick(seconds(within_run(last_ns, last_ns)))
    pipeline.finish(seconds(last_ns))
    return ReplayResult(pipeline.totals, family_id, family_source, records, bad_records)
