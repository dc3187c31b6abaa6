"""MindEarth's PreDiff checkpoints and YAML in: `prediff convert-weights FILE.ckpt` and `prediff import-mindearth`.

The MindEarth-layout checkpoints are written here with MindSpore's `save_checkpoint` under the names MindEarth's
cells give their parameters (read from its code: the official attribute paths with MindSpore leaves, the position
embedding tables as `t_embed`/`h_embed`/`w_embed`, each attention's `relative_position_index` as an int64 tensor,
the UNet under `main_module.main_model.` as its trainer saves it); the weights are random, from our own networks.
"""
import json

import mindspore as ms
import numpy as np
import pytest
import yaml
from cli_calls import invoke, one_line
from mindspore import Tensor

import prediff_models as models
from prediff.config import load_config
from prediff.errors import ConfigError
from prediff.io.checkpoint import load_checkpoint, load_weights
from prediff.pipelines.model import load_model
from prediff_models.official import official_buffers

INIT_MODES = {"attn_linear_init_mode": "0", "ffn_linear_init_mode": "0", "ffn2_linear_init_mode": "2",
              "attn_proj_linear_init_mode": "2", "conv_init_mode": "0", "down_linear_init_mode": "0",
              "global_proj_linear_init_mode": "2", "norm_init_mode": "0"}
TIME_EMBED = {"time_embed_channels_mult": 4, "time_embed_use_scale_shift_norm": False, "time_embed_dropout": 0.0}


def mindearth_yaml(**changes):
    """A MindEarth `configs/diffusion.yaml` (its structure and key names) at the `tiny` preset's network sizes."""
    doc = {
        "data": {"dataset_name": "sevirlr", "seq_in": 13, "raw_seq_len": 25, "stride": 6, "layout": "NTHWC"},
        "layout": {"t_in": 7, "t_out": 6, "data_channels": 1, "layout": "NTHWC"},
        "optim": {"total_batch_size": 64, "micro_batch_size": 2, "lr": 1.0e-5},
        "model": {
            "diffusion": {"data_shape": [6, 128, 128, 1], "timesteps": 1000, "beta_schedule": "linear",
                          "log_every_t": 100, "clip_denoised": False, "linear_start": "1e-4", "linear_end": "2e-2",
                          "cosine_s": "8e-3", "given_betas": None, "original_elbo_weight": 0.0, "v_posterior": 0.0,
                          "l_simple_weight": 1.0, "learn_logvar": False, "logvar_init": 0.0,
                          "latent_shape": [6, 16, 16, 4], "cond_stage_forward": None, "scale_by_std": False,
                          "scale_factor": 1.0, "latent_cond_shape": [7, 16, 16, 4]},
            "align": {"alignment_type": "avg_x", "guide_scale": 40.0, "model_type": "cuboid", "model_args": {
                "input_shape": [6, 16, 16, 4], "out_channels": 1, "base_units": 32, "scale_alpha": 1.0,
                "depth": [1, 1], "downsample": 2, "downsample_type": "patch_merge", "use_attn_pattern": True,
                "num_heads": 4, "attn_drop": 0.1, "proj_drop": 0.1, "ffn_drop": 0.1, "ffn_activation": "gelu",
                "gated_ffn": False, "norm_layer": "layer_norm", "use_inter_ffn": True,
                "hierarchical_pos_embed": False, "padding_type": "zeros", "use_relative_pos": True,
                "self_attn_use_final_proj": True, "num_global_vectors": 0, "use_global_vector_ffn": True,
                "use_global_self_attn": False, "separate_global_qkv": False, "global_dim_ratio": 1, **INIT_MODES,
                **TIME_EMBED, "pool": "attention", "readout_seq": True, "t_out": 6},
                "model_ckpt_path": "./ckpt/align.ckpt"},
            "latent_model": {
                "input_shape": [7, 16, 16, 4], "target_shape": [6, 16, 16, 4], "base_units": 16, "block_units": None,
                "scale_alpha": 1.0, "num_heads": 4, "attn_drop": 0.1, "proj_drop": 0.1, "ffn_drop": 0.1,
                "downsample": 2, "downsample_type": "patch_merge", "upsample_type": "upsample",
                "upsample_kernel_size": 3, "depth": [1, 1], "use_attn_pattern": True, "num_global_vectors": 0,
                "use_global_vector_ffn": False, "use_global_self_attn": True, "separate_global_qkv": True,
                "global_dim_ratio": 1, "ffn_activation": "gelu", "gated_ffn": False, "norm_layer": "layer_norm",
                "padding_type": "zeros", "use_relative_pos": True, "self_attn_use_final_proj": True, **INIT_MODES,
                **TIME_EMBED, "unet_res_connect": True},
            "vae": {"pretrained_ckpt_path": "./ckpt/vae.ckpt", "data_channels": 1,
                    "down_block_types": ["DownEncoderBlock2D"] * 4, "in_channels": 1,
                    "block_out_channels": [8, 16, 16, 16], "act_fn": "silu", "latent_channels": 4,
                    "up_block_types": ["UpDecoderBlock2D"] * 4, "norm_num_groups": 8, "layers_per_block": 1,
                    "out_channels": 1},
        },
        "summary": {"ckpt_path": "./ckpt/diffusion.ckpt", "load_ckpt": False},
    }
    for dotted, value in changes.items():
        node = doc
        *path, last = dotted.split("/")
        for part in path:
            node = node[part]
        if value is _DROP:
            node.pop(last)
        else:
            node[last] = value
    return doc


