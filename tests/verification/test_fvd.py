"""FVD: parity of the I3D features and the Fréchet distance with the official PreDiff code (fixtures/official/fvd.npz,
weights regenerated here from the fixture's recipe), and the streaming / resumable / skipped behaviour in scoring."""
import json

import numpy as np
import pytest

from prediff.config import ScoreConfig
from prediff.errors import InputError
from prediff.pipelines import evaluate
from prediff.verification import FVD, Scorer, frechet_distance
from prediff.verification.video_features import crop_matrices, preprocess, resize_matrix

_GOLDEN, _MIX1, _MIX2 = (np.uint64(v) for v in (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB))


def _uniform(seed: int, k: int, n: int) -> np.ndarray:
    """The fixture's generator: splitmix64(seed·1000003 + k·65537 + i) >> 11, times 2^-53, i = 0..n-1."""
    z = np.uint64(seed * 1_000_003 + k * 65_537) + np.arange(n, dtype=np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def recipe_weights(fixture) -> dict:
    """The exact I3D state dict of the fixture (weights from its recipe, BatchNorm statistics as stored)."""
    seed, shapes = int(fixture["seed"]), json.loads(str(fixture["shapes"]))
    state = {}
    for k, (key, shape) in enumerate(zip((str(k) for k in fixture["keys"]), shapes)):
        if key.endswith("num_batches_tracked"):
            state[key] = np.array(0, np.int64)
        elif key.endswith(("running_mean", "running_var")):
            state[key] = np.asarray(fixture[f"bn/{key}"], np.float32)
        else:
            n = int(np.prod(shape))
            u = 2 * _uniform(seed, k, n).reshape(shape) - 1
            if key.endswith("conv3d.weight"):
                value = u * np.sqrt(3) / np.sqrt(n / shape[0])
            elif key.endswith("bn.weight"):
                value = 1 + 0.2 * u
            else:  # conv and BatchNorm biases
                value = 0.1 * u
            state[key] = value.astype(np.float32)
    return state


@pytest.fixture(scope="module")
def fixture(official_dir):
    with np.load(official_dir / "fvd.npz", allow_pickle=False) as z:
        return {key: z[key] for key in z.files}


@pytest.fixture(scope="module")
def features(fixture):
    """Our I3D features of the fixture's real and fake videos (computed once: the full network at 224)."""
    from prediff.verification.video_features import VideoFeatures
    from prediff_models.i3d import InceptionI3d, load_i3d_state_dict

    net = InceptionI3d(400, in_channels=3)
    load_i3d_state_dict(net, recipe_weights(fixture))
    extractor = VideoFeatures(net)
    videos = np.concatenate([fixture["in/real_u8"], fixture["in/fake_u8"]]).astype(np.float32) / 255
    out = extractor.features(videos)
    return out[:16], out[16:]


def test_i3d_features_match_the_official_network(fixture, features):
    for ours, label in zip(features, ("real", "fake")):
        ref = fixture[f"out/{label}_features"].astype(np.float64)
        assert ours.shape == ref.shape == (16, 400)
        assert np.abs(ours - ref).max() / np.abs(ref).max() < 1e-4


def test_fvd_matches_the_official_value(fixture, features):
    want = float(fixture["out/fvd"])
    score = FVD()
    score.accumulate_features(real=features[0][:5])
    score.accumulate_features(real=features[0][5:], fake=features[1])
    assert abs(score.compute()["fvd"] - want) / want < 1e-3
    exact = FVD()  # the distance itself, on the official features: float64 rounding only
    exact.accumulate_features(real=fixture["out/real_features"], fake=fixture["out/fake_features"])
    assert exact.compute() == {"fvd": pytest.approx(want, rel=1e-6), "n_real": 16, "n_fake": 16}


def test_official_key_set_loads_and_other_sets_do_not(fixture):
    from prediff_models import StateDictMismatch
    from prediff_models.i3d import InceptionI3d, load_i3d_state_dict

    net = InceptionI3d(400, in_channels=3)
    shapes = dict(zip((str(k) for k in fixture["keys"]), json.loads(str(fixture["shapes"]))))
    params = {name: tuple(p.shape) for name, p in net.parameters_and_names()}
    assert {k: tuple(v) for k, v in shapes.items() if not k.endswith("num_batches_tracked")} == params
    bad = {k: np.zeros(s, np.float32) for k, s in shapes.items() if not k.endswith("num_batches_tracked")}
    bad.pop("Mixed_4c.b1b.bn.running_var")
    with pytest.raises(StateDictMismatch, match="Mixed_4c.b1b.bn.running_var"):
        load_i3d_state_dict(net, bad)


def test_preprocessing_sizes_and_resampling():
    rows, cols = crop_matrices(96, 128)  # short side 96 → 224, long side ceil(128 · 224 / 96) = 299, centre crop
    assert rows.shape == (224, 96) and cols.shape == (224, 128)
    np.testing.assert_allclose(resize_matrix(128, 299).sum(axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(resize_matrix(4, 8)[:3], [[1, 0, 0, 0], [0.75, 0.25, 0, 0], [0.25, 0.75, 0, 0]])
    x = preprocess(np.full((2, 6, 1, 96, 128), 0.25, np.float32))
    assert x.shape == (2, 1, 12, 224, 224) and np.allclose(x, -0.5)
    assert preprocess(np.zeros((1, 9, 3, 224, 224), np.float32)).shape == (1, 3, 9, 224, 224)
    with pytest.raises(InputError, match=r"\(B, T, C, H, W\)"):
        preprocess(np.zeros((2, 6, 64, 64), np.float32))
    with pytest.raises(InputError, match="at least 5 frames"):
        preprocess(np.zeros((2, 4, 1, 64, 64), np.float32))


def test_frechet_distance_against_the_matrix_square_root():
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 6)), rng.normal(size=(50, 6)) * 1.5 + 0.3
    ma, mb, ca, cb = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    want = np.sum((ma - mb) ** 2) + np.trace(ca + cb) - 2 * np.trace(sqrtm(ca @ cb).real)
    assert frechet_distance(ma, ca, mb, cb) == pytest.approx(want, rel=1e-9)
    score = FVD(num_features=6)
    score.accumulate_features(real=a, fake=b)
    assert score.compute()["fvd"] == pytest.approx(want, rel=1e-9)
    score = FVD(num_features=6)
    score.accumulate_features(real=a[:1], fake=b)
    assert score.compute()["fvd"] is None  # one real sequence has no covariance
    with pytest.raises(InputError, match=r"\(n, 6\)"):
        score.accumulate_features(fake=b[:, :5])


class _ProjectedFeatures:
    """A stand-in for the I3D extractor: a fixed random projection of the raw videos (NumPy only)."""

    def __init__(self, size: int):
        self.weights = np.random.default_rng(1).normal(size=(size, 400)) / np.sqrt(size)
        self.calls = 0

    def features(self, videos):
        self.calls += 1
        return np.asarray(videos, np.float64).reshape(len(videos), -1) @ self.weights


def _cases(n: int = 4, members: int = 3, t: int = 6, size: int = 24):
    rng = np.random.default_rng(7)
    contexts = rng.uniform(0, 1, (n, 7, size, size)).astype(np.float32)
    truths = rng.uniform(0, 1, (n, t, size, size)).astype(np.float32)
    forecast = np.clip(truths[:, None] + rng.normal(0, 0.2, (n, members, t, size, size)), 0, 1).astype(np.float32)
    return contexts, truths, forecast


def test_fvd_streams_and_resumes_in_the_evaluation(tmp_path):
    contexts, truths, forecast = _cases()
    cfg = ScoreConfig()
    whole = evaluate.Evaluation(cfg, 0, _ProjectedFeatures(6 * 24 * 24))
    whole.add(contexts, truths, forecast)
    want = whole.scores({})

    first = evaluate.Evaluation(cfg, 0, _ProjectedFeatures(6 * 24 * 24))
    first.add(contexts[:2], truths[:2], forecast[:2])
    first.save(tmp_path / "state")
    resumed = evaluate.Evaluation(cfg, 0, _ProjectedFeatures(6 * 24 * 24))
    resumed.load(tmp_path / "state")
    resumed.add(contexts[2:], truths[2:], forecast[2:])
    got = resumed.scores({})

    blocks = {"PreDiff": (want, got), **{k: (want["baselines"][k], got["baselines"][k]) for k in cfg.baselines}}
    assert len(blocks) == 1 + len(cfg.baselines) >= 3
    for name, (a, b) in blocks.items():
        assert isinstance(a["fvd"], float) and a["fvd"] > 0, name
        # float64 sums in another grouping; 400 features from 4 cases make a rank-3 covariance, whose near-zero
        # eigenvalues carry the rounding into the square roots
        assert b["fvd"] == pytest.approx(a["fvd"], rel=1e-6), name
        assert set(a["crps_standard"]) == set(a["crps"]) == {"pool1", "pool4", "pool16"}, name
        assert b["crps_standard"] == pytest.approx(a["crps_standard"], rel=1e-9), name
    assert want["notes"] == [] and got["notes"] == []
    # the model's fake set is every member, the baselines' one sequence per case; the real set is the truths
    state = resumed.scorers["model"].state_dict()
    assert int(state["fvd/real_count"]) == 4 and int(state["fvd/fake_count"]) == 12
    assert int(resumed.scorers["persistence"].state_dict()["fvd/fake_count"]) == 4


def test_scorer_state_round_trip_keeps_the_fvd(tmp_path):
    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(9, 400)), rng.normal(size=(12, 400)) + 0.1
    one = Scorer()
    one.accumulate_fvd(real=real, fake=fake)
    two = Scorer()
    two.accumulate_fvd(real=real[:4], fake=fake[:5])
    two.save_state(tmp_path / "s.npz")
    three = Scorer()
    three.load_state(tmp_path / "s.npz")
    three.accumulate_fvd(real=real[4:], fake=fake[5:])
    assert three.fvd.value() == pytest.approx(one.fvd.value(), rel=1e-6)  # rank-8 covariances: see above


def test_without_the_i3d_weights_fvd_is_skipped_with_one_note(tmp_path, monkeypatch):
    monkeypatch.setenv("PREDIFF_HOME", str(tmp_path / "empty-home"))
    assert evaluate.fvd_features() == (None, None)
    contexts, truths, forecast = _cases(n=2)
    cfg = ScoreConfig()
    evaluation = evaluate.Evaluation(cfg, 0, None, evaluate.FVD_NOT_INSTALLED)
    evaluation.add(contexts, truths, forecast)
    scores = evaluation.scores({})
    assert scores["fvd"] is None and all(scores["baselines"][k]["fvd"] is None for k in cfg.baselines)
    assert scores["notes"] == [evaluate.FVD_NOT_INSTALLED]
    assert "prediff download weights i3d" in scores["notes"][0]
    assert all("crps_standard" in scores["baselines"][k] for k in cfg.baselines)
