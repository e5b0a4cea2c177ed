"""The long fuzz script, run small in-process, so that it cannot rot.

Strategy: ``fuzz_decoders.run`` with a few thousand inputs and a fixed seed
must find the contract holding on every target, and every check must have
run (reference comparisons, renderings, replays).  The harness itself is then
shown to catch what it claims to: a decoder that raises the wrong exception,
a hang and a memory blow-up each become a saved, replayable failure.  The
million-input run and its result are in docs/fuzzing.md.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import fuzz_decoders
import pytest
from fuzz_decoders import Options, run

from netdm.proto import ProtocolError


def small(tmp_path: Path, inputs: int = 3000, **changes: object) -> Options:
    options = Options(inputs=inputs, seed=20240607, failures=tmp_path / "failures")
    for name, value in changes.items():
        setattr(options, name, value)
    return options


def test_the_contract_holds_on_a_quick_run(tmp_path: Path) -> None:
    report = run(small(tmp_path, reference_every=10, render_every=3, replay_every=4))
    assert report.ok, [(f.kind, f.target, f.message[-300:]) for f in report.failures]
    assert sum(target.inputs for target in report.targets.values()) == 3000
    datagram, headers, capture = (
        report.targets[name] for name in ("datagram", "headers", "capture")
    )
    assert datagram.inputs and headers.inputs and capture.inputs
    # Each kind of outcome and each sampled check was reached, not only the easy ones.
    assert datagram.outcomes.get("events") and datagram.outcomes.get("ProtocolError")
    assert {"scan:sites", "scan:none", "scan:error"} <= set(datagram.checks)
    assert datagram.checks.get("reference:events") and datagram.checks.get("reference:error")
    assert datagram.checks.get("rendered alerts") and headers.checks.get("reference")
    assert capture.outcomes.get("records") and capture.outcomes.get("CaptureError at open")
    assert any(outcome.startswith("CaptureError after") for outcome in capture.outcomes)
    assert capture.checks.get("replay: replayed")
    assert report.peak_rss_mb >= report.baseline_rss_mb > 0
    assert not (tmp_path / "failures").exists()


def test_a_wrong_exception_is_saved_and_replays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = fuzz_decoders.decode_datagram

    def broken(data: bytes, family_id: int) -> object:
        if len(data) % 7 == 3:
            raise IndexError("a decoder bug")
        return real(data, family_id)

    monkeypatch.setattr(fuzz_decoders, "decode_datagram", broken)
    report = run(small(tmp_path, inputs=400))
    failures = [failure for failure in report.failures if failure.kind == "exception"]
    assert failures and all(failure.target == "datagram" for failure in failures)
    assert "IndexError: a decoder bug" in failures[0].message
    saved = Path(failures[0].saved or "")
    description = json.loads(saved.read_text())
    assert description["target"] == "datagram" and description["kind"] == "exception"
    assert len((saved.parent / description["data"]).read_bytes()) % 7 == 3
    assert fuzz_decoders.main(["--replay", str(saved)]) == 1  # still broken
    monkeypatch.setattr(fuzz_decoders, "decode_datagram", real)
    assert fuzz_decoders.main(["--replay", str(saved)]) == 0  # fixed


def test_a_disagreement_with_the_reference_is_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def off_by_one(data: bytes, family_id: int) -> object:
        raise ProtocolError("always wrong", len(data) + 1)

    monkeypatch.setattr(fuzz_decoders, "decode_datagram_reference", off_by_one)
    report = run(small(tmp_path, inputs=300, reference_every=1))
    assert {failure.kind for failure in report.failures} == {"disagreement"}


def test_a_hang_is_interrupted_and_saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = fuzz_decoders.describe_packet
    hung: list[int] = []

    def hangs_once(proto: int | None, payload: bytes) -> object:
        if not hung:
            hung.append(1)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # a pure-Python endless loop, bounded here
                pass
        return real(proto, payload)

    monkeypatch.setattr(fuzz_decoders, "describe_packet", hangs_once)
    started = time.monotonic()
    report = run(small(tmp_path, inputs=200, hang_seconds=1.0))
    assert time.monotonic() - started < 15
    kinds = {failure.kind for failure in report.failures}
    assert "hang" in kinds and "slow" not in kinds  # interrupted before it counted as slow
    assert list((tmp_path / "failures").glob("headers-*-hang.json"))


def test_memory_growth_is_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = fuzz_decoders.scan_drop_sites
    kept: list[bytes] = []

    def leaks(data: bytes, family_id: int) -> object:
        if len(kept) < 40:
            kept.append(bytes(2 * 1024 * 1024) + data)  # 80 MB in all, touched
        return real(data, family_id)

    monkeypatch.setattr(fuzz_decoders, "scan_drop_sites", leaks)
    report = run(small(tmp_path, inputs=2500, max_growth_mb=40.0))
    assert [failure.kind for failure in report.failures] == ["memory"]
    assert report.peak_rss_mb - report.baseline_rss_mb > 40
