"""rlhfkit/cli.py COMMANDS: the parser's commands are exactly the table's entries, in its order (no
module adds a command by itself), and building the parser imports no torch."""

import subprocess
import sys

import pytest

from rlhfkit.cli import COMMANDS, Custom, Group, Stage, build_parser


def _subcommands(parser):
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices


def test_every_table_entry_is_a_command_and_nothing_else_is():
    top = _subcommands(build_parser())
    assert list(top) == list(COMMANDS)
    for name, entry in COMMANDS.items():
        if isinstance(entry, Group):
            assert list(_subcommands(top[name])) == list(entry.commands)
        else:
            assert isinstance(entry, (Stage, Custom))


def test_help_builds_without_torch():
    code = ("import sys; from rlhfkit.cli import build_parser; build_parser(); "
            "print(','.join(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_config_stage_resolves_commands_and_the_rm_group():
    from rlhfkit.cli import config_stage
    from rlhfkit.eval.plan_cli import PLANNED

    assert config_stage("rm").config == "RewardConfig" and config_stage("sft").module == "rlhfkit.stages.sft"
    assert all(isinstance(config_stage(name), Stage) for name in PLANNED)  # plan reads the one table
    with pytest.raises(KeyError):
        config_stage("studio")
