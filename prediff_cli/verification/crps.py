"""Continuous ranked probability score (CRPS) of an ensemble, on the 0–1 scale, optionally after max pooling.

Per pixel, with members x_1..x_M and observation y (Gneiting & Raftery 2007):

    CRPS = (1/M) Σ_m |x_m − y|  −  ½ · D,    Σ_pairs = Σ_{m<m'} |x_m − x_m'|

* `crps` (the fair / unbiased estimator, reported as the main score): D = mean over the M(M−1) ordered pairs of
  distinct members, i.e. D = 2·Σ_pairs / (M(M−1)), so CRPS = E|X−y| − Σ_pairs / (M(M−1)). It is the unbiased
  estimate of the CRPS of the distribution the members are drawn from (an ensemble is not penalised for being
  small). For M = 1 there are no pairs and the term is 0, so the CRPS of a single member is its MAE.
* `crps_standard`: D = mean over all M² ordered pairs (m = m' included), i.e. CRPS = E|X−y| − Σ_pairs / M²:
  the CRPS of the empirical distribution of the members (the form used by e.g. properscoring);
  also equal to the MAE for M = 1, larger than the fair value by Σ_pairs / (M²(M−1)).

Both are averaged over all pixels, cases and lead times (sums and counts streamed, per lead time kept).
Pooled variants max-pool members and truth with kernel = stride = s before scoring, the same pooling as the
pooled CSI of the PreDiff paper (max rather than average pooling, so that pool4/pool16 CRPS and CSI look at the
same coarse fields).
"""
from __future__ import annotations

import numpy as np

from .ensemble import EnsembleScore
from .inputs import check_pair
from .pooling import check_pool, max_pool
from .streaming import ratio, to_json

PAIR_LOOP_MAX_MEMBERS = 16  # below this an explicit loop over pairs beats sorting the member axis


def pairwise_abs_sum(members: np.ndarray) -> np.ndarray:
    """Σ_{m<m'} |x_m − x_m'| per pixel: members (B, M, ...) → (B, ...), float32.

    Large ensembles use the sorted form Σ_k (2k − M + 1)·x_(k) (k = 0..M−1, ascending), O(M log M) per pixel.
    """
    m = members.shape[1]
    if m <= PAIR_LOOP_MAX_MEMBERS:
        out = np.zeros(members.shape[:1] + members.shape[2:], np.float32)
        for i in range(m):
            for j in range(i + 1, m):
                out += np.abs(members[:, i] - members[:, j])
        return out
    ordered = np.sort(members, axis=1)
    out = np.zeros(members.shape[:1] + members.shape[2:], np.float32)
    for k in range(m):
        out += np.float32(2 * k - m + 1) * ordered[:, k]
    return out


def crps_ensemble(members, truth, *, fair: bool = True) -> np.ndarray:
    """Pixelwise ensemble CRPS: members (B, M, T, H, W), truth (B, T, H, W) → (B, T, H, W) float64.

    fair=True: E|X−y| − Σ_pairs/(M(M−1)) (0 for M = 1); fair=False: E|X−y| − Σ_pairs/M².
    """
    members, truth = check_pair(members, truth)
    m = members.shape[1]
    skill = np.abs(members - truth[:, None]).mean(axis=1, dtype=np.float64)
    norm = m * (m - 1) if fair else m * m
    if norm == 0:
        return skill
    return skill - pairwise_abs_sum(members).astype(np.float64) / norm


class CRPS(EnsembleScore):
    """Streaming ensemble CRPS after s×s max pooling (pool 1 = none), overall and per lead time.

    compute() → {"crps": fair value, "crps_standard": M²-normalised value, "mae": E|X−y| term,
                 "per_lead_time": {"crps": [T], "crps_standard": [T]}}.
    """

    name = "crps"
    pool: int

    def __init__(self, pool: int = 1) -> None:
        super().__init__(pool=check_pool(pool))

    def accumulate_checked(self, forecast: np.ndarray, truth: np.ndarray) -> None:
        """Max-pool validated arrays with this score's pool size, then accumulate them."""
        self.accumulate_pooled(max_pool(forecast, self.pool), max_pool(truth, self.pool))

    def accumulate_pooled(self, forecast: np.ndarray, truth: np.ndarray) -> None:
        """Accumulate validated float32 arrays that are already pooled (the Scorer shares the pooling)."""
        b, m, t = forecast.shape[:3]
        self._allocate({"sum_abs_error": (t,), "sum_pair_abs": (t,)})
        self._allocate({"count": (t,)}, np.int64)
        self._check_members(m)
        axes = (0, 2, 3)  # of (B, T, H, W)
        abs_error = np.abs(forecast - truth[:, None]).sum(axis=1, dtype=np.float32) / np.float32(m)
        self._state["sum_abs_error"] += abs_error.sum(axis=axes, dtype=np.float64)
        if m > 1:
            self._state["sum_pair_abs"] += pairwise_abs_sum(forecast).sum(axis=axes, dtype=np.float64)
        self._state["count"] += b * forecast.shape[3] * forecast.shape[4]

    def compute(self) -> dict:
        self._require_data()
        s = self._state
        m = int(s["members"])
        fair_norm = m * (m - 1) if m > 1 else 1  # M = 1: no pairs, the spread term is 0
        skill, pairs, count = s["sum_abs_error"], s["sum_pair_abs"], s["count"]
        total = count.sum()
        return {
            "crps": to_json((skill.sum() - pairs.sum() / fair_norm) / total),
            "crps_standard": to_json((skill.sum() - pairs.sum() / (m * m)) / total),
            "mae": to_json(skill.sum() / total),
            "per_lead_time": {"crps": to_json(ratio(skill - pairs / fair_norm, count)),
                              "crps_standard": to_json(ratio(skill - pairs / (m * m), count))},
        }
