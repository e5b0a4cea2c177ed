"""`netdm watch --json` against docs/schema/netdm-output-v1.schema.json (docs/json.md).

Only real outputs are validated: the golden replays of the real-kernel
captures (captures/*.json), fresh packet-mode replays of a real capture, and
the examples in docs/json.md (copied from runs on Debian's 6.1 kernel in the
project's VM).  Besides the per-line schema, the order of the lines and the
totals are checked, as docs/json.md describes them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

jsonschema = pytest.importorskip(
    "jsonschema", reason="jsonschema is a test extra: pip install -e '.[test]'"
)

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "docs" / "schema" / "netdm-output-v1.schema.json"
JSON_DOC = REPO / "docs" / "json.md"
GOLDENS = sorted((REPO / "captures").glob("*.json"))
PACKET_CAPTURE = "captures/packet-udp-loopback.pcapng"

Objects = list[dict[str, Any]]


@pytest.fixture(scope="module")
def validator() -> Any:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def json_lines(text: str) -> Objects:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def skip_without_version(objects: Objects, where: str) -> None:
    # The version/source/tracefs_lost fields arrived with the tracepoint source;
    # outputs made before it cannot match schema version 1.
    start = next((obj for obj in objects if obj.get("type") == "start"), None)
    if start is None or "version" not in start:
        pytest.skip(
            f'{where} has no "version" in its start object: it predates schema version 1 '
            "(regenerate the golden replays, tests/capture/test_captures.py)"
        )


def assert_valid(validator: Any, objects: Objects, where: str) -> None:
    problems = [
        f"{where}, object {number}: {error.message} (at /{'/'.join(map(str, error.path))})"
        for number, obj in enumerate(objects, 1)
        for error in validator.iter_errors(obj)
    ]
    assert not problems, "\n".join(problems[:20])


def assert_stream_order(objects: Objects, where: str) -> None:
    """Notices anywhere; one start before everything else; one stop, last; totals add up."""
    kinds = [obj["type"] for obj in objects]
    others = [kind for kind in kinds if kind != "notice"]
    assert others[0] == "start" and others.count("start") == 1, (where, kinds)
    assert kinds[-1] == "stop" and kinds.count("stop") == 1, (where, kinds)
    intervals = [obj for obj in objects if obj["type"] == "interval"]
    for interval in intervals:
        counted = sum(entry["count"] for entry in interval["entries"] + interval["hw_entries"])
        assert interval["total"] == counted, (where, interval)
    stop = objects[-1]
    assert stop["intervals"] == len(intervals), where
    assert stop["total"] == sum(interval["total"] for interval in intervals), where
    for key in stop["lost"]:
        assert stop["lost"][key] == sum(interval["lost"][key] for interval in intervals), key


def test_the_schema_is_a_valid_draft_2020_12_schema(validator: Any) -> None:
    assert validator.schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert validator.schema["$defs"]["start"]["properties"]["version"] == {
        "description": "The version of this schema.",
        "const": 1,
    }


@pytest.mark.parametrize("golden", GOLDENS, ids=[path.name for path in GOLDENS])
def test_golden_replays_match_the_schema(validator: Any, golden: Path) -> None:
    objects = json_lines(golden.read_text())
    skip_without_version(objects, f"captures/{golden.name}")
    assert_valid(validator, objects, golden.name)
    assert_stream_order(objects, golden.name)


@pytest.mark.parametrize(
    "options",
    [
        [],
        ["--by-reason", "--payload", "base64"],
        ["--exclude-reason", "NOT_SPECIFIED", "--protocol", "udp"],
        ["--summaries-only"],
    ],
    ids=["plain", "by-reason-base64", "filtered", "summaries-only"],
)
def test_packet_mode_replay_matches_the_schema(validator: Any, options: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "netdm", "watch", "--json", *options, "-r", PACKET_CAPTURE],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "TZ": "UTC"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    objects = json_lines(result.stdout)
    skip_without_version(objects, f"netdm watch --json -r {PACKET_CAPTURE}")
    kinds = {obj["type"] for obj in objects}
    assert ("packet" in kinds) != ("--summaries-only" in options)
    assert_valid(validator, objects, " ".join(options) or "plain replay")
    assert_stream_order(objects, " ".join(options) or "plain replay")
    # Every lost object carries socket_dropped; a capture does not record it: 0 (json.md).
    losses = [obj["lost"] for obj in objects if "lost" in obj]
    assert losses and all(lost["socket_dropped"] == 0 for lost in losses)


def doc_examples() -> list[tuple[str, Objects]]:
    """Every ```json block of docs/json.md: one pretty-printed object, or JSON lines."""
    examples = []
    for number, block in enumerate(re.findall(r"```json\n(.*?)```", JSON_DOC.read_text(), re.S)):
        try:
            objects = [json.loads(block)]
        except json.JSONDecodeError:
            objects = json_lines(block)
        examples.append((f"docs/json.md block {number + 1}", objects))
    return examples


def test_the_examples_in_json_md_match_the_schema(validator: Any) -> None:
    examples = doc_examples()
    assert len(examples) >= 4
    kinds = set()
    for where, objects in examples:
        assert_valid(validator, objects, where)
        kinds.update(obj["type"] for obj in objects)
    assert kinds == {"start", "notice", "interval", "packet", "stop"}


def test_the_schema_rejects_what_version_1_does_not_have(validator: Any) -> None:
    lost = {"enobufs": 0, "decode_errors": 0, "sw_tail_drops": 0, "hw_tail_drops": 0}
    stop = {"type": "stop", "intervals": 1, "total": 0, "filtered": 0}
    assert validator.is_valid({**stop, "lost": {**lost, "tracefs_lost": 0}})
    assert not validator.is_valid({**stop, "lost": lost})  # tracefs_lost is required
    # socket_dropped came later within version 1: netdm writes it, older outputs lack it.
    exact = {**lost, "tracefs_lost": 0, "socket_dropped": 945483}
    assert validator.is_valid({**stop, "lost": exact})
    assert not validator.is_valid({**stop, "lost": {**exact, "socket_dropped": -1}})
    assert not validator.is_valid({**stop, "lost": {**exact, "socket_drops": 1}})
    start = {"type": "start", "version": 1, "source": "netdm", "symbols": "no symbols"}
    assert validator.is_valid(start)
    assert not validator.is_valid({**start, "version": 2})
    assert not validator.is_valid({**start, "source": "bpf"})
    assert not validator.is_valid({"type": "start", "symbols": "no symbols"})
    assert not validator.is_valid({**start, "undocumented": True})
    assert not validator.is_valid({"type": "summary"})
