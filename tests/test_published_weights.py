"""`prediff download weights`: official-format `.pt` files served on 127.0.0.1 under the real names, converted into
the `sevirlr` model folder. The served networks are `tiny`-size (same code path as the paper-size files: name
mapping, resume, conversion, model card, `--model sevirlr`)."""
import dataclasses
import json

import numpy as np
import pytest
from loopback_server import Server
from typer.testing import CliRunner

import prediff_models as models
from prediff.cli.app import app
from prediff.config import load_config
from prediff.io.state_dict_writer import write_state_dict
from prediff.pipelines import published_weights as pw

NAMES = pw.RELEASES["sevirlr"].files


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """component → (official state dict of a tiny network, the .pt bytes)."""
    folder = tmp_path_factory.mktemp("pt")
    cfg = load_config("tiny")
    out = {}
    for component in ("vae", "unet", "align"):
        net = models.build(component, cfg.model_kwargs(component))
        state = models.official_state_dict(net)
        path = write_state_dict(folder / NAMES[component], state)
        out[component] = (state, path.read_bytes())
    return out


@pytest.fixture
def server(official, monkeypatch, tmp_path):
    srv = Server({NAMES[c]: body for c, (_, body) in official.items()})
    tiny = dataclasses.replace(pw.RELEASES["sevirlr"], preset="tiny",
                               urls={c: srv.url + "official/" + NAMES[c] for c in NAMES})
    monkeypatch.setitem(pw.RELEASES, "sevirlr", tiny)
    monkeypatch.setenv("PREDIFF_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PREDIFF_WEIGHTS_URL", raising=False)
    yield srv
    srv.close()


def _download(*args):
    return CliRunner().invoke(app, ["download", "weights", *args])


def _model_dir(tmp_path):
    return tmp_path / "home" / "models" / "sevirlr"


def test_download_converts_into_a_named_model(tmp_path, server, official, radar_file):
    result = _download("--url-base", server.url)
    assert result.exit_code == 0, result.output
    folder = _model_dir(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["align.ckpt", "model.json", "unet.ckpt", "vae.ckpt"]
    card = json.loads((folder / "model.json").read_text())
    assert card["sources"]["unet"]["file"] == NAMES["unet"] and card["sources"]["unet"]["url"].startswith(server.url)
    assert card["paper_scores"]["CSI-M"] == 0.41 and card["expected_parameters"]["unet"] == 136_817_538
    assert card["outputs"]["vae"]["parameters"] == models.count_parameters(
        models.build("vae", load_config("tiny").model_kwargs("vae")))
    assert not list((tmp_path / "home" / "downloads").glob("*.pt*"))  # sources removed after conversion
    assert not (tmp_path / "home" / "models" / ".sevirlr.partial").exists()

    import prediff

    model = prediff.load_model("sevirlr")
    for component in ("vae", "unet", "align"):
        state = models.official_state_dict(model.network(component))
        want = official[component][0]
        assert set(state) == set(want)
        for key in want:
            np.testing.assert_array_equal(np.asarray(state[key]).reshape(want[key].shape), want[key])
    listed = CliRunner().invoke(app, ["models", "--json"])
    assert "sevirlr" in [row["name"] for row in json.loads(listed.output)]

    before = len(server.requests)
    again = _download("--url-base", server.url)
    assert again.exit_code == 0 and "nothing to do" in again.output and len(server.requests) == before

    fc = CliRunner().invoke(app, ["sample", "--model", "sevirlr", "--input", str(radar_file), "--out",
                                  str(tmp_path / "fc"), "--samples", "1", "--steps", "2", "--sampler", "ddim"])
    assert fc.exit_code == 0, fc.output


def test_official_locations_and_environment_mirror(tmp_path, server, monkeypatch):
    result = _download("--component", "vae")  # the release's own (here: loopback) locations
    assert result.exit_code == 0, result.output
    assert "also needs the vae and unet" in result.output and not _model_dir(tmp_path).exists()
    monkeypatch.setenv("PREDIFF_WEIGHTS_URL", server.url)
    result = _download("--component", "unet")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in _model_dir(tmp_path).iterdir()) == ["model.json", "unet.ckpt", "vae.ckpt"]
    assert server.requests[-1]["Host"].startswith("127.0.0.1")


def test_an_interrupted_transfer_resumes(tmp_path, server):
    server.cut_after = 4000
    first = _download("--url-base", server.url, "--component", "vae")
    assert first.exit_code != 0 and "Traceback" not in first.output
    parts = list((tmp_path / "home" / "downloads").glob("*.part"))
    assert len(parts) == 1 and parts[0].stat().st_size == 4000
    second = _download("--url-base", server.url)
    assert second.exit_code == 0, second.output
    assert server.requests[-3]["Range"] == "bytes=4000-"  # the vae resumed where it stopped
    assert (_model_dir(tmp_path) / "vae.ckpt").is_file()


@pytest.mark.parametrize("case", ["corrupt", "truncated", "digest"])
def test_bad_files_fail_cleanly_and_leave_no_model(tmp_path, server, official, case):
    args = ["--url-base", server.url]
    body = official["vae"][1]
    if case == "corrupt":
        server.files[NAMES["vae"]] = body[:100] + bytes(len(body) - 100)
    elif case == "truncated":
        server.files[NAMES["vae"]] = body[:len(body) // 2]
    else:
        args += ["--sha256", f"vae={'0' * 64}"]
    result = _download(*args)
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert not _model_dir(tmp_path).exists()
    assert not list((tmp_path / "home" / "downloads").glob(NAMES["vae"] + "*"))  # nothing unusable kept


def test_unknown_names_and_bad_digests_are_one_line(tmp_path, server):
    assert "no published weights named 'other'" in _download("other").output
    assert "is not NAME=HEX" in _download("--sha256", "vae=xyz").output


def test_model_name_before_download_names_the_command(tmp_path, server, radar_file):
    result = CliRunner().invoke(app, ["sample", "--model", "sevirlr", "--input", str(radar_file), "--out",
                                      str(tmp_path / "fc")])
    assert result.exit_code == 2 and "prediff download weights sevirlr" in result.output
