"""docs/man/netdm.1 is generated from the click commands; it must match them.

The generator is docs/man/make_manpage.py.  When a command or option changes,
regenerate the page with one command (from the repository root) and commit it:

    python docs/man/make_manpage.py
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import click
import pytest

from netdm.cli.main import main

REPO = Path(__file__).resolve().parents[2]
GENERATOR = REPO / "docs" / "man" / "make_manpage.py"
MANPAGE = REPO / "docs" / "man" / "netdm.1"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_manpage", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated() -> str:
    return str(load_generator().render_manpage())


def test_the_man_page_in_the_repository_is_up_to_date(generated: str) -> None:
    assert MANPAGE.read_text() == generated, (
        "docs/man/netdm.1 no longer matches the click commands in netdm/cli/: "
        "regenerate it with `python docs/man/make_manpage.py` and commit docs/man/netdm.1"
    )


def every_command(group: click.Group, ctx: click.Context) -> list[tuple[click.Command, str]]:
    found = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        sub = click.Context(command, info_name=name, parent=ctx)
        found.append((command, sub.command_path))
        if isinstance(command, click.Group):
            found += every_command(command, sub)
    return found


def test_every_command_and_option_has_its_place(generated: str) -> None:
    ctx = click.Context(main, info_name="netdm")
    commands = every_command(main, ctx)
    assert {"netdm watch", "netdm config", "netdm doctor"} <= {path for _, path in commands}
    for command, path in commands:
        assert f'.SH "{path.upper()}"' in generated, path
        for param in command.params:
            for opt in (*param.opts, *param.secondary_opts):
                if opt.startswith("-") and not getattr(param, "hidden", False):
                    assert f"\\fB{opt.replace('-', chr(92) + '-')}\\fR" in generated, (path, opt)
    assert '.SH "EXIT STATUS"' in generated and "monitor already running" in generated


def test_click_help_paragraph_conventions_become_roff() -> None:
    generator = load_generator()
    help_text = "First  line\nwraps.\n\n\b\nKept:\n  .dot -x\n\nCut here\f hidden"
    assert generator.roff_paragraphs(help_text) == [
        "First  line wraps.",
        ".PP",
        ".nf",
        "Kept:",
        "  .dot \\-x",
        ".fi",
        ".PP",
        "Cut here",
    ]
    assert generator.roff_text(".leading") == "\\&.leading"
    assert generator.roff_text("a\\b") == "a\\eb"


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed (apt groff)")
def test_the_page_renders_without_groff_warnings() -> None:
    result = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z", str(MANPAGE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
