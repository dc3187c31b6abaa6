"""Synthetic data, catalog filters, sequences and splits, batches, forecast inputs."""
import datetime as dt
import hashlib

import h5py
import numpy as np
import pytest

from prediff.config import load_config
from prediff.data import EpochBatches, iterate_batches, open_dataset, read_catalog
from prediff.data.batches import augment
from prediff.data.radar_input import read_radar_input
from prediff.data.synthetic import write_synthetic_dataset
from prediff.errors import DownloadError, InputError


def _digest(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_synthetic_is_deterministic_and_in_sevir_layout(tmp_path, synthetic_root):
    again = write_synthetic_dataset(tmp_path / "again", events=16, seed=0)
    assert _digest(again) == _digest(synthetic_root)
    other = write_synthetic_dataset(tmp_path / "other", events=16, seed=1)
    assert _digest(other) != _digest(synthetic_root)
    files = sorted((synthetic_root / "data" / "vil").glob("*/*.h5"))
    assert files and all(f.name.startswith("SEVIR_VIL_STORMEVENTS_") for f in files)
    with h5py.File(files[0]) as h5:
        assert h5["vil"].dtype == np.uint8 and h5["vil"].shape[1:] == (128, 128, 25)
        assert "id" in h5
    header = (synthetic_root / "CATALOG.csv").read_text().splitlines()[0].split(",")
    for column in ("id", "file_name", "file_index", "img_type", "time_utc", "pct_missing", "llcrnrlat", "proj"):
        assert column in header


def test_synthetic_storms_look_like_vil(synthetic_root):
    vil = np.concatenate([h5py.File(f)["vil"][()].ravel()
                          for f in sorted((synthetic_root / "data" / "vil").glob("*/*.h5"))])
    assert (vil < 16).mean() > 0.5  # mostly clear air
    assert (vil >= 219).any()  # and intense cores
    # storms move: the centre of mass shifts between the first and the last frame of an event
    with h5py.File(sorted((synthetic_root / "data" / "vil").glob("*/*.h5"))[0]) as h5:
        event = h5["vil"][0].astype(float)
    yy, xx = np.mgrid[:128, :128]
    com = [((event[..., t] * xx).sum() / event[..., t].sum(), (event[..., t] * yy).sum() / event[..., t].sum())
           for t in (0, 6)]
    assert np.hypot(com[1][0] - com[0][0], com[1][1] - com[0][1]) > 3


def test_existing_destination_is_refused(synthetic_root):
    with pytest.raises(DownloadError, match="already exists"):
        write_synthetic_dataset(synthetic_root, events=2)


def test_catalog_filters(synthetic_root):
    events = read_catalog(synthetic_root / "CATALOG.csv")
    ids = [e.id for e in events]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    assert "S899999" not in ids  # its only row has pct_missing > 0
    assert "S800002" not in ids  # duplicated id: dropped entirely
    assert len(events) == 16 - 1  # 16 generated, one duplicated


def test_sequences_and_splits(synthetic_root):
    cfg = load_config("tiny", values={"data.root": str(synthetic_root)}).data
    ds = open_dataset(cfg)
    train, val, test = (ds.split(s) for s in ("train", "val", "test"))
    boundary = dt.datetime(2019, 6, 1)
    assert all(test.info(i).event.time_utc > boundary for i in range(len(test)))
    assert all(s.info(i).event.time_utc <= boundary for s in (train, val) for i in range(len(s)))
    assert (len(train) + len(val) + len(test)) == 3 * len(ds.events)  # 3 sequences per 25-frame event
    assert len(val) == round(0.1 * (len(train) + len(val)))
    keys = lambda s: {(s.info(i).event.id, s.info(i).first_frame) for i in range(len(s))}  # noqa: E731
    assert not keys(train) & keys(val)
    assert sorted(test.info(i).first_frame for i in range(3)) == [0, 6, 12]
    seq = train[0]
    assert seq.shape == (13, 128, 128, 1) and seq.dtype == np.float32 and 0 <= seq.min() and seq.max() <= 1
    times = train.info(0).times
    assert times[1] - times[0] == dt.timedelta(minutes=10)
    assert times[0] == train.info(0).event.time_utc - dt.timedelta(minutes=120) + \
        dt.timedelta(minutes=10 * train.info(0).first_frame)
    frames = ds.split("train", frames=True)
    pool_frames = 25 * len(ds.pool_events)
    assert len(frames) + len(ds.split("val", frames=True)) == pool_frames and frames[0].shape == (1, 128, 128, 1)
    again = open_dataset(cfg)
    assert keys(again.split("val")) == keys(val)


def test_epoch_batches_are_pure_functions_of_the_index(synthetic_root):
    ds = open_dataset(load_config("tiny", values={"data.root": str(synthetic_root)}).data)
    train = ds.split("train")
    a = EpochBatches(train, 4, seed=3, aug_mode="2")
    b = EpochBatches(train, 4, seed=3, aug_mode="2")
    np.testing.assert_array_equal(a.batch(5), b.batch(5))
    assert a.batch(0).shape == (4, 13, 128, 128, 1) and a.batch(0).dtype == np.float32
    assert not np.array_equal(a.indices(0), EpochBatches(train, 4, seed=4).indices(0))
    # one epoch visits every item at most once; ranks see disjoint halves
    epoch = np.concatenate([a.indices(i) for i in range(a.batches_per_epoch)])
    assert len(set(epoch.tolist())) == len(epoch)
    r0 = EpochBatches(train, 2, seed=3, rank=0, world_size=2)
    r1 = EpochBatches(train, 2, seed=3, rank=1, world_size=2)
    assert r0.batches_per_epoch == r1.batches_per_epoch
    seen0 = {int(i) for k in range(r0.batches_per_epoch) for i in r0.indices(k)}
    seen1 = {int(i) for k in range(r1.batches_per_epoch) for i in r1.indices(k)}
    assert not seen0 & seen1
    val = list(iterate_batches(ds.split("val"), 4))
    assert sum(len(v) for v in val) == len(ds.split("val"))


@pytest.mark.parametrize("mode", ["1", "2"])
def test_augmentation_applies_one_transform_to_every_frame(mode):
    frame = np.zeros((20, 20), np.float32)
    frame[2:6, 3:12] = 1.0
    seq = np.stack([frame] * 5)[..., None]
    out = augment(seq, mode, np.random.default_rng(7))
    assert out.shape == seq.shape
    assert all(np.array_equal(out[0], out[t]) for t in range(5))
    assert np.isclose(out.sum(), seq.sum(), rtol=0.3)
    assert np.array_equal(augment(seq, "0", np.random.default_rng(0)), seq)


def test_radar_input_reads_sevir_files_with_catalog_times(synthetic_root):
    event = read_catalog(synthetic_root / "CATALOG.csv")[0]
    path = synthetic_root / "data" / event.file_name
    radar = read_radar_input(path, event=event.file_index, start=6)
    assert radar.context.shape == (7, 128, 128) and radar.truth.shape == (6, 128, 128)
    with h5py.File(path) as h5:
        raw = h5["vil"][event.file_index]
    np.testing.assert_allclose(radar.context[0], raw[..., 6] / 255.0)
    assert radar.context_times[0] == event.time_utc + dt.timedelta(minutes=-120 + 60)
    assert radar.grid is not None and radar.grid.llcrnrlat == pytest.approx(event.corners[0])
    tail = read_radar_input(path, event=event.file_index, start=18)
    assert tail.truth is None  # frames 18..24 hold the context only


def test_radar_input_other_layouts(tmp_path, radar_file):
    radar = read_radar_input(radar_file, event=1)
    assert radar.context_times[0] == dt.datetime(2019, 7, 2, 0, 0)  # time_utc of event 1 (18:00 + 6 h)
    seq = tmp_path / "seq.h5"
    with h5py.File(seq, "w") as h5:
        h5["vil"] = np.linspace(0, 1, 10 * 8 * 8, dtype=np.float32).reshape(10, 8, 8)
    one = read_radar_input(seq)
    assert one.truth is None and one.context_times is None and one.context.max() <= 1.0
    with h5py.File(seq, "w") as h5:
        h5["vil"] = np.full((13, 8, 8), 200.0, np.float32)  # a float file on the 0–255 scale
    assert read_radar_input(seq).context.max() == pytest.approx(200 / 255)


@pytest.mark.parametrize("setup, message", [
    (lambda p: None, "not found"),
    (lambda p: p.write_text("hello"), "neither HDF5 nor NetCDF"),
    (lambda p: h5py.File(p, "w").create_dataset("x", data=[1]), "no 'vil' dataset"),
    (lambda p: h5py.File(p, "w").create_dataset("vil", data=np.zeros((5, 8, 8), np.uint8)), "needs at least 7"),
    (lambda p: h5py.File(p, "w").create_dataset("vil", data=np.full((8, 8, 8), np.nan, np.float32)), "NaN"),
    (lambda p: h5py.File(p, "w").create_dataset("vil", data=-np.ones((8, 8, 8), np.float32)), "negative"),
    (lambda p: h5py.File(p, "w").create_dataset("vil", data=np.zeros((8, 8), np.uint8)), "expected (N,H,W,T)"),
])
def test_radar_input_errors(tmp_path, setup, message):
    path = tmp_path / "in.h5"
    handle = setup(path)
    if hasattr(handle, "file"):
        handle.file.close()
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        read_radar_input(path)
    assert "\n" not in str(info.value)


def test_radar_input_event_out_of_range(radar_file):
    with pytest.raises(InputError, match="out of range"):
        read_radar_input(radar_file, event=9)
