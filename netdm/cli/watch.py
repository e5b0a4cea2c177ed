"""``netdm watch``: drop summaries (and packets) from the kernel or a capture.

Strategy: the options become one :class:`WatchOptions`, checked for
combinations that make no sense (usage errors, exit 2); then the library
runs: :func:`netdm.engine.sources.run_live` for the kernel (NET_DM, or the
tracepoint it falls back to), :func:`netdm.engine.sources.replay` for ``-r``.
This module builds only what is output: the renderer, the packet printer,
the ``--write-packets`` file and the packet filter.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import click

from netdm.cli.options import (
    MAX_COUNT,
    MAX_DURATION,
    WATCH_TRUNC_LEN,
    FiniteFloatRange,
    interval_option,
    origin_option,
    packet_filter_options,
    queue_len_option,
    rcvbuf_option,
    source_option,
    symbols_option,
    trunc_len_option,
)
from netdm.cli.output_paths import (
    check_output_paths,
    naming_the_file,
    totals_despite_a_full_disk,
    write_packet_naming_the_file,
)

if TYPE_CHECKING:
    from netdm.engine.session import DatagramDecoder, Pipeline, PipelineFactory, RunTotals
    from netdm.engine.sources import StartedSource
    from netdm.engine.symbols import SymbolTable
    from netdm.output.render import Renderer
    from netdm.proto.events import PacketAlert


@dataclass
class WatchOptions:
    """Every option of ``netdm watch``, as click parsed them."""

    interval: float
    duration: float | None
    count: int | None
    as_json: bool
    passive: bool
    symbols_file: str | None
    verbose: bool
    rcvbuf: int | None
    write_file: str | None
    pcap: bool
    read_file: str | None
    family_id: int | None
    keep_going: bool
    packets: bool
    trunc_len: int
    queue_len: int
    origin: str
    by_reason: bool
    summaries_only: bool
    hex_dump: bool
    nanoseconds: bool
    payload: Literal["hex", "base64"]  # click.Choice checked it
    write_packets: str | None
    reasons: tuple[str, ...]
    exclude_reasons: tuple[str, ...]
    locations: tuple[str, ...]
    interfaces: tuple[str, ...]
    protocols: tuple[str, ...]
    source: str

    def packet_filters(self) -> list[str]:
        """The packet filters given (they apply to packet alerts only)."""
        given = {
            "--reason": self.reasons,
            "--exclude-reason": self.exclude_reasons,
            "--location": self.locations,
            "--interface": self.interfaces,
            "--protocol": self.protocols,
        }
        return [name for name, value in given.items() if value]

    def net_dm_only_options(self) -> list[str]:
        """The options given that only the NET_DM source can honour."""
        given = {
            "--packets": self.packets,
            "--passive": self.passive,
            f"--origin {self.origin}": self.origin != "sw",
            "--rcvbuf": self.rcvbuf,
            "--pcap": self.pcap,
            "--write-packets": self.write_packets,
        }
        return [name for name, value in given.items() if value] + self.packet_filters()

    def check(self) -> None:
        """Combinations that make no sense are usage errors (exit 2)."""
        if self.read_file is not None:
            live_only = {
                "-w": self.write_file,
                "--passive": self.passive,
                "--rcvbuf": self.rcvbuf,
                "--count": self.count,
                "--duration": self.duration,
            }
            for name, given in live_only.items():
                if given:
                    raise click.UsageError(f"-r replays a capture; {name} is for live monitoring")
        else:
            for name, given in (("--family-id", self.family_id), ("--keep-going", self.keep_going)):
                if given:
                    raise click.UsageError(f"{name} goes with -r")
        if self.pcap and self.write_file is None:
            raise click.UsageError("--pcap goes with -w")
        given_filters = self.packet_filters()
        if given_filters and self.read_file is None and not self.packets:
            raise click.UsageError(
                f"{', '.join(given_filters)} filter dropped packets: add --packets "
                "(summary alerts carry counts per location, not packets)"
            )
        if self.source == "tracepoint" and self.read_file is None:
            unsupported = self.net_dm_only_options()
            if unsupported:
                raise click.UsageError(
                    f"{', '.join(unsupported)}: only with the NET_DM source; the skb:kfree_skb "
                    "tracepoint gives drop locations and reasons, not packets"
                )
        if self.passive and self.packets:
            raise click.UsageError(
                "--passive configures nothing: the kernel's current mode decides what arrives"
            )
        self.check_files()

    def check_files(self) -> None:
        """No output may be an input or another output; no output in a missing directory."""
        check_output_paths(
            read_file=self.read_file,
            symbols_file=self.symbols_file,
            write_file=self.write_file,
            pcap=self.pcap,
            write_packets=self.write_packets,
        )


@click.command()
@interval_option(5.0, help="Seconds per summary.")
@click.option(
    "-d",
    "--duration",
    type=FiniteFloatRange(min=0, max=MAX_DURATION),
    help="Stop after this many seconds.",
)
@click.option(
    "-c",
    "--count",
    type=click.IntRange(min=1, max=MAX_COUNT),
    help="Stop after this many summaries.",
)
@click.option("--json", "as_json", is_flag=True, help="JSON lines: one object per summary/packet.")
@click.option(
    "--passive",
    is_flag=True,
    help="Only listen: configure and start nothing (another tool controls the monitor).",
)
@origin_option(
    help="Software drops (kfree_skb), hardware drops (devlink traps), or both.  The kernel "
    "monitors software drops when asked for neither.",
)
@symbols_option()
@click.option(
    "-v", "--verbose", is_flag=True, help="Show symbol+offset [module] instead of function names."
)
@rcvbuf_option()
@click.option(
    "-w",
    "--write",
    "write_file",
    type=click.Path(dir_okay=False, writable=True),
    help="Record every NET_DM message, request and reply to FILE (pcapng; Wireshark reads it).  "
    "An existing FILE is replaced once monitoring starts, not before.",
)
@click.option(
    "--pcap",
    is_flag=True,
    help="With -w: classic pcap instead of pcapng (symbols in FILE.symbols).",
)
@click.option(
    "-r",
    "--read",
    "read_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Replay a capture (netdm -w, dwdump, tcpdump/tshark on nlmon) instead of the kernel.",
)
@click.option(
    "--family-id",
    type=click.IntRange(min=0x11, max=0xFFFF),
    help="With -r: NET_DM's family id, when the capture has no nlctrl reply.",
)
@click.option(
    "--keep-going",
    is_flag=True,
    help="With -r: skip damaged records where possible and count them, instead of stopping.",
)
@click.option(
    "-p", "--packets", is_flag=True, help="Packet mode: one line per dropped packet (5.4+)."
)
@trunc_len_option(
    WATCH_TRUNC_LEN,
    help="Packet mode: bytes of each packet the kernel sends; 128 keeps the headers "
    "(Ethernet, VLAN, IPv6 with options, TCP) and little payload.  0: whole packets.",
)
@queue_len_option(
    help="Packet mode: packets each CPU may queue before the kernel discards alerts.",
)
@click.option(
    "--by-reason", is_flag=True, help="Packet mode: count summaries by location and drop reason."
)
@click.option(
    "-q",
    "--summaries-only",
    is_flag=True,
    help="Packet mode: print the interval summaries, not every packet.",
)
@click.option("-x", "--hex", "hex_dump", is_flag=True, help="Packet mode: details and a hex dump.")
@click.option("--nanoseconds", is_flag=True, help="Packet mode: times to the nanosecond.")
@click.option(
    "--payload",
    type=click.Choice(["hex", "base64"]),
    default="hex",
    show_default=True,
    help="Packet mode with --json: how the payload is written.",
)
@click.option(
    "--write-packets",
    type=click.Path(dir_okay=False, writable=True),
    help="Packet mode: the dropped packets themselves as a pcap (tcpdump/Wireshark).  An "
    "existing FILE is replaced once the run starts, not before.",
)
@packet_filter_options
@source_option(
    help="Where drops come from: the NET_DM drop monitor, the skb:kfree_skb tracepoint "
    "(kernels without NET_DM; summaries only), or auto: NET_DM if the kernel has it.",
)
def watch(**raw_options: Any) -> None:
    """Report where packets are dropped, every INTERVAL seconds.

    Prints the drop locations of each interval, most drops first, until
    Ctrl-C, SIGTERM, --duration or --count.  On every way out netdm stops the
    kernel's monitoring and restores the configuration it found, after
    waiting about a second for the kernel's last batch of alerts.

    \b
    Output:
      Monitoring for dropped packets
      Tue Nov 17 00:26:51 2020
      1762 packets dropped at unix_stream_recvmsg
      4 packets dropped at tun_do_read
      Stopping dropped packet monitor

    With --packets every dropped packet gets a line (time, location, reason,
    interface, addresses, length), and the summaries still follow each
    interval; --reason/--location/--interface/--protocol filter both.

    With -r FILE the same output comes from a recorded capture, on the
    capture's own clock, with the symbols the capture carries.

    Kernels built without the drop monitor (CONFIG_NET_DROP_MONITOR) still
    have the skb:kfree_skb tracepoint that it hooks: --source auto (the
    default) falls back to it, in a tracefs instance of netdm's own, and says
    so on the first line.  Summaries, --by-reason, --json and -w work alike.
    """
    options = WatchOptions(**raw_options)
    options.check()
    if options.read_file is None:
        _watch(options)
    else:
        with naming_the_file(options.read_file, "read"):
            _watch(options)


def _watch(options: WatchOptions) -> None:
    from netdm.engine.symbol_sources import choose_symbols

    symbols = choose_symbols(options.symbols_file, options.read_file)
    renderer = make_renderer_for(options, symbols)
    for notice in symbols.notices():
        renderer.notice(notice)
    pipelines: list[Pipeline] = []
    with _packet_outputs(options, symbols) as (on_packet, packet_filter, start_outputs):
        new_pipeline = _pipeline_factory(options, renderer, on_packet, packet_filter, pipelines)
        if options.read_file is not None:
            totals = _replay(options, new_pipeline, renderer, start_outputs)
        elif options.write_file is not None:
            with (
                naming_the_file(options.write_file, "write"),
                totals_despite_a_full_disk(options.write_file, pipelines, renderer),
            ):
                totals = _watch_live(options, new_pipeline, renderer, symbols, start_outputs)
        else:
            totals = _watch_live(options, new_pipeline, renderer, symbols, start_outputs)
    renderer.stop(totals)
    sys.stdout.flush()  # inside the error boundary: a closed pipe exits 0, quietly


def make_renderer_for(options: WatchOptions, symbols: SymbolTable) -> Renderer:
    from netdm.output.render import make_renderer

    return make_renderer(
        json_lines=options.as_json, out=sys.stdout, symbols=symbols, verbose=options.verbose
    )


PacketHook = Callable[["PacketAlert"], None]
PacketPredicate = Callable[["PacketAlert"], bool]


@contextmanager
def _packet_outputs(
    options: WatchOptions, symbols: SymbolTable
) -> Iterator[tuple[PacketHook | None, PacketPredicate | None, Callable[[], None]]]:
    """What happens to each packet alert: printed, written to --write-packets, filtered.

    The third value creates the --write-packets file: call it once the run
    has started, so that a run that fails before leaves an existing file as
    it was (see netdm.capture.output_files).
    """
    from netdm.output.packets import PacketFilter, PcapPacketSink, caching_resolver
    from netdm.output.render import PacketPrinter

    resolve_ifname = None if options.read_file else caching_resolver(_interface_name)
    hooks: list[PacketHook] = []
    if not options.summaries_only:
        printer = PacketPrinter(
            sys.stdout,
            symbols,
            json_lines=options.as_json,
            verbose=options.hex_dump,
            nanoseconds=options.nanoseconds,
            payload_encoding=options.payload,
            resolve_ifname=resolve_ifname,
        )
        hooks.append(printer.packet)
    packet_filter = PacketFilter.from_options(
        reasons=options.reasons,
        exclude_reasons=options.exclude_reasons,
        locations=options.locations,
        interfaces=options.interfaces,
        protocols=options.protocols,
    )
    predicate: PacketPredicate | None = None
    if packet_filter.active:

        def predicate(alert: PacketAlert) -> bool:
            name = None
            if resolve_ifname and alert.in_port and alert.in_port.ifindex:
                name = resolve_ifname(alert.in_port.ifindex)
            return packet_filter.matches(alert, ifname=name, symbols=symbols)

    starts: list[Callable[[], None]] = []

    def start_outputs() -> None:
        for start in starts:
            start()

    with ExitStack() as cleanup:
        if options.write_packets:
            path = options.write_packets
            cleanup.enter_context(naming_the_file(path, "write"))  # also its close
            sink = cleanup.enter_context(PcapPacketSink.open(path, deferred=True))
            hooks.append(partial(write_packet_naming_the_file, sink.write, path))
            starts.append(sink.start_file)
        if not hooks:
            yield None, predicate, start_outputs
        elif len(hooks) == 1:
            yield hooks[0], predicate, start_outputs
        else:

            def every_hook(alert: PacketAlert) -> None:
                for hook in hooks:
                    hook(alert)

            yield every_hook, predicate, start_outputs


# Errors of a write that only the file being written can cause; the others may come
# from a socket or tracefs, and are not blamed on it.
def _interface_name(ifindex: int) -> str | None:
    import socket

    try:
        return socket.if_indextoname(ifindex)
    except OSError:
        return None


def _pipeline_factory(
    options: WatchOptions,
    renderer: Renderer,
    on_packet: PacketHook | None,
    packet_filter: PacketPredicate | None,
    made: list[Pipeline] | None = None,
) -> PipelineFactory:
    """Pipelines of the run; each one made is appended to ``made``."""
    from netdm.engine.aggregate import IntervalAggregator
    from netdm.engine.session import Pipeline

    def new_pipeline(decoder: DatagramDecoder, start: float) -> Pipeline:
        aggregator = IntervalAggregator(
            interval=options.interval, start=start, by_reason=options.by_reason
        )
        pipeline = Pipeline(
            decoder,
            aggregator,
            renderer.interval,
            on_packet=on_packet,
            packet_filter=packet_filter,
        )
        if made is not None:
            made.append(pipeline)
        return pipeline

    return new_pipeline


def _replay(
    options: WatchOptions,
    new_pipeline: PipelineFactory,
    renderer: Renderer,
    start_outputs: Callable[[], None],
) -> RunTotals:
    from netdm.engine.sources import replay
    from netdm.output.render import CAPTURE_SOURCE

    read_file = options.read_file
    assert read_file is not None
    renderer.start(CAPTURE_SOURCE)
    result = replay(
        read_file,
        new_pipeline,
        keep_going=options.keep_going,
        family_id=options.family_id,
        on_started=start_outputs,
    )
    if result.bad_records:
        renderer.notice(f"{read_file}: skipped {result.bad_records} damaged records (--keep-going)")
    return result.totals


def _watch_live(
    options: WatchOptions,
    new_pipeline: PipelineFactory,
    renderer: Renderer,
    symbols: SymbolTable,
    start_outputs: Callable[[], None],
) -> RunTotals:
    from netdm.engine.session import WatchSettings
    from netdm.engine.sources import Recording, run_live

    settings = WatchSettings(
        interval=options.interval,
        duration=options.duration,
        count=options.count,
        passive=options.passive,
        receive_buffer=options.rcvbuf,
        packet_mode=options.packets,
        trunc_len=options.trunc_len,
        queue_len=options.queue_len,
        software=options.origin in ("sw", "all"),
        hardware=options.origin in ("hw", "all"),
    )
    recording = None
    if options.write_file is not None:
        recording = Recording(options.write_file, pcap=options.pcap)

    return run_live(
        options.source,
        settings,
        new_pipeline,
        partial(_announce, renderer, start_outputs),
        recording=recording,
        symbols=symbols,
        net_dm_only=options.net_dm_only_options(),
    )


def _announce(renderer: Renderer, start_outputs: Callable[[], None], source: StartedSource) -> None:
    """The outputs created, then the first line: which source, and why not NET_DM."""
    from netdm.output.render import DropSource

    start_outputs()
    if source.kind == "netdm":
        renderer.start()
        return
    note = "skb:kfree_skb tracepoint"
    if source.net_dm_missing is not None:
        note += "; NET_DM is not available"
    renderer.start(DropSource("tracepoint", note))
    if source.net_dm_missing is not None:
        renderer.notice(f"using the skb:kfree_skb tracepoint: {source.net_dm_missing}")