_DROP = object()


def write_yaml(path, doc):
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def network(component, config, seed=0):
    """Our network at `config`'s arguments with random weights (no zero-initialised layer left)."""
    net = models.build(component, config.model_kwargs(component))
    rng = np.random.default_rng(seed)
    for name, param in net.parameters_and_names():
        shape = tuple(param.shape)
        value = (1.0 + 0.2 * rng.standard_normal(shape)) if name.endswith("gamma") else \
            rng.standard_normal(shape) / np.sqrt(max(int(np.prod(shape[1:])) if len(shape) > 1 else 1, 1))
        param.set_data(Tensor(value.astype(np.float32)))
    return net


def mindearth_state(net):
    """MindEarth's names for `net`'s tensors (stated here from MindEarth's code, independently of prediff's mapping)."""
    state = {}
    for name, param in net.parameters_and_names():
        for ours, theirs in (("pos_embed.T_embed.", "pos_embed.t_embed."), ("pos_embed.H_embed.", "pos_embed.h_embed."),
                             ("pos_embed.W_embed.", "pos_embed.w_embed.")):
            name = name.replace(ours, theirs)
        state[name] = param.asnumpy()
    state.update({k: np.asarray(v, np.int64) for k, v in official_buffers(net).items()})
    return state


def save_mindearth(path, state, prefix=""):
    ms.save_checkpoint([{"name": prefix + k, "data": Tensor(v)} for k, v in state.items()], str(path))
    return path


def outputs(component, net, seed=1):
    rng = np.random.default_rng(seed)
    if component == "vae":
        dec, moments = net(Tensor(rng.random((2, 1, 128, 128)).astype(np.float32)), None)
        return np.concatenate([dec.asnumpy().ravel(), moments.asnumpy().ravel()])
    t = Tensor(np.array([3, 917], np.int32))
    if component == "unet":
        x = Tensor(rng.standard_normal((2, 6, 16, 16, 4)).astype(np.float32))
        cond = Tensor(rng.standard_normal((2, 7, 16, 16, 4)).astype(np.float32))
        return net(x, t, cond).asnumpy()
    return net(Tensor(rng.standard_normal((2, 6, 16, 16, 4)).astype(np.float32)), t).asnumpy()


def converted(path, component):
    ckpt = load_checkpoint(path, component=component)
    net = models.build(component, ckpt.model_kwargs)
    load_weights(net, ckpt.model)
    return net, ckpt


@pytest.fixture(scope="module")
def me_yaml(tmp_path_factory):
    return write_yaml(tmp_path_factory.mktemp("me") / "diffusion.yaml", mindearth_yaml())


