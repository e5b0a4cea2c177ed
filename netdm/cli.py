"""The ``netdm`` command line: thin click commands over the library.

Strategy: each command opens the library objects, runs them and hands the
results to a renderer.  Library errors (:class:`netdm.errors.NetdmError`)
become one ``Error: …`` line on stderr and their own exit code; nothing here
decodes bytes or talks to sockets.  Heavy modules are imported inside the
commands so that ``netdm --help`` starts fast.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from netdm import __version__
from netdm.errors import ExitCode, NetdmError

EXIT_CODES_HELP = """
\b
Exit codes:
  0  success          3  no NET_DM family here     6  configuration busy
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
@click.option(
    "-c", "--count", type=click.IntRange(min=1), help="Stop after this many summaries."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per summary (JSON lines).")
@click.option(
    "--passive",
    is_flag=True,
    help="Only listen: configure and start nothing (another tool controls the monitor).",
)
@click.option(
    "--symbols",
    "symbols_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Resolve addresses with this System.map or kallsyms file instead of /proc/kallsyms.",
)
@click.option(
    "-v", "--verbose", is_flag=True, help="Show symbol+offset [module] instead of function names."
)
@click.option(
    "--rcvbuf",
    type=click.IntRange(min=4096),
    help="Socket receive buffer in bytes (default 16 MiB).",
)
def watch(
    interval: float,
    duration: float | None,
    count: int | None,
    as_json: bool,
    passive: bool,
    symbols_file: str | None,
    verbose: bool,
    rcvbuf: int | None,
) -> None:
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
    """
    from netdm.aggregate import IntervalAggregator
    from netdm.render import make_renderer
    from netdm.session import LiveMonitor, Pipeline, WatchSettings
    from netdm.symbols import SymbolTable

    symbols = SymbolTable.load(system_map=symbols_file)
    renderer = make_renderer(
        json_lines=as_json, out=sys.stdout, symbols=symbols, verbose=verbose
    )
    settings = WatchSettings(
        interval=interval,
        duration=duration,
        count=count,
        passive=passive,
        receive_buffer=rcvbuf,
    )

    def new_pipeline(family_id: int, start: float) -> Pipeline:
        return Pipeline(
            family_id, IntervalAggregator(interval=interval, start=start), renderer.interval
        )

    monitor = LiveMonitor(settings, new_pipeline, on_started=renderer.start)
    try:
        for notice in symbols.notices():
            renderer.notice(notice)
        totals = monitor.run()
    except NetdmError as error:
        _fail(error)
    except BrokenPipeError:
        # `netdm watch | head -1`: the kernel side was already cleaned up on the way out.
        _silence_broken_pipe()
        sys.exit(int(ExitCode.OK))
    try:
        renderer.stop(totals)
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_broken_pipe()


def _silence_broken_pipe() -> None:
    """Keep Python from complaining again when it flushes stdout at exit."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
