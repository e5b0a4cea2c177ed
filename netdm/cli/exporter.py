"""``netdm exporter``: drop counts as Prometheus metrics.

Strategy: parse the options, let :mod:`netdm.engine.exporting` choose the
source and alert mode against this kernel, serve the metrics, and run the
watch life cycle with them as the interval sink.  The port is taken before
the kernel is touched, so a port in use changes nothing.
"""

from __future__ import annotations

import click

from netdm.cli.options import (
    EXPORTER_TRUNC_LEN,
    MAX_SERIES,
    interval_option,
    origin_option,
    queue_len_option,
    rcvbuf_option,
    source_option,
    symbols_option,
    trunc_len_option,
)
from netdm.errors import NetdmError


@click.command()
@click.option(
    "--listen",
    required=True,
    metavar="ADDR:PORT",
    help="Where to serve /metrics: 127.0.0.1:9977, [::1]:9977, or :9977 for every IPv4 "
    "address.  Port 0 picks a free port (printed at start).",
)
@interval_option(1.0, help="Seconds per interval: the counters grow at the end of each one.")
@click.option(
    "--mode",
    type=click.Choice(["auto", "packet", "summary"]),
    default="auto",
    show_default=True,
    help="Alert mode.  packet: drops by location and reason (reasons need 5.18+), but under "
    "a storm the kernel's queues overflow (netdm_kernel_queue_drops_total).  summary: "
    "cheap counts by location, no reasons.  auto: packet when the kernel reports reasons.",
)
@trunc_len_option(
    EXPORTER_TRUNC_LEN,
    help="Packet mode: bytes of each dropped packet the kernel copies (the exporter reads "
    "none of them; 0 would mean whole packets).",
)
@queue_len_option(
    help="Packet mode: alerts each CPU may queue before the kernel discards them.",
)
@origin_option(help="Software drops, hardware drops (devlink traps), or both.")
@click.option(
    "--max-locations",
    type=click.IntRange(min=1, max=MAX_SERIES),
    default=50,
    show_default=True,
    help="Distinct locations per origin with a series of their own; later ones are "
    'counted as location="other".',
)
@click.option(
    "--max-reasons",
    type=click.IntRange(min=1, max=MAX_SERIES),
    default=64,
    show_default=True,
    help='Distinct drop reasons with a series of their own; later ones are reason="other".',
)
@symbols_option()
@rcvbuf_option()
@source_option(
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
    from netdm.engine.exporting import choose_exporter_source, run_exporter
    from netdm.engine.symbol_sources import choose_symbols
    from netdm.output.exporter import DropMetrics, MetricsServer, new_registry, parse_listen_address
    from netdm.textsafe import escape_for_terminal

    try:
        host, port = parse_listen_address(listen)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--listen") from None
    symbols = choose_symbols(symbols_file, None)
    for notice in symbols.notices():
        click.echo(f"netdm: {escape_for_terminal(notice)}", err=True)
    if source == "tracepoint" and origin != "sw":
        raise click.UsageError("--origin hw/all needs NET_DM: the tracepoint sees no traps")
    choice = choose_exporter_source(source, mode, origin)
    if choice.net_dm_missing is not None:
        missing = escape_for_terminal(choice.net_dm_missing)
        click.echo(f"netdm: using the skb:kfree_skb tracepoint: {missing}", err=True)
    metrics = DropMetrics(
        symbols,
        max_locations=max_locations,
        max_reasons=max_reasons,
        source=choice.source,
        alert_mode=choice.alert_mode,
        origin=origin,
    )
    try:
        server = MetricsServer(new_registry(metrics), host, port)
    except OSError as error:  # before the kernel is touched: a taken port changes nothing
        reason = error.strerror or str(error)
        raise NetdmError(f"cannot serve metrics on {listen}: {reason}") from None
    with server:

        def started() -> None:
            click.echo(
                f"Monitoring for dropped packets ({choice.describe()}); metrics at {server.url}"
            )

        totals = run_exporter(
            metrics,
            choice,
            started,
            interval=interval,
            trunc_len=trunc_len,
            queue_len=queue_len,
            origin=origin,
            rcvbuf=rcvbuf,
        )
    click.echo("Stopping dropped packet monitor")
    click.echo(f"Total: {totals.drops} drops counted in {totals.intervals} intervals")
