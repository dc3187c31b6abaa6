"""The latent cache: augmentation orientations, the disk store (round trip, damaged and crafted files), the cached
batch source (the same moments and the same loss inputs as encoding on the fly) and the trainers' option."""
import json
import os

import numpy as np
import pytest

from prediff.data.batches import AUG_MODES, ORIENTATIONS, EpochBatches, Transform, apply_transform, augment
from prediff.errors import ConfigError, InputError
from prediff.io.latent_cache import CacheShape, LatentCache, fingerprint


def test_quarter_turns_and_flips_give_eight_orientations_named_by_their_image():
    seq = np.random.default_rng(0).random((2, 5, 5, 1)).astype(np.float32)
    images = {}
    for fc in (False, True):
        for fr in (False, True):
            for k in range(4):
                t = Transform(fc, fr, quarter_turns=k)
                images.setdefault(t.orientation, []).append(apply_transform(seq, t))
    assert sorted(images) == list(range(8))
    for same in images.values():  # every draw named o gives the one image o
        assert len(same) == 2 and np.array_equal(same[0], same[1])
    distinct = {v[0].tobytes() for v in images.values()}
    assert len(distinct) == 8
    assert Transform(angle=30.0).orientation is None
    assert ORIENTATIONS["0"] == 1 and ORIENTATIONS["2"] == 8 and ORIENTATIONS["1"] is None


@pytest.mark.parametrize("mode", AUG_MODES)
def test_draws_rebuild_the_augmented_batch(mode):
    items = [np.random.default_rng(i).random((3, 6, 6, 1)).astype(np.float32) for i in range(7)]
    batches = EpochBatches(items, 3, seed=5, aug_mode=mode)
    for index in (0, 1, 4):
        rebuilt = np.stack([batches.sequence(item, t) for item, t in batches.draws(index)])
        assert np.array_equal(rebuilt, batches.batch(index))
        epoch = index // batches.batches_per_epoch
        direct = [augment(items[i], mode, np.random.default_rng([5, epoch, int(i)])) for i in batches.indices(index)]
        assert np.array_equal(np.stack(direct), rebuilt)


SHAPE = CacheShape(frames=5, orientations=8, moments=(4, 4, 2))


def _slots(seed, frames=3):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((frames, 4, 4, 2)).astype(np.float32), rng.random(frames).astype(np.float32)


def test_store_round_trip_persists_and_is_sparse(tmp_path):
    fp = fingerprint("w" * 64, [f"e{i}" for i in range(5)], (8, 8, 1))
    cache = LatentCache.open(tmp_path, fp, SHAPE)
    assert cache.get([0, 1, 2], 5) is None and cache.filled() == 0
    moments, intensity = _slots(1)
    cache.put([2, 3, 4], 5, moments, intensity)
    got = cache.get([2, 3, 4], 5)
    assert np.array_equal(got[0], moments) and np.array_equal(got[1], intensity)
    # a sequence overlapping it (frames 3, 4 shared) misses until its own first frame is in
    assert cache.get([1, 2, 3], 5) is None
    cache.put([0, 1], 5, *_slots(2, 2))
    overlap = cache.get([1, 2, 3], 5)
    assert np.array_equal(overlap[0], np.concatenate([_slots(2, 2)[0][1:], moments[:2]]))
    assert cache.get([2, 3, 4], 4) is None  # another orientation of the same frames
    assert (cache.hits, cache.misses) == (2, 3)
    cache.close()
    again = LatentCache.open(tmp_path, fp, SHAPE)
    assert again.filled() == 5 and np.array_equal(again.get([4], 5)[0], moments[2:])
    with pytest.raises(ValueError, match="slot shapes"):
        again.put([0, 1, 2], 0, np.zeros((3, 4, 4, 3), np.float32), intensity)
    with pytest.raises(IndexError):
        again.get([4, 5], 0)
    with pytest.raises(IndexError):
        again.get([0], 8)
    folder = tmp_path / fp[:16]
    assert sorted(p.name for p in folder.iterdir()) == ["filled.u8", "intensity.f32", "meta.json", "moments.f32"]
    assert (folder / "moments.f32").stat().st_size == 4 * 5 * 8 * 32
    # another fingerprint (another VAE or other frames) is another folder beside it
    other = LatentCache.open(tmp_path, fingerprint("v" * 64, [f"e{i}" for i in range(5)], (8, 8, 1)), SHAPE)
    assert other.folder != folder and other.get([2, 3, 4], 5) is None


