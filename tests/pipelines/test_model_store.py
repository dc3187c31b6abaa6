"""The model store: `prediff models` lists the complete models and names the folders it skipped; model names that
cannot be a folder are bad input, not an internal error."""
import json
import shutil

from typer.testing import CliRunner

from prediff.cli.app import app
from prediff.pipelines.model_store import BUNDLED


def test_one_damaged_model_does_not_hide_the_others(tmp_path, monkeypatch):
    """Before, one unreadable unet.ckpt under $PREDIFF_HOME/models made `prediff models` list nothing."""
    root = tmp_path / "home" / "models"
    shutil.copytree(BUNDLED["demo"], root / "good")
    shutil.copytree(BUNDLED["demo"], root / "damaged")
    (root / "damaged" / "unet.ckpt").write_bytes(b"not a checkpoint" * 10)
    (root / "vae-only").mkdir()
    shutil.copy(BUNDLED["demo"] / "vae.ckpt", root / "vae-only" / "vae.ckpt")
    monkeypatch.setenv("PREDIFF_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    assert [row["name"] for row in json.loads(result.stdout)] == ["demo", "good"]
    skipped = result.stderr.splitlines()
    assert len(skipped) == 2, result.stderr
    assert skipped[0].startswith(f"skipped {root / 'vae-only'}: no unet.ckpt")
    assert skipped[1].startswith(f"skipped {root / 'damaged'}: ") and "is not a readable" in skipped[1]
    table = CliRunner().invoke(app, ["models"])
    assert table.exit_code == 0 and "good" in table.stdout and "damaged" not in table.stdout


def test_a_tilde_user_that_does_not_exist_is_bad_input(tmp_path, radar_file):
    result = CliRunner().invoke(app, ["sample", "--model", "~nosuchuser/model", "--input", str(radar_file), "--out",
                                      str(tmp_path / "fc")])
    assert result.exit_code == 2, result.output
    (line,) = [line for line in result.output.splitlines() if line.strip()]
    assert line == ("error: --model '~nosuchuser/model' starts with ~nosuchuser, but there is no user 'nosuchuser' "
                    "whose home folder it could name")
