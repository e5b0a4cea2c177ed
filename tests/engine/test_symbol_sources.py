"""Which symbols a run uses: this machine's for a live run, the recording's for a replay."""

from __future__ import annotations

from pathlib import Path

from netdm.engine.symbol_sources import choose_symbols

CAPTURES = Path(__file__).resolve().parents[2] / "captures"


def test_a_replay_uses_the_symbols_the_capture_carries() -> None:
    path = str(CAPTURES / "summary-udp-loopback.pcapng")
    symbols = choose_symbols(None, path)
    assert symbols.source_description.startswith(f"the symbols recorded in {path} (")


def test_a_capture_without_symbols_says_why_addresses_print_raw() -> None:
    path = str(CAPTURES / "summary-udp-nlmon.pcap")
    symbols = choose_symbols(None, path)
    assert symbols.source_description == "no symbols"
    assert [f"{path} carries no kernel symbols" in notice for notice in symbols.notices()] == [True]


def test_symbols_given_win_over_the_capture(tmp_path: Path) -> None:
    system_map = tmp_path / "System.map"
    system_map.write_text("ffffffff81000000 T _stext\nffffffff81001000 T udp_rcv\n")
    symbols = choose_symbols(str(system_map), str(CAPTURES / "summary-udp-loopback.pcapng"))
    found = symbols.lookup(0xFFFFFFFF81001004)
    assert found is not None and found.name == "udp_rcv"