def _damage(folder, how):
    meta = json.loads((folder / "meta.json").read_text())
    if how == "fingerprint":
        meta["fingerprint"] = "0" * 64
    elif how == "version":
        meta["version"] = 99
    elif how == "shape":
        meta["frames"] = 10**12
    elif how == "not json":
        (folder / "meta.json").write_bytes(b"\xff{")
        return
    elif how == "huge meta":
        (folder / "meta.json").write_text(" " * (1 << 17))
        return
    elif how == "truncated":
        os.truncate(folder / "moments.f32", 100)
        return
    elif how == "missing":
        (folder / "filled.u8").unlink()
        return
    (folder / "meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("how", ["fingerprint", "version", "shape", "not json", "huge meta", "truncated", "missing"])
def test_a_damaged_or_crafted_cache_is_refused_in_one_line(tmp_path, how):
    fp = fingerprint("w" * 64, ["a", "b"], (8, 8, 1))
    LatentCache.open(tmp_path, fp, SHAPE).close()
    folder = tmp_path / fp[:16]
    _damage(folder, how)
    with pytest.raises(InputError) as err:
        LatentCache.open(tmp_path, fp, SHAPE)
    message = str(err.value)
    assert "\n" not in message and str(folder) in message and "delete that folder" in message


def test_bad_flags_are_refused_and_non_finite_slots_are_encoded_again(tmp_path):
    fp = fingerprint("w" * 64, ["a"], (8, 8, 1))
    cache = LatentCache.open(tmp_path, fp, SHAPE)
    moments, intensity = _slots(3)
    cache.put([1, 2, 3], 1, moments, intensity)
    slot = 2 * SHAPE.orientations + 1  # frame 2, orientation 1
    os.pwrite(cache._fds["moments.f32"], np.float32(np.nan).tobytes(), 4 * slot * SHAPE.slot + 4 * 7)
    assert cache.get([1, 2, 3], 1) is None  # filled, but not finite: a miss
    assert cache.get([1], 1) is not None
    os.pwrite(cache._fds["filled.u8"], bytes([7]), 0)
    with pytest.raises(InputError, match="slot flag 7"):
        cache.get([0], 0)


def test_frame_table_shares_the_frames_of_overlapping_sequences(synthetic_root):
    from prediff.config import load_config
    from prediff.data import open_dataset
    from prediff.pipelines.training.encoded_batches import frame_table

    cfg = load_config("tiny", values={"data.root": str(synthetic_root)})
    items = open_dataset(cfg.data).split("train")
    keys, frames = frame_table(items)
    assert frames.shape == (len(items), cfg.data.seq_len) and len(set(keys)) == len(keys) == frames.max() + 1
    for i in range(len(items)):
        assert [keys[f] for f in frames[i]] == items.frame_keys(i)
    # 13-frame sequences every 6 frames: consecutive sequences of an event share one frame
    infos = [items.info(i) for i in range(len(items))]
    pairs = [(i, j) for i in range(len(items)) for j in range(len(items))
             if infos[i].event.id == infos[j].event.id and infos[j].first_frame == infos[i].first_frame + 6]
    assert pairs and all(frames[i][12] == frames[j][6] for i, j in pairs)
    assert len(keys) < len(items) * cfg.data.seq_len


@pytest.fixture(scope="module")
def unet_task(tiny_runs, synthetic_root):
    """The tiny diffusion trainer's task and its training batches (no steps taken)."""
    from prediff.config import load_config
    from prediff.pipelines.training.run import FrozenVAE, _build_task, _training_data, Distributed
    from prediff.runtime import setup_runtime

    cfg = load_config("tiny", values={"data.root": str(synthetic_root)})
    setup_runtime(cfg.device, cfg.seed)
    vae = FrozenVAE.read(tiny_runs["vae"][0] / "last.ckpt", cfg)
    train_data, _, _ = _training_data(cfg, "unet", Distributed())
    return cfg, vae, _build_task("unet", cfg, 1, Distributed(), vae), train_data


def test_cached_batches_hold_the_encoders_moments_and_give_the_same_loss_inputs(tmp_path, unet_task):
    from mindspore import Tensor

    from prediff.pipelines.training.encoded_batches import cached_batches

    cfg, vae, task, train_data = unet_task
    source = cached_batches(train_data, tmp_path, encode=task.encode, vae_weights_sha256=vae.weights_sha256,
                            img_size=cfg.data.img_size, vae_kwargs=vae.ckpt.model_kwargs)
    assert source.batches_per_epoch == train_data.batches_per_epoch
    for index, expected_cached in ((0, 0), (1, 0), (0, 4)):  # batch 0 again: every sequence from the disk
        pixels = train_data.batch(index)
        encoded = source.batch(index)
        assert encoded.cached == expected_cached and len(encoded) == len(pixels) == 4
        direct = task.encode(Tensor(pixels)).asnumpy()
        np.testing.assert_allclose(encoded.moments, direct, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(encoded.intensity[..., 0],
                                      pixels.mean(axis=(2, 3, 4), dtype=np.float64).astype(np.float32))
        # the loss inputs: the same noise draws and the same latents, from pixels or from the cache
        ours = task._inputs(encoded, np.random.default_rng(11))
        theirs = task._inputs(pixels, np.random.default_rng(11))
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=1e-5, atol=1e-6)
    slots = {(int(f), t.orientation) for index in (0, 1) for item, t in train_data.draws(index)
             for f in source.frames[item]}
    assert source.cache.filled() == len(slots)


def test_train_align_with_latent_cache_fills_then_reads_it(tmp_path, tiny_runs, synthetic_root):
    from typer.testing import CliRunner

    from prediff.cli.app import app

    runner = CliRunner()
    args = ["train-align", "--config", "tiny", "--data", str(synthetic_root), "--vae",
            str(tiny_runs["vae"][0] / "last.ckpt"), "--steps", "2", "--set", "train_align.log_every=1",
            "--latent-cache", str(tmp_path / "cache")]
    losses = []
    for run in ("first", "second"):
        result = runner.invoke(app, args + ["--run-dir", str(tmp_path / run)])
        assert result.exit_code == 0, result.output
        rows = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        rows = [r for r in rows if "loss" in r]
        assert [r["cached"] for r in rows] == ([0.0, 0.0] if run == "first" else [1.0, 1.0])
        losses.append([r["loss"] for r in rows])
        saved = (tmp_path / run / "config.yaml").read_text()
        assert str(tmp_path / "cache") in saved
    assert losses[0] == losses[1]
    # the VAE trainer has nothing to cache, and a free-angle augmentation cannot be cached: one line each
    assert "--latent-cache" not in runner.invoke(app, ["train-vae", "--help"]).output
    bad = runner.invoke(app, args + ["--run-dir", str(tmp_path / "bad"), "--set", "data.aug_mode=1"])
    assert bad.exit_code == 2 and "aug_mode" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "bad").exists()