@pytest.fixture(scope="module")
def sources(tmp_path_factory, me_yaml):
    """MindEarth-layout files of three random networks: component → (our source network, its MindEarth state)."""
    config = load_config(str(me_yaml))
    return {c: (net, mindearth_state(net)) for c, net in
            ((c, network(c, config, seed=i)) for i, c in enumerate(("vae", "unet", "align")))}


# ------------------------------------------------------------------------------------------------------------------
# the YAML


def test_mindearth_yaml_becomes_the_networks_it_describes(me_yaml):
    config = load_config(str(me_yaml))
    tiny = load_config("tiny")
    assert config.preset == "mindearth:diffusion"
    assert config.model_kwargs("vae") == tiny.model_kwargs("vae")
    unet, ref = config.model_kwargs("unet"), tiny.model_kwargs("unet")
    assert unet["block_attn_patterns"] == ["axial", "axial"]  # use_attn_pattern: true
    assert unet["timestep_frequencies"] == config.align.timestep_frequencies == "mindearth"  # MindSpore's exp
    same = ("attn_drop", "proj_drop", "ffn_drop", "timestep_frequencies")
    assert {k: v for k, v in unet.items() if k not in same} == {k: v for k, v in ref.items() if k not in same}
    assert config.align.out_len == 6 and config.align.block_attn_patterns == "axial"  # t_out, use_attn_pattern
    assert config.data.img_size == 128 and (config.data.in_len, config.data.out_len) == (7, 6)
    assert config.diffusion.learn_logvar is False and config.diffusion.linear_start == 1e-4
    assert config.sample.guide_scale == 40.0


def test_keys_mindearth_leaves_out_take_mindearth_defaults(tmp_path):
    # MindEarth's UNet defaults to a leaky-ReLU FFN, which is not PreDiff's network: refused under MindEarth's key
    doc = mindearth_yaml(**{"model/latent_model/ffn_activation": _DROP})
    with pytest.raises(ConfigError, match=r"model\.latent_model\.ffn_activation: 'leaky' is not valid"):
        load_config(str(write_yaml(tmp_path / "a.yaml", doc)))
    # its default padding "ignore" computes what "zeros" does with axial cuboids
    doc = mindearth_yaml(**{"model/latent_model/padding_type": _DROP})
    assert load_config(str(write_yaml(tmp_path / "b.yaml", doc))).unet.padding_type == "zeros"


@pytest.mark.parametrize("change, message", [
    ({"model/latent_model/use_attn_pattern": False}, "model.latent_model.use_attn_pattern: False is not supported"),
    ({"model/latent_model/base_units": "wide"}, "model.latent_model.base_units: 'wide' is not valid"),
    ({"model/latent_model/bogus": 1}, "model.latent_model.bogus: not an argument of MindEarth's network"),
    ({"model/align/model_args/t_out": 0}, "model.align.model_args.t_out: 0 is not valid"),
    ({"model/align/model_args/use_inter_ffn": False}, "use_inter_ffn: False is not supported"),
    ({"model/vae/block_out_channels": [8, 12, 16, 16]}, "norm_num_groups"),
    ({"model/diffusion/given_betas": [0.1, 0.2]}, "model.diffusion.given_betas"),
    ({"model/align/model_args": _DROP}, "model.align.model_args: missing"),
])
def test_a_bad_mindearth_yaml_is_one_line(tmp_path, change, message):
    path = write_yaml(tmp_path / "diffusion.yaml", mindearth_yaml(**change))
    result = invoke("convert-weights", tmp_path / "x.ckpt", "--component", "vae", "--config", path,
                    "--out", tmp_path / "o.ckpt")
    line = one_line(result)
    assert result.exit_code == 2 and message in line and "MindEarth config" in line, line


# ------------------------------------------------------------------------------------------------------------------
# conversion


@pytest.mark.parametrize("component, prefix", [("vae", ""), ("unet", "main_module.main_model."),
                                               ("unet", "main_model."), ("align", "")])
