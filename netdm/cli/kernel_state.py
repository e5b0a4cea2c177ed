"""The kernel-state commands: ``config``, ``stats`` and ``stop``.

Strategy: one request each over a control socket whose "no family" error
names the cause (:func:`netdm.netlink.diagnose.open_kernel_control`), then
the answer as text or JSON.  Errors go to the group's error boundary.
"""

from __future__ import annotations

import click

from netdm.cli.options import MAX_U32
from netdm.errors import NetdmError


@click.command()
@click.option(
    "--mode",
    type=click.Choice(["summary", "packet"]),
    help="Alert mode: a count per location every second, or every packet.",
)
@click.option(
    "--trunc-len",
    type=click.IntRange(min=0, max=MAX_U32),
    help="Packet mode: bytes kept (0: all).",
)
@click.option(
    "--queue-len",
    type=click.IntRange(min=1, max=MAX_U32),
    help="Packet mode: per-CPU queue of packets.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the configuration as JSON.")
def config(mode: str | None, trunc_len: int | None, queue_len: int | None, as_json: bool) -> None:
    """Show the drop monitor's configuration, or change it.

    The configuration is global and stays after netdm exits (netdm watch
    restores what it found; this command exists to change it).  Changing it
    needs CAP_NET_ADMIN and is refused while monitoring is on.
    """
    from netdm.netlink.diagnose import open_kernel_control
    from netdm.proto.constants import AlertMode

    transport, control = open_kernel_control()
    with transport:
        if mode is not None or trunc_len is not None or queue_len is not None:
            control.set_config(
                alert_mode=None if mode is None else AlertMode[mode.upper()],
                trunc_len=trunc_len,
                queue_len=queue_len,
            )
        current = control.get_config()
    if current is None:
        raise NetdmError("this kernel (before 5.4) has no configuration to read")
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


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the counters as JSON.")
def stats(as_json: bool) -> None:
    """Show the kernel's cumulative drop-monitor loss counters.

    They count packet-mode alerts the kernel discarded because a CPU's queue
    was full (raise --queue-len), since the module was loaded.
    """
    from netdm.netlink.diagnose import open_kernel_control

    transport, control = open_kernel_control()
    with transport:
        counters = control.get_stats()
    if counters is None:
        raise NetdmError("this kernel (before 5.4) keeps no drop-monitor statistics")
    if as_json:
        import json

        click.echo(
            json.dumps({"sw_dropped": counters.sw_dropped, "hw_dropped": counters.hw_dropped})
        )
    else:
        click.echo(f"software alerts lost (queue full): {counters.sw_dropped}")
        click.echo(f"hardware alerts lost (queue full): {counters.hw_dropped}")


@click.command()
@click.option("--hw/--no-hw", default=True, show_default=True, help="Stop hardware monitoring too.")
def stop(hw: bool) -> None:
    """Stop drop monitoring left running (by a tool that was killed, say).

    Succeeds when monitoring was already off.  Needs CAP_NET_ADMIN on 6.7+.
    """
    # The tracefs instances a killed netdm left (netdm-<pid> with no such process)
    # go too, with or without NET_DM; the man page and --help stay as they were.
    from netdm.netlink.diagnose import open_kernel_control

    _remove_stale_tracefs_instances()
    transport, control = open_kernel_control()
    with transport:
        control.stop(sw=True, hw=hw)
    click.echo("drop monitoring is stopped")


def _remove_stale_tracefs_instances() -> None:
    """The tracepoint source's leftovers: removed, and one line saying how many (if any).

    Where tracefs cannot be looked into (not root, not mounted), there is nothing
    this command can remove, and it says nothing about it.
    """
    import contextlib

    from netdm.tracepoint.tracefs import find_tracefs, remove_stale_instances

    removed: list[str] = []
    with contextlib.suppress(NetdmError, OSError):
        removed = remove_stale_instances(find_tracefs(mount=False))
    if removed:
        noun = "instance" if len(removed) == 1 else "instances"
        click.echo(
            f"removed {len(removed)} stale tracefs {noun} left by a killed netdm "
            f"({', '.join(removed)})"
        )
