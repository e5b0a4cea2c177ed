"""`netdm doctor`'s run: the findings in reading order, and whether watch has a source."""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

import pytest

import netdm.netlink.transport
import netdm.tracepoint.tracefs
from netdm.engine.doctor import run_doctor
from netdm.errors import ExitCode, FamilyNotFoundError
from netdm.netlink.diagnose import SystemFiles

RELEASE = "6.1.0-99-amd64"
BOTH_CAPABILITIES = f"{(1 << 12) | (1 << 21):x}"


def fake_system(tmp_path: Path) -> SystemFiles:
    proc, boot = tmp_path / "proc", tmp_path / "boot"
    (proc / "self").mkdir(parents=True)
    boot.mkdir()
    (boot / f"config-{RELEASE}").write_text("# CONFIG_NET_DROP_MONITOR is not set\n")
    (proc / "self" / "status").write_text(f"Name:\tnetdm\nCapEff:\t{BOTH_CAPABILITIES}\n")
    (proc / "kallsyms").write_text("ffffffff81000000 T _stext\n")
    (proc / "modules").write_text("")
    return SystemFiles(release=RELEASE, proc=proc, boot=boot, modules=tmp_path / "modules")


class NoFamily:
    def __init__(self, receive_buffer: int) -> None:
        raise FamilyNotFoundError("no NET_DM")


class Features:
    family_id = 0x1C
    maxattr = 23
    ops = {"START": 1}


class FakeTransport:
    features = Features()

    def __init__(self, receive_buffer: int) -> None:
        pass

    def __enter__(self) -> FakeTransport:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        pass


def doctor_with(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, transport: type, tracepoint_ok: bool
) -> tuple[list[str], ExitCode]:
    monkeypatch.setattr(netdm.netlink.transport, "NetlinkTransport", transport)
    status = (tracepoint_ok, "skb:kfree_skb tracepoint in /sys/kernel/tracing")
    monkeypatch.setattr(netdm.tracepoint.tracefs, "tracepoint_status", lambda: status)
    report = run_doctor(fake_system(tmp_path))
    lines = [
        f"{'ok' if finding.ok else 'problem'} {finding.message}" for finding in report.findings
    ]
    return lines, report.exit_code


def test_without_net_dm_the_tracepoint_is_the_source(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lines, exit_code = doctor_with(monkeypatch, tmp_path, NoFamily, tracepoint_ok=True)
    root = [] if os.geteuid() == 0 else ["problem not running as root"]
    assert lines == [
        f"ok kernel {RELEASE}",
        f"problem this kernel ({RELEASE}) was built without CONFIG_NET_DROP_MONITOR "
        f"({tmp_path}/boot/config-{RELEASE}), so it has no drop monitor",
        "ok fallback source: skb:kfree_skb tracepoint in /sys/kernel/tracing: netdm watch "
        "uses it (summaries only)",
        "ok CAP_NET_ADMIN held: needed to configure the monitor (and to start/stop it on 6.7+)",
        "ok CAP_SYS_ADMIN held: may join the 'events' group",
        *root,
        "ok /proc/kallsyms gives addresses: drop locations get names",
    ]
    assert exit_code == ExitCode.OK


def test_with_neither_source_doctor_exits_no_family(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lines, exit_code = doctor_with(monkeypatch, tmp_path, NoFamily, tracepoint_ok=False)
    assert "problem fallback source: skb:kfree_skb tracepoint in /sys/kernel/tracing" in lines
    assert exit_code == ExitCode.NO_FAMILY


def test_with_net_dm_its_features_follow(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    lines, exit_code = doctor_with(monkeypatch, tmp_path, FakeTransport, tracepoint_ok=False)
    assert lines[1:5] == [
        "ok NET_DM family id 28, maxattr 23, commands ['START']",
        "ok packet mode (--packets) available",
        "ok drop reasons available",
        "ok fallback source: skb:kfree_skb tracepoint in /sys/kernel/tracing",
    ]
    assert exit_code == ExitCode.OK
