"""The ``netdm`` command line: thin click commands over the library.

Strategy: each command opens the library objects, runs them and hands the
results to a renderer.  Library errors (:class:`netdm.errors.NetdmError`)
become one ``Error: …`` line on stderr and their own exit code; nothing here
decodes bytes or talks to sockets.  Heavy modules are imported inside the
commands so that ``netdm --help`` starts fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import click

from netdm import __version__
from netdm.errors import ExitCode, NetdmError

if TYPE_CHECKING:
    from netdm.engine.session import DatagramDecoder, PipelineFactory, RunTotals
    from netdm.engine.symbols import SymbolTable
    from netdm.netlink.control import KernelControl
    from netdm.netlink.transport import NetlinkTransport
    from netdm.output.render import Renderer
    from netdm.proto.events import PacketAlert

EXIT_CODES_HELP = """
\b
Exit codes:
  0  success          3  no drop source here       6  configuration busy
  1  other error      4  permission denied         7  kernel refused a request
  2  bad usage        5  monitor already running   8  undecodable input
"""


def _fail(error: NetdmError) -> NoReturn:
    click.echo(f"Error: {error}", err=True)
    sys.exit(int(error.exit_code))


@click.group(epilog=EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="netdm")
def main() -> None:
    """See where the Linux kernel drops packets.

    netdm talks to the kernel's drop monitor (the NET_DM generic-netlink
    family, module drop_monitor) and reports every place that freed packets
    as drops, with counts, every few seconds.  Needs root (CAP_NET_ADMIN and,
    on 6.7+ and Debian 6.1 kernels, CAP_SYS_ADMIN) in the initial network
    namespace.

    \b
    Examples:
      netdm watch                       summaries every 5 s until Ctrl-C
      netdm watch --duration 60 --json  a minute of JSON lines, for jq
    """


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


PACKET_OPTION_HELP = "Packet mode (--packets) and replays of packet-mode captures"


@main.command()
@click.option(
    "-i",
    "--interval",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds per summary.",
)
@click.option(
    "-d", "--duration", type=click.FloatRange(min=0), help="Stop after this many seconds."
)
@click.option("-c", "--count", type=click.IntRange(min=1), help="Stop after this many summaries.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines: one object per summary/packet.")
@click.option(
    "--passive",
    is_flag=True,
    help="Only listen: configure and start nothing (another tool controls the monitor).",
)
@click.option(
    "--origin",
    type=click.Choice(["sw", "hw", "all"]),
    default="sw",
    show_default=True,
    help="Software drops (kfree_skb), hardware drops (devlink traps), or both.  The kernel "
    "monitors software drops when asked for neither.",
)
@click.option(
    "--symbols",
    "symbols_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Resolve addresses with this System.map or kallsyms file.",
)
@click.option(
    "-v", "--verbose", is_flag=True, help="Show symbol+offset [module] instead of function names."
)
@click.option(
    "--rcvbuf", type=click.IntRange(min=4096), help="Socket receive buffer in bytes (16 MiB)."
)
@click.option(
    "-w",
    "--write",
    "write_file",
    type=click.Path(dir_okay=False, writable=True),
    help="Record every NET_DM message, request and reply to FILE (pcapng; Wireshark reads it).",
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
@click.option(
    "--trunc-len",
    type=click.IntRange(min=0),
    default=128,
    show_default=True,
    help="Packet mode: bytes of each packet the kernel sends; 128 keeps the headers "
    "(Ethernet, VLAN, IPv6 with options, TCP) and little payload.  0: whole packets.",
)
@click.option(
    "--queue-len",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
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
    help="Packet mode: the dropped packets themselves as a pcap (tcpdump/Wireshark).",
)
@click.option("--reason", "reasons", multiple=True, help="Only these drop reasons (a,b or repeat).")
@click.option(
    "--exclude-reason", "exclude_reasons", multiple=True, help="Not these (e.g. NOT_SPECIFIED)."
)
@click.option(
    "--location", "locations", multiple=True, help="Only these functions (glob: '*udp*')."
)
@click.option("--interface", "interfaces", multiple=True, help="Only this input interface.")
@click.option(
    "--protocol", "protocols", multiple=True, help="Only ipv4, ipv6, arp, tcp, udp, icmp, ..."
)
@click.option(
    "--source",
    type=click.Choice(["auto", "netdm", "tracepoint"]),
    default="auto",
    show_default=True,
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
    try:
        symbols = _load_symbols(options.symbols_file, options.read_file)
        renderer = make_renderer_for(options, symbols)
        for notice in symbols.notices():
            renderer.notice(notice)
        with _packet_outputs(options, symbols) as (on_packet, packet_filter):
            new_pipeline = _pipeline_factory(options, renderer, on_packet, packet_filter)
            if options.read_file is not None:
                totals = _replay(options, new_pipeline, renderer)
            else:
                totals = _watch_live(options, new_pipeline, renderer, symbols)
        renderer.stop(totals)
        sys.stdout.flush()
    except NetdmError as error:
        _fail(error)
    except BrokenPipeError:
        # `netdm watch | head -1`: the kernel side was already cleaned up on the way out.
        _silence_broken_pipe()
        sys.exit(int(ExitCode.OK))


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
) -> Iterator[tuple[PacketHook | None, PacketPredicate | None]]:
    """What happens to each packet alert: printed, written to --write-packets, filtered."""
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

    with ExitStack() as cleanup:
        if options.write_packets:
            sink = cleanup.enter_context(PcapPacketSink.open(options.write_packets))
            hooks.append(sink.write)
        if not hooks:
            yield None, predicate
        elif len(hooks) == 1:
            yield hooks[0], predicate
        else:

            def every_hook(alert: PacketAlert) -> None:
                for hook in hooks:
                    hook(alert)

            yield every_hook, predicate


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
) -> PipelineFactory:
    from netdm.engine.aggregate import IntervalAggregator
    from netdm.engine.session import Pipeline

    def new_pipeline(decoder: DatagramDecoder, start: float) -> Pipeline:
        aggregator = IntervalAggregator(
            interval=options.interval, start=start, by_reason=options.by_reason
        )
        return Pipeline(
            decoder,
            aggregator,
            renderer.interval,
            on_packet=on_packet,
            packet_filter=packet_filter,
        )

    return new_pipeline


def _load_symbols(symbols_file: str | None, read_file: str | None) -> SymbolTable:
    from netdm.engine.symbols import SymbolTable

    if read_file is None:
        return SymbolTable.load(system_map=symbols_file)
    if symbols_file is not None:
        return SymbolTable.load(kallsyms_path=None, system_map=symbols_file)
    from netdm.capture import read_symbols

    text = read_symbols(read_file)
    if text.strip():
        return SymbolTable.from_kallsyms_text(
            text, source_description=f"the symbols recorded in {read_file}"
        )
    return SymbolTable.empty(
        source_description="no symbols",
        why_unresolved=(
            f"{read_file} carries no kernel symbols, so drop locations print as raw "
            "addresses (they change at every boot); pass --symbols with a copy of the "
            "recording machine's /proc/kallsyms to name them"
        ),
    )


def _replay(options: WatchOptions, new_pipeline: PipelineFactory, renderer: Renderer) -> RunTotals:
    from netdm.capture import read_capture
    from netdm.capture.read import capture_tracepoint_format
    from netdm.engine.session import ReplayResult, replay_capture
    from netdm.output.render import CAPTURE_SOURCE

    read_file = options.read_file
    assert read_file is not None
    renderer.start(CAPTURE_SOURCE)
    result: ReplayResult | None = None
    with read_capture(read_file, keep_going=options.keep_going) as reader:
        if capture_tracepoint_format(reader.info) is not None:
            from netdm.engine.tracepoint_monitor import replay_tracepoint_capture

            result = replay_tracepoint_capture(reader, new_pipeline)
    if result is None:
        result = replay_capture(
            lambda: read_capture(read_file, keep_going=options.keep_going),
            new_pipeline,
            family_id=options.family_id,
        )
    if result.bad_records:
        renderer.notice(f"{read_file}: skipped {result.bad_records} damaged records (--keep-going)")
    return result.totals


def _watch_live(
    options: WatchOptions, new_pipeline: PipelineFactory, renderer: Renderer, symbols: SymbolTable
) -> RunTotals:
    """NET_DM, or the tracepoint: as --source says, auto falling back when NET_DM is missing."""
    from netdm.errors import FamilyNotFoundError

    if options.source == "tracepoint":
        return _watch_tracepoint(options, new_pipeline, renderer, symbols, net_dm_missing=None)
    try:
        return _watch_net_dm(options, new_pipeline, renderer, symbols)
    except FamilyNotFoundError as error:
        if options.source != "auto":
            raise
        unsupported = options.net_dm_only_options()
        if unsupported:
            raise FamilyNotFoundError(
                f"{error} ({', '.join(unsupported)} need NET_DM; without them netdm would "
                "fall back to the skb:kfree_skb tracepoint)"
            ) from None
        return _watch_tracepoint(
            options, new_pipeline, renderer, symbols, net_dm_missing=str(error)
        )


def _watch_tracepoint(
    options: WatchOptions,
    new_pipeline: PipelineFactory,
    renderer: Renderer,
    symbols: SymbolTable,
    *,
    net_dm_missing: str | None,
) -> RunTotals:
    from netdm.engine.session import WatchSettings
    from netdm.engine.tracepoint_monitor import TracepointMonitor, TracepointRecorder
    from netdm.output.render import DropSource
    from netdm.tracepoint.tracefs import TracepointUnavailableError

    settings = WatchSettings(
        interval=options.interval, duration=options.duration, count=options.count
    )
    note = "skb:kfree_skb tracepoint"
    if net_dm_missing is not None:
        note += "; NET_DM is not available"

    def started() -> None:
        renderer.start(DropSource("tracepoint", note))
        if net_dm_missing is not None:
            renderer.notice(f"using the skb:kfree_skb tracepoint: {net_dm_missing}")

    open_recorder = None
    write_file = options.write_file
    if write_file is not None:
        import os
        import socket

        from netdm.capture import CaptureWriter

        def open_recorder(event_format: str) -> TracepointRecorder:
            return CaptureWriter.open(
                write_file,
                kernel_release=os.uname().release,
                hostname=socket.gethostname(),
                application=f"netdm {__version__}",
                tracepoint_format=event_format,
            )

    monitor = TracepointMonitor(
        settings, new_pipeline, started, open_recorder=open_recorder, symbols=symbols
    )
    try:
        return monitor.run()
    except TracepointUnavailableError as error:
        if net_dm_missing is None:
            raise
        raise TracepointUnavailableError(
            f"no drop source here: {net_dm_missing}; and {error}"
        ) from None


def _watch_net_dm(
    options: WatchOptions, new_pipeline: PipelineFactory, renderer: Renderer, symbols: SymbolTable
) -> RunTotals:
    from netdm.engine.session import LiveMonitor, WatchSettings

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
    if options.write_file is None:
        return LiveMonitor(settings, new_pipeline, on_started=renderer.start).run()
    import os
    import socket

    from netdm.capture import CaptureWriter

    with CaptureWriter.open(
        options.write_file,
        format="pcap" if options.pcap else "pcapng",
        kernel_release=os.uname().release,
        hostname=socket.gethostname(),
        application=f"netdm {__version__}",
    ) as writer:
        monitor = LiveMonitor(
            settings, new_pipeline, on_started=renderer.start, recorder=writer, symbols=symbols
        )
        return monitor.run()


def _silence_broken_pipe() -> None:
    """Keep Python from complaining again when it flushes stdout at exit."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _kernel_control() -> tuple[NetlinkTransport, KernelControl]:
    """A control socket for the one-shot commands; exits with the no-family diagnosis."""
    try:
        return _open_kernel_control()
    except NetdmError as error:
        _fail(error)


