"""Shared test fixtures. The environment is prepared before MindSpore is imported anywhere."""
import os
from pathlib import Path

os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
os.environ.setdefault("GLOG_v", "3")

import pytest  # noqa: E402

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
