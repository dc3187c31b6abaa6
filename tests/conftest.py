"""Shared test fixtures. Importing prediff first prepares MindSpore's environment before anything loads it."""
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import prediff  # noqa: F401
import pytest

# The pytest-xdist workers start after this module is read and inherit the environment: with glibc's default of one
# malloc arena per thread, memory that MindSpore's thread pools free is rarely returned, and a worker running many
# compiled graphs grew past 12 GB. Two arenas keep a worker's resident memory near what it actually uses.
os.environ.setdefault("MALLOC_ARENA_MAX", "2")

# MindSpore runs eagerly (PyNative) in the tests unless a test is marked `compiled`: compiling a graph costs 10-60 s
# and most tests make a handful of network calls, which run faster eagerly (the whole suite about 40 % faster).
# The compiled path is what users run, so it is tested where it matters: the tests marked `compiled` (graph-only
# behaviour such as recomputation and keyed dropout inside a graph, the bf16 kernels in a graph, many-call
# forecasts) and the shared trained fixtures below, built compiled. Tests that compare graph and
# eager results call `mindspore.jit` themselves. `PREDIFF_JIT=1 pytest ...` runs everything compiled.
os.environ.setdefault("PREDIFF_JIT", "0")

REPO = Path(__file__).resolve().parents[1]
# the tests live in folders named after the package parts they test; their shared helpers (this file,
# loopback_server.py) are imported by name from here
sys.path.insert(0, str(Path(__file__).resolve().parent))


@contextlib.contextmanager
def compiled_mode():
    """Within: prediff compiles its hot paths (`prediff.compile.compiled` is `mindspore.jit`), as outside tests."""
    saved = os.environ.get("PREDIFF_JIT")
    os.environ["PREDIFF_JIT"] = "1"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["PREDIFF_JIT"]
        else:
            os.environ["PREDIFF_JIT"] = saved


@pytest.fixture(autouse=True)
def _compilation(request):
    """Tests marked `compiled` run with prediff's graph compilation on."""
    if request.node.get_closest_marker("compiled") is None:
        yield
    else:
        with compiled_mode():
            yield


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
_SHARED_VERSION = 1  # bump when what the shared fixtures contain changes without a source change


def _source_digest() -> str:
    """Digest of everything a trained fixture depends on: the package sources, presets, kernels and this file."""
    h = hashlib.sha256(f"{_SHARED_VERSION}/{TINY_STEPS}".encode())
    for folder in ("prediff_cli", "models"):
        for path in sorted((REPO / folder).rglob("*")):
            if path.suffix in (".py", ".yaml", ".cc", ".h") and "__pycache__" not in path.parts:
                h.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()[:16]


def _shared(name: str, build: Callable[[Path], None]) -> Path:
    """A fixture folder built once for all pytest sessions and xdist workers of this checkout.

    The test command runs three pytest sessions of two workers each; a session-scoped fixture would be rebuilt in
    every worker that needs it (training the tiny networks costs about a minute each time). The folder lives under
    .pytest_cache, keyed by the digest of the sources, and is built under an exclusive lock (workers that need it
    meanwhile wait). It is built in place, because checkpoints record the paths of the checkpoints they were trained
    against, and marked complete last: a folder without the mark (a crash) is rebuilt. Tests only read it.
    """
    root = REPO / ".pytest_cache" / "prediff-shared"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{name}-{_source_digest()}"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (final / ".complete").is_file():
            shutil.rmtree(final, ignore_errors=True)  # a crashed build
            for old in root.glob(f"{name}-*"):  # copies for earlier sources (not recent ones: another checkout
                if time.time() - old.stat().st_mtime > 6 * 3600:  # state may be running tests right now)
                    shutil.rmtree(old, ignore_errors=True)
            final.mkdir()
            build(final)
            (final / ".complete").write_text("")
    return final


@pytest.fixture(scope="session")
def synthetic_root() -> Path:
    """A small synthetic SEVIR-LR tree shared by the tests (16 events: 3 sequences each)."""
    from prediff.data.synthetic import write_synthetic_dataset

    return _shared("synthetic", lambda d: write_synthetic_dataset(d / "synthetic", events=16, seed=0)) / "synthetic"


def _train_tiny(folder: Path, data_root: Path) -> None:
    """The three trainers at `tiny`, TINY_STEPS steps each; each result's fields go to <component>/result.json."""
    from prediff.config import load_config

    cfg = load_config("tiny", values={"data.root": str(data_root)})
    with compiled_mode():  # 24 steps each: compiled is faster here, and it is how users train
        _train_components(folder, cfg)


def _train_components(folder: Path, cfg) -> None:
    from prediff.pipelines.training.run import TrainRequest, run_training

    for component in ("vae", "unet", "align"):
        vae = folder / "vae" / "last.ckpt" if component != "vae" else None
        result = run_training(TrainRequest(component=component, config=cfg, run_dir=folder / component,
                                           steps=TINY_STEPS, vae_checkpoint=vae))
        fields = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(result).items()}
        (folder / component / "result.json").write_text(json.dumps(fields, default=str))


@pytest.fixture(scope="session")
def tiny_runs(synthetic_root):
    """The three trainers at `tiny` for TINY_STEPS steps each: {"vae"|"unet"|"align": (run_dir, result)}, trained
    once per checkout (`_shared`); `result` holds the fields run_training returned (paths as strings)."""
    folder = _shared("tiny-runs", lambda d: _train_tiny(d, synthetic_root))
    return {c: (folder / c, SimpleNamespace(**json.loads((folder / c / "result.json").read_text())))
            for c in ("vae", "unet", "align")}


@pytest.fixture(scope="session")
def radar_file(tmp_path_factory) -> Path:
    from prediff.data.synthetic import write_radar_file

    return write_radar_file(tmp_path_factory.mktemp("radar") / "radar.h5", events=2, seed=5)