def _open_kernel_control() -> tuple[NetlinkTransport, KernelControl]:
    """A control socket; :class:`FamilyNotFoundError` says why there is no NET_DM."""
    from netdm.errors import FamilyNotFoundError
    from netdm.netlink.control import KernelControl
    from netdm.netlink.transport import NetlinkTransport

    try:
        transport = NetlinkTransport(receive_buffer=256 * 1024)
    except FamilyNotFoundError:
        from netdm.netlink.diagnose import explain_missing_family

        raise FamilyNotFoundError(explain_missing_family()) from None
    return transport, KernelControl(transport)


@main.command()
@click.option(
    "--mode",
    type=click.Choice(["summary", "packet"]),
    help="Alert mode: a count per location every second, or every packet.",
)
@click.option("--trunc-len", type=click.IntRange(min=0), help="Packet mode: bytes kept (0: all).")
@click.option(
    "--queue-len", type=click.IntRange(min=1), help="Packet mode: per-CPU queue of packets."
)
@click.option("--json", "as_json", is_flag=True, help="Print the configuration as JSON.")
def config(mode: str | None, trunc_len: int | None, queue_len: int | None, as_json: bool) -> None:
    """Show the drop monitor's configuration, or change it.

    The configuration is global and stays after netdm exits (netdm watch
    restores what it found; this command exists to change it).  Changing it
    needs CAP_NET_ADMIN and is refused while monitoring is on.
    """
    from netdm.proto.constants import AlertMode

    transport, control = _kernel_control()
    with transport:
        try:
            if mode is not None or trunc_len is not None or queue_len is not None:
                control.set_config(
                    alert_mode=None if mode is None else AlertMode[mode.upper()],
                    trunc_len=trunc_len,
                    queue_len=queue_len,
                )
            current = control.get_config()
        except NetdmError as error:
            _fail(error)
    if current is None:
        _fail(NetdmError("this kernel (before 5.4) has no configuration to read"))
    mode_name = current.alert_mode.name.lower()
    if as_json:
        import json

        document = {"alert_mode": mode_name, "trunc_len": current.trunc_len}
        document["queue_len"] = current.queue_len
        click.echo(json.dumps(document))
    else:
        click.echo(f"alert mode: {mode_name}")
        click.echo(f"truncation length: {current.trunc_len or 'none (whole packets)'}")
        click.echo(f"queue length: {current.queue_len} packets per CPU")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the counters as JSON.")
