"""Every command's --help reads in an 80-column terminal: nothing is cut off; a usage mistake is one line."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from fer_bench.cli import app as bench
from fer_edge.cli import app as edge
from fer_export.cli import app as export
from fer_train.cli import app as train


def _commands(app) -> list[list[str]]:
    group = get_command(app)
    paths = [[]]
    for name, command in group.commands.items():
        paths.append([name])
        paths += [[name, sub] for sub in getattr(command, "commands", {})]
    return paths


@pytest.mark.parametrize("app", [train, export, edge, bench], ids=["train", "export", "edge", "bench"])
def test_help_fits_80_columns_without_cutting_anything(app):
    for path in _commands(app):
        result = CliRunner().invoke(app, [*path, "--help"], terminal_width=80, env={"COLUMNS": "80"})
        assert result.exit_code == 0, (path, result.output)
        assert "…" not in result.output, (path, result.output)
        assert max(len(line) for line in result.output.splitlines()) <= 80, path
        # A command list shows each command's whole one-line summary, not one cut off with "...".
        listed = result.output.partition("Commands:")[2].splitlines()
        assert not [line for line in listed if line.rstrip().endswith("...")], (path, result.output)


@pytest.mark.parametrize("app", [train, export, edge, bench], ids=["train", "export", "edge", "bench"])
def test_version_names_the_installed_toolkit(app):
    from importlib import metadata

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output == f"fer-edge-toolkit {metadata.version('fer-edge-toolkit')}\n"


@pytest.mark.parametrize(
    ("module", "args", "named"),
    [
        ("fer_train", ["fit", "--seed", "-1"], "'--seed'"),
        ("fer_export", ["quantize", "--mode", "int8", "--nope"], "--nope"),
        ("fer_edge", ["run", "--threads", "abc"], "'--threads'"),
        ("fer_bench", ["lantency"], "'lantency'"),
    ],
)
def test_a_usage_mistake_is_one_error_line_that_points_to_help(module, args, named):
    done = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert named in done.stderr and "--help'" in done.stderr, done.stderr


def test_no_arguments_still_shows_the_help():
    done = subprocess.run([sys.executable, "-m", "fer_edge"], capture_output=True, text=True, timeout=120)
    assert "Commands:" in done.stdout + done.stderr
    assert "error:" not in done.stderr