def test_the_vae_trainer_refuses_a_latent_cache(tmp_path, synthetic_root):
    from prediff.config import load_config
    from prediff.pipelines.training.run import TrainRequest, run_training

    cfg = load_config("tiny", values={"data.root": str(synthetic_root), "train_vae.latent_cache": str(tmp_path)})
    with pytest.raises(ConfigError, match="train_vae.latent_cache"):
        run_training(TrainRequest("vae", cfg, tmp_path / "run", steps=1))


# ---------------------------------------------------------------------------------------------------------------
# a cache is a file from outside: no device, FIFO or symlink is read or written, no implausible slot is trained on

_OPEN_IN_CHILD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # a read that never ends fails here, not on the machine
from prediff.errors import InputError
from prediff.io.latent_cache import CacheShape, LatentCache
try:
    LatentCache.open(sys.argv[1], sys.argv[2], CacheShape(frames=5, orientations=8, moments=(4, 4, 2)))
except InputError as exc:
    print("REFUSED", exc)
else:
    print("OPENED")
"""


@pytest.mark.parametrize("kind", ["/dev/zero", "/dev/urandom", "fifo"])
def test_a_meta_json_that_never_ends_or_blocks_is_refused_at_once(tmp_path, kind):
    import subprocess
    import sys

    fp = fingerprint("w" * 64, ["a"], (8, 8, 1))
    LatentCache.open(tmp_path, fp, SHAPE).close()
    meta = tmp_path / fp[:16] / "meta.json"
    meta.unlink()
    if kind == "fifo":
        os.mkfifo(meta)
    else:
        meta.symlink_to(kind)
    try:
        child = subprocess.run([sys.executable, "-c", _OPEN_IN_CHILD, str(tmp_path), fp], capture_output=True,
                               text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"opening a cache whose meta.json is {kind} did not return within 60 s")
    assert child.returncode == 0, child.stderr[-2000:]
    line = child.stdout.strip()
    assert line.startswith("REFUSED") and "meta.json" in line and "delete that folder" in line and "\n" not in line
    assert ("symbolic link" in line) if kind != "fifo" else ("FIFO" in line)


@pytest.mark.parametrize("name", ["moments.f32", "intensity.f32", "filled.u8", "meta.json", "folder"])
def test_nothing_in_the_cache_is_read_or_written_through_a_symlink(tmp_path, name):
    fp = fingerprint("w" * 64, ["a"], (8, 8, 1))
    root = tmp_path / "cache"
    cache = LatentCache.open(root, fp, SHAPE)
    cache.put([0, 1], 3, *_slots(4, 2))
    cache.close()
    folder = root / fp[:16]
    outside = tmp_path / "outside"
    if name == "folder":  # the whole cache folder replaced by a link to a copy elsewhere
        folder.rename(outside)
        folder.symlink_to(outside)
        before = (outside / "filled.u8").read_bytes()
    else:
        outside.write_bytes((folder / name).read_bytes())
        before = outside.read_bytes()
        (folder / name).unlink()
        (folder / name).symlink_to(outside)
    with pytest.raises(InputError) as err:
        LatentCache.open(root, fp, SHAPE)
    assert "symbolic link" in str(err.value) and "delete that folder" in str(err.value)
    after = (outside / "filled.u8").read_bytes() if name == "folder" else outside.read_bytes()
    assert after == before


@pytest.mark.parametrize("damage", ["hole", "huge mean", "huge log-variance", "tiny log-variance", "intensity"])
def test_filled_slots_with_implausible_values_are_encoded_again(tmp_path, damage):
    from prediff.io.latent_cache import LOGVAR_RANGE, MEAN_LIMIT

    fp = fingerprint("w" * 64, ["a"], (8, 8, 1))
    cache = LatentCache.open(tmp_path, fp, SHAPE)
    moments, intensity = _slots(5, 1)
    moments[..., 1:] = -12.0  # (h, w, 2L) with L = 1: channel 1 is the log-variance of a sharp posterior
    slot = 4 * SHAPE.orientations + 6  # frame 4, orientation 6
    if damage == "hole":  # flagged, but the data never reached the sparse file: it reads as zeros
        os.pwrite(cache._fds["filled.u8"], bytes([1]), slot)
        assert cache.get([4], 6) is None
    else:
        bad_moments, bad_intensity = moments.copy(), intensity.copy()
        if damage == "huge mean":
            bad_moments[0, 1, 2, 0] = 1e30
        elif damage == "huge log-variance":
            bad_moments[0, 3, 0, 1] = LOGVAR_RANGE[1] * 2
        elif damage == "tiny log-variance":
            bad_moments[0, 0, 0, 1] = LOGVAR_RANGE[0] * 2
        else:
            bad_intensity[0] = 5.0
        cache.put([4], 6, bad_moments, bad_intensity)  # not stored: an encoding the cache would not give back
        assert cache.filled() == 0 and cache.get([4], 6) is None
        cache.put([4], 6, moments, intensity)
        assert cache.get([4], 6) is not None
        # the same values written into the filled slot behind the cache's back: a miss, encoded again
        os.pwrite(cache._fds["moments.f32"], bad_moments.astype("<f4").tobytes(), 4 * slot * SHAPE.slot)
        os.pwrite(cache._fds["intensity.f32"], bad_intensity.astype("<f4").tobytes(), 4 * 4)
        assert cache.get([4], 6) is None
    # values at the bounds are an encoder's
    edge = moments.copy()
    edge[0, 0, 0, 0], edge[0, 0, 1, 0] = MEAN_LIMIT, -MEAN_LIMIT
    edge[0, 1, 0, 1], edge[0, 1, 1, 1] = LOGVAR_RANGE
    cache.put([4], 6, edge, np.array([1.0], np.float32))
    assert np.array_equal(cache.get([4], 6)[0], edge)


def test_a_refused_cache_leaves_the_run_folder_as_it_was(tmp_path, tiny_runs, synthetic_root):
    from typer.testing import CliRunner

    from prediff.cli.app import app

    runner = CliRunner()
    cache_root = tmp_path / "cache"
    args = ["train-align", "--config", "tiny", "--data", str(synthetic_root), "--vae",
            str(tiny_runs["vae"][0] / "last.ckpt"), "--set", "train_align.log_every=1", "--latent-cache",
            str(cache_root)]
    run = tmp_path / "run"
    first = runner.invoke(app, args + ["--steps", "1", "--run-dir", str(run)])
    assert first.exit_code == 0, first.output
    (folder,) = [p for p in cache_root.iterdir() if not p.name.startswith(".")]
    with open(folder / "filled.u8", "r+b") as fh:  # a flag no prediff writes, in a slot no step reads first
        fh.seek(0, os.SEEK_END)
        fh.seek(fh.tell() - 1)
        fh.write(bytes([9]))
    written = {name: os.stat(run / name) for name in ("config.yaml", "metrics.jsonl")}
    resumed = runner.invoke(app, args + ["--steps", "2", "--run-dir", str(run), "--resume"])
    assert resumed.exit_code == 2 and "slot flag 9" in resumed.output and "Traceback" not in resumed.output
    for name, before in written.items():
        after = os.stat(run / name)
        assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns,
                                                                    before.st_size), name
    fresh = runner.invoke(app, args + ["--steps", "1", "--run-dir", str(tmp_path / "fresh")])
    assert fresh.exit_code == 2 and "slot flag 9" in fresh.output
    assert not (tmp_path / "fresh").exists()