def test_each_network_converts_number_for_number(tmp_path, me_yaml, sources, component, prefix):
    net, state = sources[component]
    src = save_mindearth(tmp_path / f"{component}.ckpt", state, prefix)
    result = invoke("convert-weights", src, "--component", component, "--config", me_yaml, "--out", tmp_path / "o.ckpt")
    assert result.exit_code == 0, result.output
    assert "MindEarth checkpoint" in result.output and (not prefix or repr(prefix) in result.output)
    ours, ckpt = converted(tmp_path / "o.ckpt", component)
    np.testing.assert_array_equal(outputs(component, ours), outputs(component, net))
    assert ckpt.meta["source_format"] == "mindearth" and ckpt.meta["source_prefix"] == prefix
    assert ckpt.config["preset"] == "mindearth:diffusion"


def test_alignment_conv1d_kernels_in_the_official_layout_are_accepted(tmp_path, me_yaml, sources):
    net, state = sources["align"]
    assert state["out.2.qkv_proj.weight"].shape == (192, 64, 1, 1)  # MindSpore's Conv1d: [out, in, 1, k]
    official = dict(state, **{k: v[:, :, 0, :] for k, v in state.items() if k.endswith("_proj.weight")})
    src = save_mindearth(tmp_path / "align.ckpt", official)
    assert invoke("convert-weights", src, "--component", "align", "--config", me_yaml,
                  "--out", tmp_path / "o.ckpt").exit_code == 0
    np.testing.assert_array_equal(outputs("align", converted(tmp_path / "o.ckpt", "align")[0]), outputs("align", net))


def test_hierarchical_embeddings_mindearth_never_applies_are_dropped(tmp_path):
    doc = mindearth_yaml(**{"model/latent_model/hierarchical_pos_embed": True})
    path = write_yaml(tmp_path / "diffusion.yaml", doc)
    net = network("unet", load_config(str(path)))
    state = mindearth_state(net)
    # MindEarth's UNet holds PosEmbed(block_units[i], mem_shapes[i]) down and up for every level but the last
    unused = {f"{s}_hierarchical_pos_embed_l.0.{a}_embed.embedding_table": np.ones((n, 16), np.float32)
              for s in ("down", "up") for a, n in (("t", 13), ("h", 16), ("w", 16))}
    src = save_mindearth(tmp_path / "u.ckpt", {**state, **unused}, "main_module.main_model.")
    result = invoke("convert-weights", src, "--component", "unet", "--config", path, "--out", tmp_path / "o.ckpt")
    assert result.exit_code == 0 and "6 tensors MindEarth never uses left out" in result.output, result.output
    ours, ckpt = converted(tmp_path / "o.ckpt", "unet")
    np.testing.assert_array_equal(outputs("unet", ours), outputs("unet", net))
    assert sorted(ckpt.meta["source_unused"]) == sorted(unused)
    partial = dict(state, **{k: v for k, v in list(unused.items())[:2]})  # some of them: not MindEarth's file
    src = save_mindearth(tmp_path / "p.ckpt", partial, "main_model.")
    line = one_line(invoke("convert-weights", src, "--component", "unet", "--config", path,
                           "--out", tmp_path / "p_out.ckpt"))
    assert "4 missing: down_hierarchical_pos_embed_l.0.w_embed.embedding_table, up_hierarchical" in line, line


def test_a_bare_checkpoint_of_a_preset_needs_no_yaml(tmp_path):
    net = network("vae", load_config("tiny"))
    src = save_mindearth(tmp_path / "vae.ckpt", mindearth_state(net))
    result = invoke("convert-weights", src, "--component", "vae", "--out", tmp_path / "o.ckpt")
    assert result.exit_code == 0 and "of config 'tiny'" in result.output, result.output
    np.testing.assert_array_equal(outputs("vae", converted(tmp_path / "o.ckpt", "vae")[0]), outputs("vae", net))
    unet = network("unet", load_config("tiny"))
    src = save_mindearth(tmp_path / "unet.ckpt", mindearth_state(unet), "main_module.main_model.")
    assert invoke("convert-weights", src, "--component", "unet", "--out", tmp_path / "u.ckpt").exit_code == 0
    # the weights are MindEarth's, so the network computes its timestep frequencies as MindEarth does
    assert load_checkpoint(tmp_path / "u.ckpt").model_kwargs["timestep_frequencies"] == "mindearth"
    odd = models.build("vae", {**load_config("tiny").model_kwargs("vae"), "latent_channels": 2})
    src = save_mindearth(tmp_path / "odd.ckpt", mindearth_state(odd))
    line = one_line(invoke("convert-weights", src, "--component", "vae", "--out", tmp_path / "odd_out.ckpt"))
    assert "fits the vae of no preset" in line and "--config diffusion.yaml" in line


