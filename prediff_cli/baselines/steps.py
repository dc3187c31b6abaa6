"""STEPS baseline: the Short-Term Ensemble Prediction System of pysteps, an ensemble of the forecast's size.

STEPS (Bowler, Pierce and Seed 2006; Seed, Pierce and Norman 2013) decomposes the last observed fields into a
cascade of spatial scales (FFT with Gaussian band-pass filters), evolves each level with an AR(2) model whose
coefficients come from the last three frames (small scales lose predictability first), advects everything along
the motion field (semi-Lagrangian), and perturbs every member with stochastic noise of the observed spatial
structure and with perturbed motion vectors. It is the probabilistic reference that nowcasting ensembles are
measured against; here it is pysteps' `nowcasts.steps.forecast` with these choices:

* **Motion**: prediff's own pyramidal Lucas–Kanade estimate over all context frames (`optical_flow.estimate_motion`,
  the motion of the `optical_flow` baseline; pysteps' Lucas–Kanade would need OpenCV), handed to pysteps as its
  (x, y) components in pixels per frame interval.
* **What STEPS sees**: pysteps models rain rate after a logarithmic (dB) transform. VIL is treated the same way:
  digital VIL (0–255) is decoded to kg m-2 (`prediff.vil_scale`), transformed with pysteps' `dB_transform` with the
  no-echo threshold `vil_threshold` = 16 digital (0.15 kg m-2; the lowest CSI threshold and the first echo bin of
  the SEVIR colour map) — pixels below it become `threshold_dB − 5` — and STEPS runs on those dB values with
  `precip_thr` = the threshold in dB. The members are transformed back (below the threshold: 0 kg m-2) and encoded
  to digital VIL again. Digital VIL above 18 is itself logarithmic in kg m-2 (X = 38.9 ln v + 83.9), so the dB
  field is a linear rescaling of the digital one there.
* **Settings** (`settings()`, recorded in scores.json): 6 cascade levels, FFT decomposition, Gaussian band-pass
  filter, nonparametric noise, AR order 2, "bps" motion perturbation, CDF probability matching, incremental
  masking, 3 km per pixel (SEVIR-LR's 128 × 128 over 384 km) and 10-minute steps.
* **Seeds**: each case gets its own seed (the evaluation passes seed + case index, as for the model), so a run is
  reproducible and a case's members do not depend on the batch it came in.
* Pixels whose trajectories leave the frame have no upstream data; pysteps marks them NaN and they are set to 0
  (no rain enters from outside, as in the `optical_flow` baseline).
* A context STEPS cannot model — a field constant in time or in space, whose autoregressive fit or noise
  spectrum is singular; radar data do not look like this — makes pysteps fail. Such a case gets the `optical_flow`
  extrapolation as every member, and `fallbacks` counts it (the evaluation reports the count in its notes).

pysteps prints progress on stdout and warnings on stderr; both are dropped (prediff's stdout is reserved for
--json, stderr for its progress and messages).
"""
from __future__ import annotations

import contextlib
import io
import warnings
from typing import Optional, Sequence

import numpy as np

from prediff.vil_scale import digital_to_kg_m2, kg_m2_to_digital
from prediff.errors import ConfigError, InputError

from .inputs import check_context, check_leads
from .optical_flow import OpticalFlow

AR_ORDER = 2
DEFAULTS = {"n_cascade_levels": 6, "decomp_method": "fft", "bandpass_filter_method": "gaussian",
            "noise_method": "nonparametric", "ar_order": AR_ORDER, "vel_pert_method": "bps",
            "probmatching_method": "cdf", "mask_method": "incremental", "kmperpixel": 3.0, "timestep": 10.0}
NO_RAIN_DB_BELOW_THRESHOLD = 5.0  # pysteps' zero value: 5 dB below the threshold


def _pysteps():
    """pysteps' STEPS and dB transform, imported quietly (pysteps prints its configuration file on import)."""
    with contextlib.redirect_stdout(io.StringIO()):
        from pysteps.nowcasts import steps
        from pysteps.utils.transformation import dB_transform
    return steps.forecast, dB_transform


def vil_to_db(digital: np.ndarray, threshold_digital: float):
    """Digital VIL (any shape) → (dB of kg m-2 with pysteps' `dB_transform`, threshold in dB, zero value in dB)."""
    _, db_transform = _pysteps()
    threshold = float(digital_to_kg_m2(np.float64(threshold_digital)))
    threshold_db = 10.0 * np.log10(threshold)
    zero = threshold_db - NO_RAIN_DB_BELOW_THRESHOLD
    values, _ = db_transform(digital_to_kg_m2(digital).astype(np.float64), threshold=threshold, zerovalue=zero)
    return values, threshold_db, zero


