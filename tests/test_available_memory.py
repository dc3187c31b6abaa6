"""Checkpoints load when the memory is available as reclaimable page cache rather than free (MindSpore's own check
counts free pages only)."""
import os
import shutil

from prediff.io.available_memory import available_memory
from prediff.io.checkpoint import load_checkpoint
from prediff.pipelines.model_store import BUNDLED


def test_a_checkpoint_loads_while_free_memory_is_low(tmp_path, monkeypatch):
    path = shutil.copy(BUNDLED["demo"] / "vae.ckpt", tmp_path / "vae.ckpt")
    real = os.sysconf

    def little_free(name):  # 1 free page: what a busy Linux machine with its memory in the page cache reports
        return 1 if name == "SC_AVPHYS_PAGES" else real(name)

    monkeypatch.setattr(os, "sysconf", little_free)
    assert available_memory() > 1 << 20  # MemAvailable counts the cache the kernel reclaims
    ckpt = load_checkpoint(path, component="vae")
    assert ckpt.component == "vae" and ckpt.model