def _refused(tmp_path, me_yaml, src, component, *needles):
    result = invoke("convert-weights", src, "--component", component, "--config", me_yaml,
                    "--out", tmp_path / "out.ckpt")
    line = one_line(result)
    assert result.exit_code == 2 and all(n in line for n in needles), line
    assert not (tmp_path / "out.ckpt").exists()


def test_a_missing_tensor_is_one_line(tmp_path, me_yaml, sources):
    state = dict(sources["unet"][1])
    del state["final_proj.bias"]
    _refused(tmp_path, me_yaml, save_mindearth(tmp_path / "u.ckpt", state, "main_model."), "unet",
             "1 missing: final_proj.bias", "config 'mindearth:diffusion'")


def test_a_wrong_shape_is_one_line(tmp_path, me_yaml, sources):
    state = dict(sources["vae"][1])
    state["decoder.conv_out.weight"] = np.zeros((1, 8, 3, 5), np.float32)
    _refused(tmp_path, me_yaml, save_mindearth(tmp_path / "v.ckpt", state), "vae",
             "decoder.conv_out.weight (file [1, 8, 3, 5] vs network [1, 8, 3, 3])")


def test_a_relative_position_index_of_another_geometry_is_refused(tmp_path, me_yaml, sources):
    state = dict(sources["align"][1])
    key = next(k for k in state if k.endswith("relative_position_index"))
    state[key] = state[key][::-1].copy()
    _refused(tmp_path, me_yaml, save_mindearth(tmp_path / "a.ckpt", state), "align", "buffers that differ", key)


def test_non_finite_weights_are_refused(tmp_path, me_yaml, sources):
    state = dict(sources["align"][1])
    state["time_embed.layer.0.bias"] = np.full_like(state["time_embed.layer.0.bias"], np.nan)
    _refused(tmp_path, me_yaml, save_mindearth(tmp_path / "a.ckpt", state), "align", "not finite",
             "time_embed.layer.0.bias")


@pytest.mark.parametrize("prefix, needle", [
    ("trainer.net.", "unknown key prefix 'trainer.net.'"),
    ("first_stage_model.", "unknown key prefix 'first_stage_model.'"),  # a VAE's prefix on a UNet
])
def test_an_unknown_prefix_is_one_line(tmp_path, me_yaml, sources, prefix, needle):
    src = save_mindearth(tmp_path / "u.ckpt", sources["unet"][1], prefix)
    _refused(tmp_path, me_yaml, src, "unet", needle, "'main_module.main_model.' or 'main_model.' or none")


def test_mixed_prefixes_and_the_wrong_network_are_one_line(tmp_path, me_yaml, sources):
    state = sources["unet"][1]
    mixed = {("main_model." if i % 2 else "main_module.main_model.") + k: v for i, (k, v) in enumerate(state.items())}
    src = save_mindearth(tmp_path / "m.ckpt", mixed)
    _refused(tmp_path, me_yaml, src, "unet", "mixes key prefixes", f"'main_model.': {len(state) // 2} keys")
    src = save_mindearth(tmp_path / "v.ckpt", sources["vae"][1])
    _refused(tmp_path, me_yaml, src, "unet", "holds no unet tensors", "looks like a MindEarth vae checkpoint")


def test_a_prediff_checkpoint_is_not_converted_again(tmp_path, repo_root):
    _refused(tmp_path, "tiny", repo_root / "prediff_cli" / "assets" / "demo" / "vae.ckpt", "vae",
             "is already a prediff checkpoint")


