"""Mean squared and mean absolute error on the 0–1 scale.

As torchmetrics' `MeanSquaredError` / `MeanAbsoluteError` in the official evaluation (`train_sevirlr_prediff.py`): one
global mean over every element of every batch (sums and counts are accumulated, so batch sizes do not weight the
result), not the mean of per-batch means. For an ensemble every member counts as a forecast, i.e. the result is
the mean over members of each member's error; the error of the ensemble mean is a separate score (see `scorer`).
"""
from __future__ import annotations

import numpy as np

from .inputs import check_pair
from .streaming import StreamingScore, ratio, to_json

REDUCE_AXES = (0, 1, 3, 4)  # all but the lead-time axis of (B, M, T, H, W)


def mse(forecast, truth) -> float:
    """Mean squared error of forecast (B, M, T, H, W) or (B, T, H, W) against truth (B, T, H, W)."""
    forecast, truth = check_pair(forecast, truth)
    return float(np.mean(np.square(forecast - truth[:, None], dtype=np.float64)))


def mae(forecast, truth) -> float:
    """Mean absolute error, same layouts as `mse`."""
    forecast, truth = check_pair(forecast, truth)
    return float(np.mean(np.abs(forecast - truth[:, None]), dtype=np.float64))


class ContinuousErrors(StreamingScore):
    """Streaming MSE and MAE, overall and per lead time.

    compute() → {"mse": v, "mae": v, "rmse": sqrt(mse), "per_lead_time": {"mse": [T], "mae": [T], "rmse": [T]}}.
    """

    name = "continuous"

    def accumulate(self, forecast, truth) -> None:
        forecast, truth = check_pair(forecast, truth)
        self.accumulate_checked(forecast, truth)

    def accumulate_checked(self, forecast: np.ndarray, truth: np.ndarray) -> None:
        """Accumulate arrays already validated by `check_pair` (float32 (B, M, T, H, W) and (B, T, H, W))."""
        b, m, t, h, w = forecast.shape
        self._allocate({"sum_squared": (t,), "sum_absolute": (t,)})
        self._allocate({"count": (t,)}, np.int64)
        diff = forecast - truth[:, None]
        self._state["sum_absolute"] += np.abs(diff).sum(axis=REDUCE_AXES, dtype=np.float64)
        np.square(diff, out=diff)
        self._state["sum_squared"] += diff.sum(axis=REDUCE_AXES, dtype=np.float64)
        self._state["count"] += b * m * h * w

    def compute(self) -> dict:
        self._require_data()
        s = self._state
        total = s["count"].sum()
        mse_all = s["sum_squared"].sum() / total
        per_mse = ratio(s["sum_squared"], s["count"])
        return {
            "mse": to_json(mse_all),
            "mae": to_json(s["sum_absolute"].sum() / total),
            "rmse": to_json(np.sqrt(mse_all)),
            "per_lead_time": {"mse": to_json(per_mse), "mae": to_json(ratio(s["sum_absolute"], s["count"])),
                              "rmse": to_json(np.sqrt(per_mse))},
        }
