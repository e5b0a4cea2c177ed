"""The "no NET_DM family" sentences, each case produced in a fake system tree."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from netdm.netlink.diagnose import (
    SystemFiles,
    explain_missing_family,
    kallsyms_finding,
    kernel_config_value,
)

RELEASE = "6.1.0-99-amd64"


def make_tree(
    tmp_path: Path,
    *,
    config: str | None = None,
    config_gz: str | None = None,
    module: bool = False,
    loaded: bool = False,
    other_netns: bool = False,
) -> SystemFiles:
    proc, boot, modules = tmp_path / "proc", tmp_path / "boot", tmp_path / "lib-modules"
    for directory in (proc / "self" / "ns", proc / "1" / "ns", boot, modules):
        directory.mkdir(parents=True)
    (proc / "self" / "ns" / "net").write_text("ours")
    if other_netns:
        (proc / "1" / "ns" / "net").write_text("init")
    else:
        os.link(proc / "self" / "ns" / "net", proc / "1" / "ns" / "net")  # same inode
    if config is not None:
        (boot / f"config-{RELEASE}").write_text(config)
    if config_gz is not None:
        with gzip.open(proc / "config.gz", "wt") as compressed:
            compressed.write(config_gz)
    if module:
        kernel_net = modules / RELEASE / "kernel" / "net" / "core"
        kernel_net.mkdir(parents=True)
        (kernel_net / "drop_monitor.ko.xz").write_bytes(b"")
    (proc / "modules").write_text("drop_monitor 32768 0 - Live 0x0\n" if loaded else "")
    return SystemFiles(release=RELEASE, proc=proc, boot=boot, modules=modules)


def test_other_network_namespace_is_named_first(tmp_path: Path) -> None:
    files = make_tree(tmp_path, config="CONFIG_NET_DROP_MONITOR=m\n", other_netns=True)
    assert "initial network namespace" in explain_missing_family(files)


def test_kernel_built_without_drop_monitor(tmp_path: Path) -> None:
    files = make_tree(tmp_path, config="# CONFIG_NET_DROP_MONITOR is not set\n")
    sentence = explain_missing_family(files)
    assert f"this kernel ({RELEASE}) was built without CONFIG_NET_DROP_MONITOR" in sentence


def test_proc_config_gz_is_preferred(tmp_path: Path) -> None:
    files = make_tree(
        tmp_path, config="CONFIG_NET_DROP_MONITOR=m\n", config_gz="CONFIG_NET_DROP_MONITOR=y\n"
    )
    assert kernel_config_value(files) == ("y", str(files.proc / "config.gz"))


def test_module_not_installed(tmp_path: Path) -> None:
    files = make_tree(tmp_path, config="CONFIG_NET_DROP_MONITOR=m\n")
    assert "is not installed under" in explain_missing_family(files)


def test_module_installed_but_not_loaded(tmp_path: Path) -> None:
    files = make_tree(tmp_path, config="CONFIG_NET_DROP_MONITOR=m\n", module=True)
    assert "run 'modprobe drop_monitor' as root" in explain_missing_family(files)


def test_no_config_and_no_module(tmp_path: Path) -> None:
    files = make_tree(tmp_path)
    assert "probably lacks the drop monitor" in explain_missing_family(files)


@pytest.mark.parametrize("value", ["y", "m"])
def test_config_values_are_read(tmp_path: Path, value: str) -> None:
    files = make_tree(tmp_path, config=f"CONFIG_X=y\nCONFIG_NET_DROP_MONITOR={value}\n")
    assert kernel_config_value(files) == (value, str(files.boot / f"config-{RELEASE}"))


def test_kallsyms_with_per_cpu_symbols_at_zero_is_not_hidden(tmp_path: Path) -> None:
    files = make_tree(tmp_path)
    (files.proc / "kallsyms").write_text(
        "0000000000000000 A fixed_percpu_data\nffffffff81000000 T _text\n"
    )
    assert kallsyms_finding(files).ok
    (files.proc / "kallsyms").write_text(
        "0000000000000000 A fixed_percpu_data\n0000000000000000 T _text\n"
    )
    assert not kallsyms_finding(files).ok
