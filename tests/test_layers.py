"""The architecture's one-way dependencies.

The layers, bottom to top, are the folders of ``netdm/``.  A module may import
from its own folder and from any layer below its own; never from a layer above,
and never from a sibling on the same level (the two kernel sources and the
capture files know nothing of each other).  Imports inside functions count:
a lazy import that runs upward is still an upward dependency.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "netdm"

# Bottom to top.  Rooms on one line are siblings: neither may import the other.
LAYERS: list[set[str]] = [
    {"errors", "textsafe"},  # one sentence per error; escaping for the terminal
    {"proto"},  # the wire: construct definitions and what is derived from them
    {"netlink", "tracepoint", "capture"},  # kernel sources, and files
    {"engine"},  # pipeline, aggregation, run loops, symbols, packet headers
    {"output"},  # text, JSON, packet lines, metrics
    {"cli"},  # the command line
]
RANK = {room: rank for rank, rooms in enumerate(LAYERS) for room in rooms}

# The wire layer is sans-I/O, in h11's sense: bytes in, events out.
WIRE_FORBIDDEN_MODULES = {"socket", "os", "select", "time", "io", "pathlib", "shutil", "pyroute2"}
WIRE_FORBIDDEN_CALLS = {"open", "print", "input"}


def room_of_path(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def room_of_module(name: str) -> str | None:
    """The room of an absolute ``netdm.*`` module name (None: the package root)."""
    parts = name.split(".")
    if parts[0] != "netdm" or len(parts) == 1:
        return None
    return parts[1]


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"line {node.lineno}: relative import"
            module = node.module or ""
            if module == "netdm":
                found.extend((node.lineno, f"netdm.{alias.name}") for alias in node.names)
            else:
                found.append((node.lineno, module))
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_room_has_a_layer() -> None:
    rooms = {room_of_path(path) for path in MODULES} - {"__init__", "__main__"}
    assert rooms <= set(RANK), f"rooms without a layer: {rooms - set(RANK)}"


def upward_imports(room: str, source: str) -> list[str]:
    wrong = []
    for line, module in imported_modules(ast.parse(source)):
        target = room_of_module(module)
        if target is None or target == room or target not in RANK:
            continue  # the package root (__version__), its own room, or not netdm
        if RANK[target] >= RANK[room]:
            wrong.append(f"line {line}: {module} ({target}) from {room}")
    return wrong


def io_in_wire_code(source: str) -> set[str]:
    tree = ast.parse(source)
    modules = {module.split(".")[0] for _line, module in imported_modules(tree)}
    calls = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    return (modules & WIRE_FORBIDDEN_MODULES) | (calls & WIRE_FORBIDDEN_CALLS)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    room = room_of_path(path)
    if room in {"__init__", "__main__"}:
        return  # the package root: version, and `python -m netdm`
    wrong = upward_imports(room, path.read_text())
    assert not wrong, "imports that do not point down: " + "; ".join(wrong)


@pytest.mark.parametrize(
    "path",
    sorted((PACKAGE / "proto").rglob("*.py")),
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_wire_layer_does_no_io(path: Path) -> None:
    assert not io_in_wire_code(path.read_text())


def test_the_checks_can_fail() -> None:
    """An upward import, a sibling import and I/O in the wire are each caught."""
    engine_module = "def f():\n    from netdm.output.render import Renderer\n"
    assert upward_imports("engine", engine_module) == [
        "line 2: netdm.output.render (output) from engine"
    ]
    assert upward_imports("capture", "import netdm.netlink.transport\n")
    assert upward_imports("proto", "from netdm import engine\n")
    assert not upward_imports("output", "from netdm.engine.symbols import SymbolTable\n")
    assert io_in_wire_code("import time\nwith open('x') as f: pass\n") == {"time", "open"}
    assert not io_in_wire_code("import struct\n")


def loaded_after(import_statement: str) -> set[str]:
    code = f"import sys\n{import_statement}\nprint('\\n'.join(sorted(sys.modules)))"
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return set(output.split())


def test_protocol_layer_imports_no_io_libraries() -> None:
    modules = loaded_after("import netdm.proto, netdm.proto.encode, netdm.proto.schema")
    assert not {name for name in modules if name.startswith("pyroute2")}
    assert "netdm.netlink.transport" not in modules
    assert "click" not in modules


def test_help_does_not_load_pyroute2_or_construct() -> None:
    modules = loaded_after("import netdm.cli")
    assert not {name for name in modules if name.startswith(("pyroute2", "construct"))}


def test_tracepoint_decoding_is_pure() -> None:
    """Format files and ring-buffer pages are decoded without tracefs, sockets or sessions."""
    modules = loaded_after("import netdm.tracepoint.format, netdm.tracepoint.ringbuffer")
    assert "netdm.tracepoint.tracefs" not in modules
    assert "netdm.engine.session" not in modules
    assert not {name for name in modules if name.startswith(("pyroute2", "construct"))}