# ------------------------------------------------------------------------------------------------------------------
# a model folder from the three files


@pytest.fixture(scope="module")
def me_files(tmp_path_factory, sources):
    folder = tmp_path_factory.mktemp("ckpt")
    return {"vae": save_mindearth(folder / "vae.ckpt", sources["vae"][1]),
            "unet": save_mindearth(folder / "diffusion_epoch3.ckpt", sources["unet"][1], "main_module.main_model."),
            "align": save_mindearth(folder / "align.ckpt", sources["align"][1])}


def test_import_builds_a_model_folder_that_forecasts(tmp_path, me_yaml, me_files, sources, radar_file, monkeypatch):
    monkeypatch.setenv("PREDIFF_HOME", str(tmp_path / "home"))
    out = tmp_path / "home" / "models" / "me"
    result = invoke("import-mindearth", "--vae", me_files["vae"], "--unet", me_files["unet"], "--align",
                    me_files["align"], "--config", me_yaml, "--out", out, "--set", "sample.steps=2")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["align.ckpt", "model.json", "unet.ckpt", "vae.ckpt"]
    card = json.loads((out / "model.json").read_text())
    assert "MindEarth" in card["origin"] and card["config"]["file"] == str(me_yaml)
    assert card["sources"]["unet"]["file"] == str(me_files["unet"])
    assert card["sources"]["unet"]["key_prefix"] == "main_module.main_model."
    assert all(len(card["sources"][c]["sha256"]) == 64 for c in ("vae", "unet", "align"))
    model = load_model(out)
    assert model.has_align and model.config.sample.steps == 2 and model.config.preset == "mindearth:diffusion"
    for component in ("vae", "unet", "align"):
        np.testing.assert_array_equal(outputs(component, model.network(component)),
                                      outputs(component, sources[component][0]))
    listed = invoke("models", "--json")
    assert any(row["name"] == "me" and row["preset"] == "mindearth:diffusion" for row in json.loads(listed.output))
    sampled = invoke("sample", "--input", radar_file, "--model", "me", "--samples", "1", "--out", tmp_path / "f")
    assert sampled.exit_code == 0, sampled.output
    assert (tmp_path / "f" / "forecast.nc").is_file()


def test_import_without_a_yaml_uses_the_preset_the_files_fit(tmp_path, me_files):
    out = tmp_path / "model"
    result = invoke("import-mindearth", "--vae", me_files["vae"], "--unet", me_files["unet"], "--align",
                    me_files["align"], "--out", out)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "model.json").read_text())["config"]["preset"] == "tiny"
    model = load_model(out)
    assert model.config.preset == "tiny" and model.config.unet.timestep_frequencies == "mindearth"


def test_import_refuses_before_writing_and_never_mixes_models(tmp_path, me_yaml, me_files, sources):
    out = tmp_path / "model"
    args = ["import-mindearth", "--vae", me_files["vae"], "--unet", me_files["unet"], "--config", me_yaml,
            "--out", out]
    assert invoke(*args, "--align", me_files["align"]).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "already holds a model" in one_line(invoke(*args))
    bad = dict(sources["unet"][1])
    del bad["final_proj.bias"]
    broken = save_mindearth(tmp_path / "broken.ckpt", bad, "main_model.")
    broken_args = list(args)
    broken_args[broken_args.index(me_files["unet"])] = broken
    assert "1 missing" in one_line(invoke(*broken_args, "--overwrite"))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not list(tmp_path.glob(".model.*"))  # no staging folder left
    # replaced as a whole: the earlier model's alignment network does not stay beside a model imported without one
    assert invoke(*args, "--overwrite").exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "unet.ckpt", "vae.ckpt"]
    assert not invoke("import-mindearth", "--vae", me_files["vae"], "--unet", me_files["unet"], "--config", me_yaml,
                      "--out", tmp_path / "new" / "model").exit_code
    assert (tmp_path / "new" / "model" / "unet.ckpt").is_file()
