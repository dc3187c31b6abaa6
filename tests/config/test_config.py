"""The one config loader: presets, overrides, and one-line errors."""
import dataclasses

import pytest

from prediff.config import Config, config_from_dict, load_config, preset_names, to_plain, write_resolved_config
from prediff.errors import ConfigError


@pytest.mark.parametrize("name", ["tiny", "small", "sevirlr"])
def test_presets_load(name):
    cfg = load_config(name)
    assert isinstance(cfg, Config)
    assert cfg.preset == name
    assert cfg.data.seq_len == 13
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 3  # type: ignore[misc]


def test_sevirlr_is_the_paper_configuration():
    cfg = load_config("sevirlr")
    assert cfg.unet.base_units == 256 and cfg.unet.depth == (4, 4)
    assert cfg.vae.block_out_channels == (128, 256, 512, 512) and cfg.vae.latent_channels == 64
    assert cfg.align.base_units == 128 and cfg.align.out_len == 6
    assert cfg.train_vae.betas == (0.5, 0.9) and cfg.train_vae.lr == pytest.approx(5e-6)
    assert cfg.diffusion.linear_start == pytest.approx(1e-4)


def test_tiny_differs_from_sevirlr():
    assert load_config("tiny").unet.base_units < load_config("sevirlr").unet.base_units


def test_overrides_are_typed():
    cfg = load_config("tiny", ["sample.steps=20", "sample.eta=0.5", "unet.depth=[2, 1]", "seed=7",
                               "train_vae.lr=1e-4", "data.aug_mode=0", "sample.align_target=null"])
    assert cfg.sample.steps == 20 and isinstance(cfg.sample.steps, int)
    assert cfg.sample.eta == 0.5
    assert cfg.unet.depth == (2, 1)
    assert cfg.seed == 7
    assert cfg.train_vae.lr == pytest.approx(1e-4)  # "1e-4" is a YAML string; still a float here
    assert cfg.data.aug_mode == "0"


def test_values_win_over_text_overrides():
    cfg = load_config("tiny", ["seed=1"], {"seed": 5, "data.root": "/x"})
    assert cfg.seed == 5 and cfg.data.root == "/x"


@pytest.mark.parametrize("override, fragment", [
    ("sample.foo=1", "unknown config key 'sample.foo'; valid keys in 'sample': samples"),
    ("nosuch.key=1", "unknown config key 'nosuch'"),
    ("sample.sampler=euler",
     "'sample.sampler': 'euler' is not valid; expected one of ddim, ddpm, dpmpp, dpmpp3m, sasolver"),
    ("sample.steps=abc", "'sample.steps': 'abc' is not valid; expected int"),
    ("sample.steps=1.5", "'sample.steps'"),
    ("unet.depth=3", "'unet.depth': 3 is not valid; expected a list of int"),
    ("train_vae.betas=[0.5]", "'train_vae.betas'"),
    ("sample.samples=0", "'sample.samples': 0 is not valid"),
    ("train_diffusion.ema_decay=1.5", "ema_decay"),
    ("device=tpu", "expected one of auto, cpu, gpu, ascend"),
    ("sample", "must look like section.key=value"),
])
def test_bad_overrides_give_one_line(override, fragment):
    with pytest.raises(ConfigError) as info:
        load_config("tiny", [override])
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(ConfigError, match="valid presets: .*tiny"):
        load_config("huge")


def test_user_yaml_with_base(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("base: tiny\nsample:\n  steps: 3\n")
    cfg = load_config(str(path))
    assert cfg.sample.steps == 3
    assert cfg.unet.base_units == load_config("tiny").unet.base_units


def test_bad_yaml_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("sample: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(path))


def test_resolved_config_round_trip(tmp_path):
    cfg = load_config("small", ["sample.steps=17"])
    path = write_resolved_config(cfg, tmp_path)
    import yaml

    again = config_from_dict(yaml.safe_load(path.read_text()))
    assert again == cfg
    assert to_plain(again) == to_plain(cfg)
    assert not list(tmp_path.glob("*.tmp"))


def test_model_kwargs_are_official_dicts():
    kw = load_config("tiny").model_kwargs("unet")
    assert kw["input_shape"] == [7, 16, 16, 4] and isinstance(kw["depth"], list)
    assert "preset" not in kw
    assert set(preset_names()) >= {"tiny", "small", "sevirlr"}
