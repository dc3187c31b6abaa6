"""`prediff convert-weights`: official PyTorch files to prediff checkpoints, number for number."""
import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import prediff_models as models
from mindspore import Tensor
from prediff.cli.app import app
from prediff.config import load_config
from prediff.errors import InputError
from prediff.io.checkpoint import load_checkpoint, load_weights
from prediff.pipelines.convert_weights import convert_weights


@pytest.fixture(scope="module")
def fixture_config(official_dir, tmp_path_factory):
    """A config whose unet/vae/align sections are the fixtures' constructor arguments."""
    sections = {name: json.loads(str(np.load(official_dir / f"{name}.npz")["config_json"]))
                for name in ("unet", "vae", "align")}
    path = tmp_path_factory.mktemp("cfg") / "fixtures.yaml"
    path.write_text(yaml.safe_dump({"base": "tiny", **sections}))
    return str(path)


def _eps(ckpt_path, z):
    ckpt = load_checkpoint(ckpt_path, component="unet")
    net = models.build("unet", ckpt.model_kwargs)
    load_weights(net, ckpt.model)
    return net(Tensor(z["in/x"]), Tensor(z["in/t"].astype(np.int32)), Tensor(z["in/cond"])).asnumpy()


def test_pt_and_npz_convert_to_the_same_network(tmp_path, official_dir, fixture_config):
    cfg = load_config(fixture_config)
    z = np.load(official_dir / "unet.npz")
    from_pt = convert_weights(official_dir / "unet_state_dict.pt", "unet", cfg, tmp_path / "pt.ckpt")
    convert_weights(official_dir / "unet.npz", "unet", cfg, tmp_path / "npz.ckpt")
    assert from_pt.tensors == 220 and from_pt.parameters == 262_286
    eps_pt, eps_npz = _eps(tmp_path / "pt.ckpt", z), _eps(tmp_path / "npz.ckpt", z)
    np.testing.assert_array_equal(eps_pt, eps_npz)
    assert np.abs(eps_pt - z["out/eps"]).max() <= 1e-4
    ckpt = load_checkpoint(tmp_path / "pt.ckpt")
    assert ckpt.model_kwargs == cfg.model_kwargs("unet") and ckpt.config["unet"] == cfg.model_kwargs("unet")
    assert len(ckpt.meta["source_sha256"]) == 64


@pytest.mark.parametrize("component", ["vae", "align"])
def test_other_components(tmp_path, official_dir, fixture_config, component):
    report = convert_weights(official_dir / f"{component}.npz", component, load_config(fixture_config),
                             tmp_path / f"{component}.ckpt")
    assert load_checkpoint(report.output, component=component).model


def test_mismatch_is_one_clear_line(tmp_path, official_dir):
    with pytest.raises(InputError) as info:
        convert_weights(official_dir / "unet_state_dict.pt", "unet", load_config("tiny"), tmp_path / "x.ckpt")
    message = str(info.value)
    assert "does not fit the unet of config 'tiny'" in message and "with a different shape" in message
    assert "\n" not in message and not (tmp_path / "x.ckpt").exists()
    with pytest.raises(InputError, match="unexpected"):
        convert_weights(official_dir / "align.npz", "unet", load_config("tiny"), tmp_path / "y.ckpt")


def test_cli(tmp_path, official_dir, fixture_config):
    runner = CliRunner()
    ok = runner.invoke(app, ["convert-weights", str(official_dir / "unet_state_dict.pt"), "--component", "unet",
                             "--config", fixture_config, "--out", str(tmp_path / "u.ckpt")])
    assert ok.exit_code == 0, ok.output
    assert "262,286 parameters" in ok.output
    bad = runner.invoke(app, ["convert-weights", str(tmp_path / "nope.pt"), "--component", "unet",
                              "--out", str(tmp_path / "v.ckpt")])
    assert bad.exit_code == 2 and "not found" in bad.output