def db_to_vil(values: np.ndarray, threshold_db: float) -> np.ndarray:
    """dB of kg m-2 (any shape) → digital VIL float32; below the threshold or non-finite → 0."""
    _, db_transform = _pysteps()
    kg, _ = db_transform(np.asarray(values, np.float64), {"transform": "dB"}, threshold=threshold_db,
                         zerovalue=0.0, inverse=True)
    kg = np.where(np.isfinite(kg), kg, 0.0)
    return kg_m2_to_digital(kg)


class Steps:
    """pysteps' STEPS nowcast on the context (module docstring).

    extrapolate(context (T_in, H, W), n_leads, members, seed) → (members, n_leads, H, W);
    forecast(context (B, T_in, H, W), n_leads, members=M, seeds=[B ints]) → (B, M, n_leads, H, W);
    0–1 VIL in and out (float32). T_in ≥ 3 (the AR(2) model needs three frames).
    """

    name = "steps"
    ensemble = True

    def __init__(self, vil_threshold: float = 16.0, **options) -> None:
        unknown = sorted(set(options) - set(DEFAULTS))
        if unknown:
            raise ConfigError(f"unknown STEPS option(s) {', '.join(unknown)}; valid: {', '.join(DEFAULTS)}")
        if not 5.0 < float(vil_threshold) < 255.0:
            raise ConfigError(f"STEPS vil_threshold must be a digital VIL above 5 (no echo) and below 255, got "
                              f"{vil_threshold!r}")
        self.vil_threshold = float(vil_threshold)
        self.options = {**DEFAULTS, **options}
        self.motion_estimator = OpticalFlow()
        self.fallbacks = 0  # cases pysteps could not forecast (module docstring)

    def state(self) -> dict:
        """What a resumed evaluation needs to carry on: the number of fallback cases so far."""
        return {"fallbacks": self.fallbacks}

    def load_state(self, state: dict) -> None:
        count = state.get("fallbacks", 0)
        self.fallbacks = count if isinstance(count, int) and count >= 0 else 0

    def settings(self) -> dict:
        threshold_kg = float(digital_to_kg_m2(np.float64(self.vil_threshold)))
        return {"method": "STEPS (pysteps.nowcasts.steps)", "pysteps_version": pysteps_version(),
                "motion_method": "lucas_kanade (prediff, as optical_flow)",
                "transform": "dB of VIL in kg m-2", "vil_threshold_digital": self.vil_threshold,
                "vil_threshold_kg_m2": round(threshold_kg, 4), **self.options,
                "seed": "seed + case index"}

    def motion(self, context: np.ndarray) -> np.ndarray:
        """pysteps' velocity (2, H, W) = (x, y) components in pixels per frame interval."""
        dy, dx = self.motion_estimator.motion(context)
        return np.stack([dx, dy]).astype(np.float64)

    def inputs(self, context) -> tuple:
        """(the last AR order + 1 frames in dB (3, H, W), velocity (2, H, W), threshold in dB): what STEPS gets."""
        context = check_context(context, batched=False, min_frames=AR_ORDER + 1)
        db, threshold_db, _ = vil_to_db(context[-(self.options["ar_order"] + 1):] * 255.0, self.vil_threshold)
        return db, self.motion(context), threshold_db

    def extrapolate(self, context, n_leads: int, members: int = 1, seed: int = 0) -> np.ndarray:
        n_leads = check_leads(n_leads)
        if isinstance(members, bool) or int(members) != members or members < 1:
            raise InputError(f"STEPS members must be a positive integer, got {members!r}")
        db, velocity, threshold_db = self.inputs(context)
        forecast, _ = _pysteps()
        try:
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = forecast(db, velocity, n_leads, n_ens_members=int(members), precip_thr=threshold_db,
                               seed=int(seed), num_workers=1, **self.options)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError):
            self.fallbacks += 1
            extrapolated = self.motion_estimator.extrapolate(np.asarray(context, np.float32), n_leads)
            return np.repeat(extrapolated[None], int(members), axis=0)
        return (db_to_vil(out, threshold_db) / np.float32(255.0)).astype(np.float32)

    def forecast(self, context, n_leads: int, members: int = 1, seeds: Optional[Sequence[int]] = None) -> np.ndarray:
        context = check_context(context, batched=True, min_frames=AR_ORDER + 1)
        seeds = list(range(len(context))) if seeds is None else [int(s) for s in seeds]
        if len(seeds) != len(context):
            raise InputError(f"{len(seeds)} STEPS seeds given for {len(context)} cases")
        return np.stack([self.extrapolate(case, n_leads, members, seed) for case, seed in zip(context, seeds)])


def pysteps_version() -> Optional[str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pysteps")
    except PackageNotFoundError:
        return None