def stats(as_json: bool) -> None:
    """Show the kernel's cumulative drop-monitor loss counters.

    They count packet-mode alerts the kernel discarded because a CPU's queue
    was full (raise --queue-len), since the module was loaded.
    """
    transport, control = _kernel_control()
    with transport:
        try:
            counters = control.get_stats()
        except NetdmError as error:
            _fail(error)
    if counters is None:
        _fail(NetdmError("this kernel (before 5.4) keeps no drop-monitor statistics"))
    if as_json:
        import json

        click.echo(
            json.dumps({"sw_dropped": counters.sw_dropped, "hw_dropped": counters.hw_dropped})
        )
    else:
        click.echo(f"software alerts lost (queue full): {counters.sw_dropped}")
        click.echo(f"hardware alerts lost (queue full): {counters.hw_dropped}")


@main.command()
@click.option("--hw/--no-hw", default=True, show_default=True, help="Stop hardware monitoring too.")
def stop(hw: bool) -> None:
    """Stop drop monitoring left running (by a tool that was killed, say).

    Succeeds when monitoring was already off.  Needs CAP_NET_ADMIN on 6.7+.
    """
    transport, control = _kernel_control()
    with transport:
        try:
            control.stop(sw=True, hw=hw)
        except NetdmError as error:
            _fail(error)
    click.echo("drop monitoring is stopped")


