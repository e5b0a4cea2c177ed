"""``netdm doctor``: can netdm work here, and what is missing?

Strategy: every check produces a :class:`Finding` (ok or a problem, and one
sentence); the run collects them in the order a person reads them (kernel,
NET_DM, its features, the tracepoint fallback, capabilities, symbols) and
says whether `watch` has a drop source.  It sits above both kernel sources
because it asks both; printing is the caller's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from netdm.errors import ExitCode, FamilyNotFoundError, KernelRequestError
from netdm.netlink import diagnose
from netdm.netlink.diagnose import Finding, SystemFiles


@dataclass(frozen=True, slots=True)
class DoctorReport:
    """The findings, and whether `watch` has a drop source (NET_DM or the tracepoint)."""

    findings: list[Finding]
    has_drop_source: bool

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.has_drop_source else ExitCode.NO_FAMILY


def run_doctor(files: SystemFiles | None = None) -> DoctorReport:
    """Check this system (``files``: the running one unless given)."""
    files = files or SystemFiles.running()
    findings = [Finding(True, f"kernel {files.release}")]
    net_dm, maxattr = _net_dm_finding(files)
    findings.append(net_dm)
    net_dm_usable = net_dm.ok
    if net_dm_usable:
        findings += diagnose.feature_findings(files.release, maxattr)
    from netdm.tracepoint.tracefs import tracepoint_status

    tracepoint_ok, tracepoint_message = tracepoint_status()
    if net_dm_usable:  # informational: NET_DM works, the fallback is not needed
        findings.append(Finding(True, f"fallback source: {tracepoint_message}"))
    else:
        uses_it = ": netdm watch uses it (summaries only)" if tracepoint_ok else ""
        findings.append(Finding(tracepoint_ok, f"fallback source: {tracepoint_message}{uses_it}"))
    findings += _stale_instance_findings()
    findings += diagnose.capability_findings(files)
    if os.geteuid() != 0:
        findings.append(Finding(False, "not running as root"))
    findings.append(diagnose.kallsyms_finding(files))
    return DoctorReport(findings, has_drop_source=net_dm_usable or tracepoint_ok)


def _net_dm_finding(files: SystemFiles) -> tuple[Finding, int | None]:
    """Whether the family resolves (and its maxattr): resolving may load the module."""
    loaded_before = diagnose.module_loaded(files)
    try:
        from netdm.netlink.transport import NetlinkTransport

        with NetlinkTransport(receive_buffer=64 * 1024) as transport:
            features = transport.features
    except FamilyNotFoundError:
        return Finding(False, diagnose.explain_missing_family(files)), None
    except KernelRequestError as error:
        return Finding(False, str(error)), None
    how = ""
    if not loaded_before and diagnose.module_loaded(files):
        how = " (resolving it loaded the drop_monitor module)"
    finding = Finding(
        True,
        f"NET_DM family id {features.family_id}, maxattr "
        f"{features.maxattr}, commands {list(features.ops)}{how}",
    )
    return finding, features.maxattr


def _stale_instance_findings() -> list[Finding]:
    """tracefs instances a killed netdm left behind (none where tracefs cannot be read)."""
    import contextlib
    from pathlib import Path

    from netdm.errors import NetdmError
    from netdm.tracepoint.tracefs import find_tracefs, stale_instances

    stale: list[Path] = []
    with contextlib.suppress(NetdmError, OSError):
        stale = stale_instances(find_tracefs(mount=False))
    if not stale:
        return []
    noun = "instance" if len(stale) == 1 else "instances"
    names = ", ".join(str(path) for path in stale)
    return [
        Finding(False, f"stale tracefs {noun} left by a killed netdm: {names} (fix: netdm stop)")
    ]
