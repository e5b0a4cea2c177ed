"""``netdm doctor``: the checks of :mod:`netdm.engine.doctor`, printed one per line."""

from __future__ import annotations

import sys

import click


@click.command()
def doctor() -> None:
    """Check whether netdm can work here, and say what is missing.

    Looks at the kernel's drop monitor (module, configuration, network
    namespace), this process's capabilities for each step, the features of
    this kernel (packet mode 5.4+, drop reasons 5.18+), the skb:kfree_skb
    tracepoint that `watch` falls back to without NET_DM, and kernel symbols.
    Exits 0 when netdm watch has a drop source here, 3 when it has none.
    """
    from netdm.engine.doctor import run_doctor

    report = run_doctor()
    for finding in report.findings:
        click.echo(f"{'ok     ' if finding.ok else 'problem'}  {finding.message}")
    sys.exit(int(report.exit_code))
