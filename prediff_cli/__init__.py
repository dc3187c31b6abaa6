"""prediff: probabilistic precipitation nowcasting with PreDiff on MindSpore.

    import prediff
    model = prediff.load_model("demo")
    fc = model.forecast(prediff.read_radar("examples/radar.h5"), samples=8, align="avg_x")

`load_model`, `Model`, `read_radar`, `forecast` and `score` are loaded on first use (see `prediff.api`), so that
importing the package, and starting the `prediff` command, stays fast. Importing it first prepares the
environment MindSpore needs (`prediff_models.environment`).
"""
import importlib

import prediff_models  # noqa: F401  (the network package: sets MindSpore's environment before anything imports MindSpore)

__version__ = "0.1.0"

_API = {"load_model": ".pipelines.model", "Model": ".pipelines.model", "installed_models": ".pipelines.model_store",
        "read_radar": ".api", "forecast": ".api", "score": ".api"}

__all__ = ["__version__", *sorted(_API)]


def __getattr__(name):
    if name in _API:
        return getattr(importlib.import_module(_API[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
