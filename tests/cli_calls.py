"""Calling the `prediff` command in-process and checking that a refusal is one line."""
from typer.testing import CliRunner

from prediff.cli.app import app


def invoke(*args):
    """Run `prediff ARGS...` in this process (typer's runner); returns its Result."""
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line(result):
    """The single `error: …` line a refused command printed (and no traceback)."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert "Traceback" not in result.output, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]
