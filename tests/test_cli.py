"""The command line a person meets: every command has an example that parses, every
flag has help, --version matches the package."""

import argparse
import shlex
import subprocess
import sys
import tomllib

import pytest

from soften.__main__ import EXAMPLES, build_parser


def subcommands(parser):
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    primary = {}
    for name, sub in action.choices.items():
        primary.setdefault(id(sub), (name, sub))  # aliases share the parser; the first name is the command's
    return dict(primary.values())


def test_every_command_has_an_example_that_parses():
    parser = build_parser()
    commands = subcommands(parser)
    assert set(EXAMPLES) == set(commands)
    for name, example in EXAMPLES.items():
        words = shlex.split(example)
        assert words[:4] == ["python", "-m", "soften", name], example
        args = parser.parse_args(words[3:])
        assert args.func is commands[name].get_default("func"), name
        assert example in commands[name].format_help(), name  # shown under --help


def test_every_flag_has_help():
    for name, sub in subcommands(build_parser()).items():
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)


def test_version_is_the_package_version(repo, subprocess_env):
    version = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["version"]
    proc = subprocess.run([sys.executable, "-m", "soften", "--version"], env=subprocess_env, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == f"soften {version}"


@pytest.mark.parametrize("noise", ["sym-0.4", "symmetric-1.5", "symmetric"])
def test_bad_noise_setting_is_one_plain_line(noise, digits_npz, tmp_path, subprocess_env):
    proc = subprocess.run([sys.executable, "-m", "soften", "noise", "--dataset-npz", str(digits_npz), "--noise", noise,
                           "--out", str(tmp_path / "n.npz")], env=subprocess_env, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") <= 1
    assert f"bad noise setting '{noise}'" in proc.stderr and "e.g. 'symmetric-0.4'" in proc.stderr
    assert "(?" not in proc.stderr and "Traceback" not in proc.stderr  # no raw regex, no traceback
