"""Shell completion (docs/user-guide.md, "Shell completion"): click's scripts for netdm.

eval "$(_NETDM_COMPLETE=bash_source netdm)"
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from click.testing import CliRunner

from netdm.cli.main import main


def complete(instruction: str, env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(
        main, [], prog_name="netdm", env={"_NETDM_COMPLETE": instruction, **(env or {})}
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_bash_completion_script_is_produced() -> None:
    script = complete("bash_source")
    assert "_netdm_completion()" in script
    assert "complete -o nosort -F _netdm_completion netdm" in script


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_accepts_the_script_and_registers_netdm() -> None:
    result = subprocess.run(
        ["bash", "-c", 'eval "$1" && complete -p netdm', "bash", complete("bash_source")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "_netdm_completion" in result.stdout


def test_bash_completes_commands_and_choices() -> None:
    commands = complete("bash_complete", {"COMP_WORDS": "netdm wa", "COMP_CWORD": "1"})
    assert commands.split() == ["plain,watch"]
    origins = complete("bash_complete", {"COMP_WORDS": "netdm watch --origin ", "COMP_CWORD": "3"})
    assert origins.split() == ["plain,sw", "plain,hw", "plain,all"]


def test_zsh_and_fish_scripts_are_produced() -> None:
    assert "#compdef netdm" in complete("zsh_source")
    assert "complete --no-files --command netdm" in complete("fish_source")