@main.command()
def doctor() -> None:
    """Check whether netdm can work here, and say what is missing.

    Looks at the kernel's drop monitor (module, configuration, network
    namespace), this process's capabilities for each step, the features of
    this kernel (packet mode 5.4+, drop reasons 5.18+), the skb:kfree_skb
    tracepoint that `watch` falls back to without NET_DM, and kernel symbols.
    Exits 0 when netdm watch has a drop source here, 3 when it has none.
    """
    import os

    from netdm.errors import FamilyNotFoundError, KernelRequestError
    from netdm.netlink import diagnose

    files = diagnose.SystemFiles.running()
    findings = [diagnose.Finding(True, f"kernel {files.release}")]
    loaded_before = diagnose.module_loaded(files)
    maxattr: int | None = None
    usable = False
    try:
        from netdm.netlink.transport import NetlinkTransport

        with NetlinkTransport(receive_buffer=64 * 1024) as transport:
            features = transport.features
        maxattr = features.maxattr
        usable = True
        how = ""
        if not loaded_before and diagnose.module_loaded(files):
            how = " (resolving it loaded the drop_monitor module)"
        findings.append(
            diagnose.Finding(
                True,
                f"NET_DM family id {features.family_id}, maxattr "
                f"{features.maxattr}, commands {list(features.ops)}{how}",
            )
        )
    except FamilyNotFoundError:
        findings.append(diagnose.Finding(False, diagnose.explain_missing_family(files)))
    except KernelRequestError as error:
        findings.append(diagnose.Finding(False, str(error)))
    if usable:
        findings += diagnose.feature_findings(files.release, maxattr)
    from netdm.tracepoint.tracefs import tracepoint_status

    tracepoint_ok, tracepoint_message = tracepoint_status()
    if usable:  # informational: NET_DM works, the fallback is not needed
        findings.append(diagnose.Finding(True, f"fallback source: {tracepoint_message}"))
    else:
        uses_it = ": netdm watch uses it (summaries only)" if tracepoint_ok else ""
        findings.append(
            diagnose.Finding(tracepoint_ok, f"fallback source: {tracepoint_message}{uses_it}")
        )
    findings += diagnose.capability_findings(files)
    if os.geteuid() != 0:
        findings.append(diagnose.Finding(False, "not running as root"))
    findings.append(diagnose.kallsyms_finding(files))
    for finding in findings:
        click.echo(f"{'ok     ' if finding.ok else 'problem'}  {finding.message}")
    sys.exit(int(ExitCode.OK if usable or tracepoint_ok else ExitCode.NO_FAMILY))


