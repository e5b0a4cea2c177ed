"""Write docs/man/netdm.1, the netdm(1) man page, from netdm's click commands.

    python docs/man/make_manpage.py            # rewrite docs/man/netdm.1 (run from anywhere)
    python docs/man/make_manpage.py --check    # exit 1 if docs/man/netdm.1 is out of date
    python docs/man/make_manpage.py -o -       # write the page to stdout
    man -l docs/man/netdm.1                    # read it

Strategy: everything comes from ``netdm.cli.main.main`` so the page cannot say
something ``netdm --help`` does not: the group's help and epilog (the exit
codes), then one section per subcommand (nested groups too) with its help
text and its options as click formats them for ``--help`` (defaults, ranges
and choices included).  Only the closing SHELL COMPLETION and SEE ALSO
sections are fixed text.  Click's help conventions are kept: a paragraph
that starts with ``\\b`` keeps its line breaks (``.nf``), every other
paragraph is filled, and help stops at ``\\f``.  The page carries no date,
so regenerating it from unchanged commands gives the same bytes
(tests/cli/test_manpage.py checks that the file in the repo is current).
No dependency beyond click, which netdm already has.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
MANPAGE = HERE / "netdm.1"
REGENERATE = "python docs/man/make_manpage.py"

# Fixed text after the generated sections.
COMPLETION = """\
netdm completes commands, options and choices in bash, zsh and fish
(click's completion). Add one line to the shell's start-up file:

\b
  eval "$(_NETDM_COMPLETE=bash_source netdm)"      # ~/.bashrc
  eval "$(_NETDM_COMPLETE=zsh_source netdm)"       # ~/.zshrc
  _NETDM_COMPLETE=fish_source netdm | source       # ~/.config/fish/completions/netdm.fish
"""
SEE_ALSO = [
    ("dropwatch", "1"),
    ("tshark", "1"),
    ("tcpdump", "8"),
    ("devlink-trap", "8"),
    ("tc", "8"),
]
DOCS = "docs/user-guide.md, docs/json.md and the other files in docs/ of the netdm sources"


def roff_text(text: str) -> str:
    """Escape text for roff: backslashes, minus signs (so options copy as ``-``), leading dots."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    if text.startswith((".", "'")):
        text = "\\&" + text
    return text


def _paragraphs(help_text: str) -> Iterator[tuple[bool, list[str]]]:
    """(keep_line_breaks, lines) per paragraph of a click help text."""
    help_text = help_text.split("\f", 1)[0]
    block: list[str] = []
    for line in [*textwrap.dedent(help_text).strip("\n").splitlines(), ""]:
        if line.strip():
            block.append(line.rstrip())
        elif block:
            if block[0].strip() == "\b":
                yield True, block[1:]
            else:
                yield False, block
            block = []


def roff_paragraphs(help_text: str) -> list[str]:
    """A help text as roff: ``.PP`` between paragraphs, ``\\b`` paragraphs unfilled."""
    out: list[str] = []
    for index, (verbatim, lines) in enumerate(_paragraphs(help_text)):
        if index:
            out.append(".PP")
        if verbatim:
            out += [".nf", *(roff_text(line) for line in lines), ".fi"]
        else:
            filled = " ".join(line.strip() for line in lines)
            wrapped = textwrap.wrap(filled, 78, break_long_words=False, break_on_hyphens=False)
            out += [roff_text(line) for line in wrapped]
    return out


def _metavar(param: click.Parameter, ctx: click.Context) -> str:
    if isinstance(param, click.Option) and (param.is_flag or param.count):
        return ""
    make_metavar: Any = param.make_metavar  # takes ctx since click 8.2, nothing before
    try:
        return str(make_metavar(ctx))
    except TypeError:
        return str(make_metavar())


def _option_term(param: click.Parameter, ctx: click.Context) -> str:
    def names(opts: list[str]) -> str:
        return ", ".join(f"\\fB{roff_text(opt)}\\fR" for opt in opts)

    term = names(param.opts)
    if param.secondary_opts:
        term += " / " + names(param.secondary_opts)
    metavar = _metavar(param, ctx)
    if metavar:
        term += f" \\fI{roff_text(metavar)}\\fR"
    return term


def roff_options(command: click.Command, ctx: click.Context, *, with_help: bool) -> list[str]:
    """One ``.TP`` entry per visible option, with click's own help line (defaults and all)."""
    out: list[str] = []
    for param in command.get_params(ctx):
        if getattr(param, "hidden", False):
            continue
        record = param.get_help_record(ctx)
        if record is None:  # arguments: they are in the synopsis
            continue
        if not with_help and "--help" in param.opts:
            continue
        out += [".TP", _option_term(param, ctx), roff_text(record[1]) if record[1] else ""]
    return [line for line in out if line != ""]


def _commands(
    group: click.Group, ctx: click.Context
) -> Iterator[tuple[click.Command, click.Context]]:
    """Every visible subcommand below ``group``, depth first, in click's order."""
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        sub = click.Context(command, info_name=name, parent=ctx, **command.context_settings)
        yield command, sub
        if isinstance(command, click.Group):
            yield from _commands(command, sub)


def _synopsis(command: click.Command, ctx: click.Context) -> list[str]:
    pieces = " ".join(command.collect_usage_pieces(ctx))
    return [f".B {roff_text(ctx.command_path)}", roff_text(pieces)]


def render_manpage(group: click.Group | None = None, version: str | None = None) -> str:
    """The whole page as roff text (``group``: netdm.cli.main.main unless given)."""
    from netdm import __version__
    from netdm.cli.main import main as netdm_main

    main = netdm_main if group is None else group
    version = __version__ if version is None else version
    ctx = click.Context(main, info_name="netdm", **main.context_settings)
    name_line = main.get_short_help_str(limit=200).rstrip(".")
    name_line = name_line[:1].lower() + name_line[1:]
    commands = list(_commands(main, ctx))
    lines = [
        '.\\" Generated by docs/man/make_manpage.py from netdm.cli.main: do not edit.',
        f'.\\" Regenerate with: {REGENERATE}',
        f'.TH NETDM 1 "" "netdm {version}" "User Commands"',
        ".nh",  # no hyphenation: option and field names must stay whole
        ".ad l",
        ".SH NAME",
        f"netdm \\- {roff_text(name_line)}",
        ".SH SYNOPSIS",
    ]
    for index, (command, sub) in enumerate([(main, ctx), *commands]):
        if index:
            lines.append(".br")
        lines += _synopsis(command, sub)
    lines += [".SH DESCRIPTION", *roff_paragraphs(main.help or "")]
    lines += [".SH OPTIONS", *roff_options(main, ctx, with_help=True)]
    lines.append(".SH COMMANDS")
    for command, sub in commands:
        lines += [".TP", f".B {roff_text(sub.command_path)}"]
        lines.append(roff_text(command.get_short_help_str(limit=200)))
    for command, sub in commands:
        lines += [f'.SH "{roff_text(sub.command_path.upper())}"', *_synopsis(command, sub), ".PP"]
        lines += roff_paragraphs(command.help or "")
        options = roff_options(command, sub, with_help=False)
        if options:
            lines += [".SS Options", *options]
        if command.epilog:
            lines += [".PP", *roff_paragraphs(command.epilog)]
    if main.epilog:
        lines += ['.SH "EXIT STATUS"', *roff_paragraphs(main.epilog)]
    lines += ['.SH "SHELL COMPLETION"', *roff_paragraphs(COMPLETION)]
    lines.append('.SH "SEE ALSO"')
    lines.append(",\n".join(f".BR {page} ({section})" for page, section in SEE_ALSO))
    lines += [".PP", roff_text(DOCS)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the netdm(1) man page from netdm.cli.main.")
    parser.add_argument("-o", "--output", default=str(MANPAGE), help="file, or - for stdout")
    parser.add_argument(
        "--check", action="store_true", help="only say whether the file is up to date (exit 1)"
    )
    args = parser.parse_args(argv)
    page = render_manpage()
    if args.check:
        current = Path(args.output).read_text() if Path(args.output).exists() else ""
        if current != page:
            print(f"{args.output} is out of date: run {REGENERATE}", file=sys.stderr)
            return 1
        return 0
    if args.output == "-":
        sys.stdout.write(page)
    else:
        Path(args.output).write_text(page)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # run from anywhere, with or without netdm installed
    sys.exit(main())
