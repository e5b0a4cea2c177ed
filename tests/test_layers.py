"""The architecture's one-way dependencies, checked in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys


def loaded_after(import_statement: str) -> set[str]:
    code = f"import sys\n{import_statement}\nprint('\\n'.join(sorted(sys.modules)))"
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return set(output.split())


def test_protocol_layer_imports_no_io_libraries() -> None:
    modules = loaded_after("import netdm.proto, netdm.proto.encode, netdm.proto.schema")
    assert not {name for name in modules if name.startswith("pyroute2")}
    assert "netdm.transport" not in modules
    assert "click" not in modules


def test_help_does_not_load_pyroute2_or_construct() -> None:
    modules = loaded_after("import netdm.cli")
    assert not {name for name in modules if name.startswith(("pyroute2", "construct"))}


def test_tracepoint_decoding_is_pure() -> None:
    """Format files and ring-buffer pages are decoded without tracefs, sockets or sessions."""
    modules = loaded_after("import netdm.tracepoint.format, netdm.tracepoint.ringbuffer")
    assert "netdm.tracepoint.tracefs" not in modules
    assert "netdm.session" not in modules
    assert not {name for name in modules if name.startswith(("pyroute2", "construct"))}