if TYPE_CHECKING:  # here rather than at the top: the exporter's part of this file
    from netdm.output.exporter import DropMetrics


@main.command()
@click.option(
    "--listen",
    required=True,
    metavar="ADDR:PORT",
    help="Where to serve /metrics: 127.0.0.1:9977, [::1]:9977, or :9977 for every IPv4 "
    "address.  Port 0 picks a free port (printed at start).",
)
@click.option(
    "-i",
    "--interval",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    help="Seconds per interval: the counters grow at the end of each one.",
)
@click.option(
    "--mode",
    type=click.Choice(["auto", "packet", "summary"]),
    default="auto",
    show_default=True,
    help="Alert mode.  packet: drops by location and reason (reasons need 5.18+), but under "
    "a storm the kernel's queues overflow (netdm_kernel_queue_drops_total).  summary: "
    "cheap counts by location, no reasons.  auto: packet when the kernel reports reasons.",
)
@click.option(
    "--trunc-len",
    type=click.IntRange(min=0),
    default=64,
    show_default=True,
    help="Packet mode: bytes of each dropped packet the kernel copies (the exporter reads "
    "none of them; 0 would mean whole packets).",
)
@click.option(
    "--queue-len",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Packet mode: alerts each CPU may queue before the kernel discards them.",
)
@click.option(
    "--origin",
    type=click.Choice(["sw", "hw", "all"]),
    default="sw",
    show_default=True,
    help="Software drops, hardware drops (devlink traps), or both.",
)
@click.option(
    "--max-locations",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Distinct locations per origin with a series of their own; later ones are "
    'counted as location="other".',
)
@click.option(
    "--max-reasons",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help='Distinct drop reasons with a series of their own; later ones are reason="other".',
)
@click.option(
    "--symbols",
    "symbols_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Resolve addresses with this System.map or kallsyms file.",
)
@click.option(
    "--rcvbuf", type=click.IntRange(min=4096), help="Socket receive buffer in bytes (16 MiB)."
)
@click.option(
    "--source",
    type=click.Choice(["auto", "netdm", "tracepoint"]),
    default="auto",
    show_default=True,
    help="Where drops come from, as for watch: auto uses the skb:kfree_skb tracepoint "
    "when the kernel has no NET_DM (drops by location and reason, no hardware drops).",
)
def exporter(
    listen: str,
    interval: float,
    mode: str,
    trunc_len: int,
    queue_len: int,
    origin: str,
    max_locations: int,
    max_reasons: int,
    symbols_file: str | None,
    rcvbuf: int | None,
    source: str,
) -> None:
    """Serve drop counts as Prometheus metrics until SIGINT or SIGTERM.

    Monitors drops like `netdm watch` and adds each interval's counts to
    counters served on http://ADDR:PORT/metrics: netdm_drops_total by
    origin, location and reason, the loss counters (notifications lost to
    a full socket, socket overflows, kernel queue drops, undecodable
    messages) and the monitor's health.
    On exit the kernel's monitoring is stopped and its configuration
    restored, as with watch.  Metrics and the systemd unit: docs/exporter.md.

    \b
    Example:
      netdm exporter --listen 127.0.0.1:9977
      curl -s http://127.0.0.1:9977/metrics | grep '^netdm_drops_total'
    """
    from netdm.errors import FamilyNotFoundError
    from netdm.output.exporter import DropMetrics, MetricsServer, new_registry, parse_listen_address
    from netdm.textsafe import escape_for_terminal

    try:
        host, port = parse_listen_address(listen)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--listen") from None
    try:
        symbols = _load_symbols(symbols_file, None)
        for notice in symbols.notices():
            click.echo(f"netdm: {escape_for_terminal(notice)}", err=True)
        if source == "tracepoint" and origin != "sw":
            raise click.UsageError("--origin hw/all needs NET_DM: the tracepoint sees no traps")
        net_dm_missing: str | None = None
        packet_mode = False
        if source != "tracepoint":
            try:
                packet_mode = _exporter_packet_mode(mode)
            except FamilyNotFoundError as error:
                if source == "netdm" or origin != "sw":
                    raise
                net_dm_missing = str(error)
        use_tracepoint = source == "tracepoint" or net_dm_missing is not None
        if net_dm_missing is not None:
            click.echo(f"netdm: using the skb:kfree_skb tracepoint: {net_dm_missing}", err=True)
        metrics = DropMetrics(
            symbols,
            max_locations=max_locations,
            max_reasons=max_reasons,
            source="tracepoint" if use_tracepoint else "netdm",
            alert_mode="none" if use_tracepoint else "packet" if packet_mode else "summary",
            origin=origin,
        )
        try:
            server = MetricsServer(new_registry(metrics), host, port)
        except OSError as error:  # before the kernel is touched: a taken port changes nothing
            reason = error.strerror or str(error)
            raise NetdmError(f"cannot serve metrics on {listen}: {reason}") from None
        with server:
            totals = _export_live(
                metrics,
                server.url,
                interval=interval,
                packet_mode=packet_mode,
                trunc_len=trunc_len,
                queue_len=queue_len,
                origin=origin,
                rcvbuf=rcvbuf,
                tracepoint=use_tracepoint,
            )
        click.echo("Stopping dropped packet monitor")
        click.echo(f"Total: {totals.drops} drops counted in {totals.intervals} intervals")
    except NetdmError as error:
        _fail(error)


