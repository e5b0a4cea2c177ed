"""`config`, `stats` and `stop` over a fake control socket: output, errors, exit codes."""

from __future__ import annotations

from types import TracebackType

import pytest
from click.testing import CliRunner, Result

import netdm.netlink.diagnose
from netdm.cli.main import main
from netdm.errors import BusyError, ExitCode, FamilyNotFoundError
from netdm.netlink.control import KernelConfig, KernelStats
from netdm.proto.constants import AlertMode


class FakeControl:
    """Answers like a kernel; ``None`` replies are what kernels before 5.4 give."""

    def __init__(self, config: KernelConfig | None, stats: KernelStats | None) -> None:
        self.config, self.stats = config, stats
        self.requests: list[str] = []
        self.closed = False

    def __enter__(self) -> FakeControl:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.closed = True

    def set_config(self, **changes: object) -> None:
        self.requests.append(f"set_config {changes}")
        if self.stats is None:
            raise BusyError("the configuration cannot change while drop monitoring is on")

    def get_config(self) -> KernelConfig | None:
        return self.config

    def get_stats(self) -> KernelStats | None:
        return self.stats

    def stop(self, *, sw: bool, hw: bool) -> None:
        self.requests.append(f"stop sw={sw} hw={hw}")


def run(
    monkeypatch: pytest.MonkeyPatch, control: FakeControl | None, *args: str
) -> tuple[Result, FakeControl | None]:
    def open_kernel_control() -> tuple[FakeControl, FakeControl]:
        if control is None:
            raise FamilyNotFoundError("this kernel has no drop monitor")
        return control, control  # the transport is closed by `with`, as the real one

    monkeypatch.setattr(netdm.netlink.diagnose, "open_kernel_control", open_kernel_control)
    return CliRunner().invoke(main, list(args)), control


CONFIG = KernelConfig(alert_mode=AlertMode.PACKET, trunc_len=0, queue_len=1000)
STATS = KernelStats(sw_dropped=3, hw_dropped=0)


def test_config_is_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    result, _ = run(monkeypatch, FakeControl(CONFIG, STATS), "config")
    assert result.exit_code == 0
    assert result.stdout == (
        "alert mode: packet\ntruncation length: none (whole packets)\n"
        "queue length: 1000 packets per CPU\n"
    )
    result, _ = run(monkeypatch, FakeControl(CONFIG, STATS), "config", "--json")
    assert result.stdout == '{"alert_mode": "packet", "trunc_len": 0, "queue_len": 1000}\n'


def test_config_changes_and_its_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    result, control = run(monkeypatch, FakeControl(CONFIG, None), "config", "--queue-len", "9")
    assert result.exit_code == int(ExitCode.BUSY)
    assert result.stdout == ""
    assert result.stderr == ("Error: the configuration cannot change while drop monitoring is on\n")
    assert control is not None and control.closed


def test_kernels_before_5_4_have_no_config_or_stats(monkeypatch: pytest.MonkeyPatch) -> None:
    result, _ = run(monkeypatch, FakeControl(None, None), "config")
    assert (result.exit_code, result.stderr) == (
        int(ExitCode.ERROR),
        "Error: this kernel (before 5.4) has no configuration to read\n",
    )
    result, _ = run(monkeypatch, FakeControl(None, None), "stats")
    assert (result.exit_code, result.stderr) == (
        int(ExitCode.ERROR),
        "Error: this kernel (before 5.4) keeps no drop-monitor statistics\n",
    )


def test_stats_and_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    result, _ = run(monkeypatch, FakeControl(CONFIG, STATS), "stats", "--json")
    assert result.stdout == '{"sw_dropped": 3, "hw_dropped": 0}\n'
    result, control = run(monkeypatch, FakeControl(CONFIG, STATS), "stop", "--no-hw")
    assert result.stdout == "drop monitoring is stopped\n"
    assert control is not None and control.requests == ["stop sw=True hw=False"]


@pytest.mark.parametrize("command", ["config", "stats", "stop"])
def test_no_family_is_exit_3(monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    result, _ = run(monkeypatch, None, command)
    assert result.exit_code == int(ExitCode.NO_FAMILY)
    assert result.stderr == "Error: this kernel has no drop monitor\n"
