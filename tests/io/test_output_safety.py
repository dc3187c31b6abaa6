"""Writing results: nothing a user wrote is replaced unasked, an input is never replaced, no link is written through,
and a model folder is published whole or not at all (`convert-weights --out`, `export-model`, `io.publish`)."""
import json
import os
import shutil

import numpy as np
import pytest
import yaml
from cli_calls import invoke, one_line

from prediff.errors import PrediffError
from prediff.io import publish
from prediff.io.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def align_config(official_dir, tmp_path_factory):
    """A config whose align section is the official fixture's constructor arguments."""
    align = json.loads(str(np.load(official_dir / "align.npz")["config_json"]))
    path = tmp_path_factory.mktemp("cfg") / "fixtures.yaml"
    path.write_text(yaml.safe_dump({"base": "tiny", "align": align}))
    return path


def convert(src, out, config, *extra):
    return invoke("convert-weights", src, "--component", "align", "--config", config, "--out", out, *extra)


# ------------------------------------------------------------------------------------------------------------------
# convert-weights --out


def test_existing_out_is_replaced_only_with_overwrite(tmp_path, official_dir, align_config):
    out = tmp_path / "align.ckpt"
    out.write_bytes(b"yesterday's conversion")
    line = one_line(convert(official_dir / "align.npz", out, align_config))
    assert "already exists; pass --overwrite" in line and out.read_bytes() == b"yesterday's conversion"
    assert convert(official_dir / "align.npz", out, align_config, "--overwrite").exit_code == 0
    assert load_checkpoint(out, component="align").model


def test_out_is_never_the_input(tmp_path, official_dir, align_config):
    # a PyTorch file named .ckpt (as Lightning names them) converted onto itself would be destroyed
    src = tmp_path / "weights.ckpt"
    shutil.copy(official_dir / "unet_state_dict.pt", src)
    before = src.read_bytes()
    for out in (src, tmp_path / "." / "weights.ckpt"):
        line = one_line(invoke("convert-weights", src, "--component", "unet", "--out", out, "--overwrite"))
        assert "is the input" in line and "would destroy the input" in line
    hard = tmp_path / "hard.ckpt"
    os.link(src, hard)
    assert "is the input" in one_line(invoke("convert-weights", src, "--component", "unet", "--out", hard,
                                             "--overwrite"))
    assert src.read_bytes() == before


def test_out_is_never_written_through_a_link(tmp_path, official_dir, align_config):
    precious = tmp_path / "precious.ckpt"
    precious.write_bytes(b"keep me")
    link = tmp_path / "link.ckpt"
    link.symlink_to(precious)
    for extra in ((), ("--overwrite",)):
        assert "symbolic link" in one_line(convert(official_dir / "align.npz", link, align_config, *extra))
    assert link.is_symlink() and precious.read_bytes() == b"keep me"
    (tmp_path / "dir.ckpt").mkdir()
    assert "is a folder" in one_line(convert(official_dir / "align.npz", tmp_path / "dir.ckpt", align_config,
                                             "--overwrite"))


# ------------------------------------------------------------------------------------------------------------------
# export-model and the publishing of a model folder


@pytest.fixture()
def demo_files(repo_root):
    folder = repo_root / "prediff_cli" / "assets" / "demo"
    return [folder / "vae.ckpt", folder / "unet.ckpt", folder / "align.ckpt"]


def test_failed_export_overwrite_leaves_the_folder_as_it_was(tmp_path, demo_files):
    out = tmp_path / "model"
    out.mkdir()
    (out / "vae.ckpt").write_bytes(b"old vae")
    (out / "align.ckpt").write_bytes(b"old align")
    (out / "unet.ckpt").mkdir()  # one target cannot be replaced by a file
    result = invoke("export-model", *demo_files, "--out", out, "--overwrite")
    assert result.exit_code == 2 and "unet.ckpt is a folder" in one_line(result)
    assert (out / "vae.ckpt").read_bytes() == b"old vae" and (out / "align.ckpt").read_bytes() == b"old align"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staging folder left


def test_export_overwrite_replaces_the_whole_model(tmp_path, demo_files):
    out = tmp_path / "model"
    out.mkdir()
    for name in ("vae.ckpt", "unet.ckpt", "align.ckpt", "model.json"):
        (out / name).write_bytes(b"an earlier model")
    (out / "notes.txt").write_text("mine")
    assert invoke("export-model", *demo_files[:2], "--out", out, "--overwrite").exit_code == 0
    # the earlier model's alignment network and card do not stay beside the new VAE and UNet; other files stay
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "unet.ckpt", "vae.ckpt"]
    assert load_checkpoint(out / "unet.ckpt", component="unet").model
    assert "is the input" in one_line(invoke("export-model", out / "vae.ckpt", out / "unet.ckpt", "--out", out,
                                             "--overwrite"))


def test_publish_puts_the_old_files_back_when_a_move_fails(tmp_path, monkeypatch):
    out = tmp_path / "model"
    out.mkdir()
    for name in ("a", "b", "c"):
        (out / name).write_text(f"old {name}")
    real_replace, calls = os.replace, []

    def failing_replace(src, dst):
        calls.append((src, dst))
        if str(src).endswith("staging/b"):  # the second new file cannot be moved in
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    with publish.staging_folder(out) as staging:
        for name in ("a", "b"):
            (staging / name).write_text(f"new {name}")
        monkeypatch.setattr(publish.os, "replace", failing_replace)
        with pytest.raises(PrediffError, match="No space left on device.*earlier files are unchanged"):
            publish.publish_folder(staging, out, ["a", "b", "c"])
    assert {p.name: p.read_text() for p in out.iterdir()} == {"a": "old a", "b": "old b", "c": "old c"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