def _exporter_packet_mode(mode: str) -> bool:
    """``--mode auto``: packet mode when the kernel sends drop reasons (5.18+), else summary.

    Without reasons, packet mode would only add cost (an alert per packet, and
    the kernel's queues to overflow) for the same counts by location.
    """
    if mode != "auto":
        return mode == "packet"
    from netdm.proto.constants import Attr

    transport, _control = _open_kernel_control()
    with transport:
        features = transport.features
    return features.has_packet_mode and (features.maxattr or 0) >= Attr.REASON


def _export_live(
    metrics: DropMetrics,
    url: str,
    *,
    interval: float,
    packet_mode: bool,
    trunc_len: int,
    queue_len: int,
    origin: str,
    rcvbuf: int | None,
    tracepoint: bool = False,
) -> RunTotals:
    """The watch life cycle (LiveMonitor or TracepointMonitor), the metrics as interval sink."""
    from netdm.engine.aggregate import IntervalAggregator
    from netdm.engine.session import LiveMonitor, Pipeline, WatchSettings

    settings = WatchSettings(
        interval=interval,
        receive_buffer=rcvbuf,
        packet_mode=packet_mode,
        trunc_len=trunc_len,
        queue_len=queue_len,
        software=origin in ("sw", "all"),
        hardware=origin in ("hw", "all"),
    )

    def new_pipeline(decoder: DatagramDecoder, start: float) -> Pipeline:
        metrics.monitoring_started(start)
        # Packet mode is chosen for the reasons, and the tracepoint always has them: count
        # by them (summary alerts carry none).
        by_reason = packet_mode or tracepoint
        aggregator = IntervalAggregator(interval=interval, start=start, by_reason=by_reason)
        return Pipeline(decoder, aggregator, metrics.interval)

    def on_started() -> None:
        mode = "packet mode, by reason" if packet_mode else "summary mode"
        if tracepoint:
            mode = "skb:kfree_skb tracepoint, by reason"
        click.echo(f"Monitoring for dropped packets ({mode}); metrics at {url}")

    try:
        if tracepoint:
            from netdm.engine.tracepoint_monitor import TracepointMonitor

            return TracepointMonitor(settings, new_pipeline, on_started=on_started).run()
        return LiveMonitor(settings, new_pipeline, on_started=on_started).run()
    finally:
        metrics.monitoring_stopped()
