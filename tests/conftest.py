"""Shared test fixtures. Importing prediff first prepares MindSpore's environment before anything loads it."""
import os
from pathlib import Path

import prediff  # noqa: F401
import pytest

# The pytest-xdist workers start after this module is read and inherit the environment: with glibc's default of one
# malloc arena per thread, memory that MindSpore's thread pools free is rarely returned, and a worker running many
# compiled graphs grew past 12 GB. Two arenas keep a worker's resident memory near what it actually uses.
os.environ.setdefault("MALLOC_ARENA_MAX", "2")

REPO = Path(__file__).resolve().parents[1]


def _official_dir() -> Path:
    """Official parity fixtures: $PREDIFF_FIXTURES, else the copy committed under tests/fixtures/official."""
    env = os.environ.get("PREDIFF_FIXTURES")
    for candidate in ([Path(env)] if env else []) + [REPO / "tests" / "fixtures" / "official",
                                                     REPO.parent / "shared" / "fixtures" / "official"]:
        if (candidate / "unet.npz").is_file():
            return candidate
    raise FileNotFoundError("official parity fixtures not found (tests/fixtures/official)")


@pytest.fixture(scope="session")
def official_dir() -> Path:
    return _official_dir()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


TINY_STEPS = 24


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A small synthetic SEVIR-LR tree shared by the tests (16 events: 3 sequences each)."""
    from prediff.data.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(tmp_path_factory.mktemp("data") / "synthetic", events=16, seed=0)


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory, synthetic_root):
    """The three trainers at `tiny` for TINY_STEPS steps each: {"vae"|"unet"|"align": (run_dir, result)}."""
    from prediff.config import load_config
    from prediff.pipelines.training.run import TrainRequest, run_training

    base = tmp_path_factory.mktemp("runs")
    cfg = load_config("tiny", values={"data.root": str(synthetic_root)})
    out = {}
    for component in ("vae", "unet", "align"):
        run_dir = base / component
        vae = out["vae"][0] / "last.ckpt" if component != "vae" else None
        result = run_training(TrainRequest(component=component, config=cfg, run_dir=run_dir, steps=TINY_STEPS,
                                           vae_checkpoint=vae))
        out[component] = (run_dir, result)
    return out


@pytest.fixture(scope="session")
def radar_file(tmp_path_factory) -> Path:
    from prediff.data.synthetic import write_radar_file

    return write_radar_file(tmp_path_factory.mktemp("radar") / "radar.h5", events=2, seed=5)
