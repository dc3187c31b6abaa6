"""MindSpore networks of PreDiff with the official parameter tree (installed as `prediff_models`).

Public API (kept stable; tests and external checks call these names):

* `build(component, config)` → `nn.Cell` for "vae", "unet" or "align", from the dict of official
  constructor arguments (as stored under `config_json` in the parity fixtures).
* `load_official_state_dict(net, state)` loads a dict of official PyTorch key → numpy array, raising
  `StateDictMismatch` on any missing, unexpected or mis-shaped entry.
* `prediff_models.diffusion`: schedule, DDPM / DDIM steps, knowledge-alignment guidance.

Importing this package is cheap: it prepares the environment MindSpore needs (`environment`) and loads the
networks, and MindSpore with them, on first use of a name. Models never read files or YAML; they take arguments.
"""
import importlib

from . import environment  # noqa: F401  (before any `import mindspore`)

_LAZY = {"StateDictMismatch": ".official", "load_official_state_dict": ".official",
         "official_state_dict": ".official", "COMPONENTS": ".registry", "build": ".registry",
         "count_parameters": ".registry"}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    if name in ("diffusion", "vae", "earthformer", "kernels", "official", "registry", "mindearth"):
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
