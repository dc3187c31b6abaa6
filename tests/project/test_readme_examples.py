"""The commands of the README and docs/ run: the demo command and the own-file command forecast (with fewer
members and steps), the README's xarray lines read what the own-file command wrote, and every `prediff ...` line of
a bash block names a command and options that exist.

Every Python block of the README and docs/ runs in tests/project/test_doc_examples.py (the README's Python API
example also in tests/pipelines/test_api.py, beside a user's own `models` package); the test command is checked
against .ci/run in tests/project/test_readme_contract.py."""
import json
import shlex
from pathlib import Path

import numpy as np
import pytest
from doc_blocks import blocks, documents, radar_netcdf
from typer.testing import CliRunner

from prediff.cli.app import app

# a forecast as cheap as it gets, appended to a documented command (the last value of a repeated option wins)
CHEAP = ["--samples", "2", "--steps", "2"]


def _section(text: str, title: str) -> str:
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def prediff_commands(text: str) -> list:
    """The argument lists of every `prediff ...` command in the bash blocks of a Markdown text (continuation lines
    joined, comments dropped, `a && b` split; a `.venv/bin/prediff` counts too)."""
    commands = []
    for block in blocks(text, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if words and Path(words[0]).name == "prediff":
                    commands.append(words[1:])
    return commands


def _readme(repo_root) -> str:
    return (repo_root / "README.md").read_text()


def test_readme_commands_are_found(repo_root):
    """The parser of this file sees the README's commands (else the tests below would check nothing)."""
    quick = prediff_commands(_section(_readme(repo_root), "Quick start"))
    assert quick == [["sample", "--input", "examples/radar.h5", "--samples", "8", "--align", "avg_x"]]
    own = prediff_commands(_section(_readme(repo_root), "Forecast from your own radar file"))
    assert len(own) == 1 and own[0][0] == "sample"
    published = prediff_commands(_section(_readme(repo_root), "The published PreDiff in three commands"))
    assert [c[:2] for c in published] == [["download", "weights"], ["sample", "--model"], ["download", "sevir-lr"],
                                          ["score", "--model"]]


@pytest.mark.slow
def test_readme_demo_command_forecasts_with_the_bundled_model(tmp_path, repo_root, monkeypatch):
    """README command one, with 2 members and 2 steps: no checkpoint options → the bundled demo model forecasts
    examples/radar.h5."""
    from prediff.io.netcdf import read_forecast

    (command,) = prediff_commands(_section(_readme(repo_root), "Quick start"))
    monkeypatch.chdir(repo_root)  # the command names examples/radar.h5 relative to the repository
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, [*command, *CHEAP, "--out", str(out)])
    assert result.exit_code == 0, result.output
    fc = read_forecast(out / "forecast.nc")
    assert fc.forecast.shape == (2, 6, 128, 128) and np.isfinite(fc.forecast).all()
    run = json.loads((out / "run.json").read_text())
    assert {k: Path(v).parent.name for k, v in run["checkpoints"].items()} == {"vae": "demo", "unet": "demo",
                                                                             "align": "demo"}
    assert run["alignment"].startswith("avg_x")


@pytest.mark.slow
def test_readme_own_file_command_and_its_xarray_lines(tmp_path, repo_root, radar_file, tiny_runs, monkeypatch):
    """The README's forecast from your own file: its command on a CF NetCDF file named as it names it (the tiny
    test networks stand in for the demo model, 2 members, 2 steps), then its Python lines on what it wrote."""
    readme = _section(_readme(repo_root), "Forecast from your own radar file")
    (command,) = prediff_commands(readme)
    words = dict(zip(command, command[1:]))
    monkeypatch.chdir(tmp_path)
    radar_netcdf(tmp_path / words["--input"], radar_file, words["--variable"])
    nets = [f"--{'align-net' if c == 'align' else c}" for c in ("vae", "unet", "align")]
    ckpts = [arg for c, opt in zip(("vae", "unet", "align"), nets) for arg in (opt, str(tiny_runs[c][0] / "last.ckpt"))]
    result = CliRunner().invoke(app, [*command, *CHEAP, *ckpts])
    assert result.exit_code == 0, result.output
    written = tmp_path / words["--out"] / "forecast.nc"
    assert written.is_file()

    (lines,) = blocks(readme, "python")
    scope = {}
    exec(compile(lines, "README.md", "exec"), scope)  # noqa: S102 (the documented lines, as a user runs them)
    p30 = scope["p30"]
    assert p30.dims == ("y", "x") and p30.shape == (128, 128)
    assert float(p30.min()) >= 0.0 and float(p30.max()) <= 1.0
    assert scope["ds"]["vil"].attrs.get("grid_mapping") and "lat" in scope["ds"].variables  # --grid placed it
    scope["ds"].close()


def _command_and_options(group, ctx, words):
    """(the command `words` name, the option words given to it) — or an AssertionError naming what is unknown."""
    command, path = group, ["prediff"]
    while hasattr(command, "list_commands") and words and not words[0].startswith("-"):
        sub = command.get_command(ctx, words[0])
        assert sub is not None, f"{' '.join(path)} has no command {words[0]!r}"
        path.append(words[0])
        ctx = sub.make_context(words[0], [], parent=ctx, resilient_parsing=True)
        command, words = sub, words[1:]
    return command, ctx, " ".join(path), [w.split("=", 1)[0] for w in words if w.startswith("-") and w != "-"]


def test_every_documented_command_names_real_options(repo_root):
    """Each `prediff ...` line in a bash block of the README or docs/ names an existing command, and every option
    it gives exists on that command (so a renamed or removed option cannot stay in the docs)."""
    import typer.main

    group = typer.main.get_command(app)
    ctx = group.make_context("prediff", [], resilient_parsing=True)
    checked = 0
    for document in documents(repo_root):
        for words in prediff_commands(document.read_text()):
            command, sub_ctx, name, options = _command_and_options(group, ctx, words)
            known = {o for p in command.get_params(sub_ctx) for o in (*p.opts, *p.secondary_opts)}
            unknown = [o for o in options if o not in known]
            assert not unknown, f"{document.name}: `{name}` has no option {', '.join(unknown)}"
            checked += 1
    assert checked >= 20


def test_checker_catches_an_unknown_option(repo_root):
    import typer.main

    group = typer.main.get_command(app)
    ctx = group.make_context("prediff", [], resilient_parsing=True)
    command, sub_ctx, name, options = _command_and_options(group, ctx, ["sample", "--input", "x.h5", "--sampels", "2"])
    known = {o for p in command.get_params(sub_ctx) for o in (*p.opts, *p.secondary_opts)}
    assert name == "prediff sample" and [o for o in options if o not in known] == ["--sampels"]
    with pytest.raises(AssertionError, match="no command 'smaple'"):
        _command_and_options(group, ctx, ["smaple"])
