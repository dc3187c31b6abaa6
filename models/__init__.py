"""MindSpore networks of PreDiff with the official parameter tree.

Public API (kept stable; tests and external checks call these names):

* `build(component, config)` → `nn.Cell` for "vae", "unet" or "align", from the dict of official
  constructor arguments (as stored under `config_json` in the parity fixtures).
* `load_official_state_dict(net, state)` loads a dict of official PyTorch key → numpy array, raising
  `StateDictMismatch` on any missing, unexpected or mis-shaped entry.
* `models.diffusion`: schedule, DDPM / DDIM steps, knowledge-alignment guidance.

Models never read files or YAML; they take arguments.
"""
import os

# Must precede the first `import mindspore` (see prediff_cli/__init__.py for why).
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
os.environ.setdefault("GLOG_v", "3")

from .official import StateDictMismatch, load_official_state_dict, official_state_dict  # noqa: E402
from .registry import COMPONENTS, build, count_parameters  # noqa: E402

__all__ = ["COMPONENTS", "StateDictMismatch", "build", "count_parameters", "load_official_state_dict",
           "official_state_dict"]


def __getattr__(name):
    # `models.diffusion` is imported on first use so that building a VAE does not pull in the sampler code.
    if name == "diffusion":
        import importlib

        return importlib.import_module(".diffusion", __name__)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
