"""Forecasts of domains larger than the model's window: overlapping windows, forecast one after another, blended.

The networks see `window` × `window` pixels (128 for every preset). A context of (T_in, H, W) with H or W larger
is forecast in windows laid out like this (plain NumPy, no networks: `tile_layout`, `axis_weights`):

* The domain is padded at its bottom and right by reflection to a multiple of the VAE's downscale `step`
  (8 pixels: one latent cell), so that every window starts on a latent cell; the padding is cut off at the end.
* Along each axis the fewest windows are used whose neighbours overlap by at least `overlap` pixels, spread
  evenly over the padded length, their starts rounded to multiples of `step`. The overlaps actually used are
  therefore `overlap` or somewhat more.
* Each window's weight is the product of two 1-D weights that are 1 in its centre and fall smoothly (sin²) to 0
  at each side it shares with a neighbour, across the width of that overlap (at most half the window); a side on
  the domain's edge keeps weight 1. The weights are divided by their sum over the windows, which is separable, so
  each axis is normalised on its own and every pixel's weights add up to 1.

The forecast (`forecast_tiled`): every window is forecast with all members (`Forecaster.run` on its context),
aligned toward its own anticipated intensity, and its pixels are added to the result with its weight. A member is
the same random draw in every window: its noise is drawn from the forecast's seed on the whole domain's latent grid
and each window takes its part (`sampler.LatentCut`), so two windows start from the same noise where they overlap,
and their members there differ only by what each window's surroundings change (measured in docs/large-domains.md:
drawing each window's own noise instead left neighbouring windows' members about three times as far apart in their
overlap). One window is in the networks at a time, in UNet calls of at most `sample.member_batch` members; what
grows with the domain is the result (members × 6 × H × W) and one latent plane of noise (H/8 × W/8 × L).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import numpy as np

from prediff.errors import InputError

from .sampler import LatentCut

@dataclass(frozen=True)
class TileLayout:
    """Windows over a (height, width) domain; pixel positions on the domain padded to (padded_height,
    padded_width). `tops` and `lefts` are the window starts along each axis; windows are every (top, left)."""

    height: int
    width: int
    padded_height: int
    padded_width: int
    window: int
    overlap: int
    step: int
    tops: Tuple[int, ...]
    lefts: Tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.tops) * len(self.lefts)

    @property
    def grid(self) -> Tuple[int, int]:
        """Windows down and across."""
        return len(self.tops), len(self.lefts)

    def windows(self) -> List[Tuple[int, int, int, int]]:
        """(row index, column index, top, left) of each window, row by row."""
        return [(i, j, top, left) for i, top in enumerate(self.tops) for j, left in enumerate(self.lefts)]

    def latent_cut(self, top: int, left: int) -> LatentCut:
        """The window at pixel (top, left) of the padded domain, on the domain's latent grid."""
        s = self.step
        return LatentCut(self.padded_height // s, self.padded_width // s, top // s, left // s)

    def describe(self) -> str:
        rows, cols = self.grid
        return (f"{self.count} windows ({rows} x {cols}) of {self.window} x {self.window} pixels, overlapping by at "
                f"least {self.overlap} pixels")


def window_starts(length: int, window: int, overlap: int, step: int) -> Tuple[int, ...]:
    """Starts of the fewest `window`-pixel windows covering `length` pixels (a multiple of `step`, >= `window`)
    whose neighbours overlap by at least `overlap` pixels, spread evenly, each a multiple of `step`.

    Rounding to multiples of `step` keeps every gap at most `window - overlap` (both are multiples of `step`, and
    rounding to the nearest multiple is monotone), so no overlap falls below `overlap`."""
    if length % step or window % step or overlap % step:
        raise ValueError(f"length {length}, window {window} and overlap {overlap} must be multiples of {step}")
    if length < window or not 0 <= overlap < window:
        raise ValueError(f"need length >= window > overlap >= 0 (got {length}, {window}, {overlap})")
    if length == window:
        return (0,)
    count = 1 + -(-(length - window) // (window - overlap))
    span = (length - window) // step  # in steps
    # round(i * span / (count - 1)) in integers, halves up
    return tuple(step * ((2 * i * span + count - 1) // (2 * (count - 1))) for i in range(count))


def axis_weights(starts, window: int) -> List[np.ndarray]:
    """The blending weight (window,) of each window along one axis, normalised so that at every pixel of the axis
    the weights of the windows covering it add up to 1.

    Before normalising, window k's weight rises as sin² from 0 to 1 across its overlap with window k-1 and falls as
    cos² across its overlap with window k+1 (each ramp at most window/2 wide, evaluated at pixel centres, so no
    pixel of a window has weight 0); a side without a neighbour stays at 1."""
    starts = [int(s) for s in starts]
    length = starts[-1] + window
    raw = []
    for k, start in enumerate(starts):
        w = np.ones(window, np.float64)
        centres = np.arange(window) + 0.5
        if k > 0:
            lead = min(starts[k - 1] + window - start, window // 2)
            ramp = centres[:lead] / lead
            w[:lead] *= np.sin(0.5 * np.pi * ramp) ** 2
        if k + 1 < len(starts):
            trail = min(start + window - starts[k + 1], window // 2)
            ramp = centres[:trail] / trail
            w[window - trail:] *= np.cos(0.5 * np.pi * ramp) ** 2
        raw.append(w)
    total = np.zeros(length, np.float64)
    for start, w in zip(starts, raw):
        total[start:start + window] += w
    return [(w / total[start:start + window]).astype(np.float32) for start, w in zip(starts, raw)]


def tile_layout(height: int, width: int, window: int, overlap: int, step: int,
                what: str = "the frames") -> TileLayout:
    """The windows over a (height, width) domain (each side >= `window`); `overlap` in pixels, a multiple of `step`
    from 0 to `window` / 2. `what` names the frames in the message that refuses a smaller domain."""
    if height < window or width < window:
        raise InputError(f"{what} are {height}x{width} pixels; the model needs at least {window}x{window} (it "
                         f"forecasts larger domains in {window} x {window} windows)")
    if overlap % step or not 0 <= overlap <= window // 2:
        raise InputError(f"tile overlap {overlap} pixels: expected a multiple of {step} from 0 to {window // 2} (the "
                         f"model's latent cells are {step} pixels, its window {window})")
    ph, pw = -(-height // step) * step, -(-width // step) * step
    return TileLayout(height=height, width=width, padded_height=ph, padded_width=pw, window=window, overlap=overlap,
                      step=step, tops=window_starts(ph, window, overlap, step),
                      lefts=window_starts(pw, window, overlap, step))


def model_window(model_config) -> Tuple[int, int]:
    """(window, step): the model's frame size in pixels and the pixels per latent cell (the VAE's downscale)."""
    window = int(model_config.data.img_size)
    return window, window // int(model_config.unet.target_shape[1])


def layout_for(model_config, shape, overlap: int, what: str = "the frames") -> TileLayout:
    """The layout for frames of `shape` (…, H, W) with the model of `model_config`."""
    window, step = model_window(model_config)
    return tile_layout(int(shape[-2]), int(shape[-1]), window, int(overlap), step, what)


def pad_to_layout(frames: Optional[np.ndarray], layout: TileLayout) -> Optional[np.ndarray]:
    """(T, H, W) frames padded at the bottom and right by reflection to the layout's padded size (None stays)."""
    if frames is None:
        return None
    extra = ((0, 0), (0, layout.padded_height - layout.height), (0, layout.padded_width - layout.width))
    return np.pad(frames, extra, mode="reflect") if any(e[1] for e in extra) else frames


@dataclass
class TiledForecast:
    members: np.ndarray  # (M, T_out, H, W) on 0–1 (not clipped), blended
    window_targets: Optional[List[float]]  # each window's anticipated mean intensity on 0–1 (aligned runs)


def forecast_tiled(forecaster, layout: TileLayout, context: np.ndarray, truth: Optional[np.ndarray], seed: int,
                   target: Optional[Callable[[np.ndarray, Optional[np.ndarray]], float]] = None,
                   progress: Optional[Callable[[], None]] = None) -> TiledForecast:
    """Forecast `context` (T_in, H, W) on 0–1 window by window with `forecaster` (a `forecast.Forecaster`) and
    blend the windows.

    Parameters
    ----------
    layout : TileLayout
        From `layout_for` on the context's shape.
    truth : (T_out, H, W) array or None
        Passed, cut to each window, to `target` (the oracle alignment needs it).
    seed : int
        The forecast's seed: member m of every window comes from the same draws (see the module's docstring).
    target : callable, optional
        (window context, window truth) → the window's anticipated mean intensity on 0–1; None without alignment.
    progress : callable, optional
        Called once per solver step of every UNet call, window after window.
    """
    padded, padded_truth = pad_to_layout(context, layout), pad_to_layout(truth, layout)
    wy, wx = axis_weights(layout.tops, layout.window), axis_weights(layout.lefts, layout.window)
    blended, targets = None, [] if target is not None else None
    n = layout.window
    for i, j, top, left in layout.windows():
        piece = np.ascontiguousarray(padded[:, top:top + n, left:left + n])
        y_hat = None
        if target is not None:
            piece_truth = None if padded_truth is None else padded_truth[:, top:top + n, left:left + n]
            targets.append(float(target(piece, piece_truth)))
            y_hat = np.array([targets[-1]], np.float32)
        members = forecaster.run(piece[None], y_hat, [seed], progress, cut=layout.latent_cut(top, left))[0]
        if blended is None:
            blended = np.zeros(members.shape[:2] + (layout.padded_height, layout.padded_width), np.float32)
        blended[..., top:top + n, left:left + n] += members * (wy[i][:, None] * wx[j][None, :])
        del members
    return TiledForecast(members=np.ascontiguousarray(blended[..., :layout.height, :layout.width]),
                         window_targets=targets)


def seam_boundaries(starts, window: int, length: int) -> Tuple[np.ndarray, np.ndarray]:
    """Along one axis of `length` pixels: (window edges, interior boundaries) as boundary indices b (between pixels
    b-1 and b). Window edges are where a window begins or ends inside the domain (where a step would show if the
    blend were not smooth); interior boundaries have both pixels covered by one window only."""
    starts = [int(s) for s in starts]
    edges = sorted({s for s in starts[1:]} | {s + window for s in starts[:-1]})
    cover = np.zeros(length, np.int32)
    for s in starts:
        cover[s:s + window] += 1
    single = cover[:length] == 1
    inside = np.flatnonzero(single[1:] & single[:-1]) + 1
    return np.array([b for b in edges if 0 < b < length], np.int64), inside


def seam_steps(fields: np.ndarray, layout: TileLayout, span: int = 4) -> dict:
    """The steps of a forecast (…, H, W) across its window edges, beside them and inside single windows.

    A line's step is the mean absolute difference between the neighbouring pixels on either side of it, over
    everything but the line's position (members, frames, along the line). Returns per line, over both axes:
    "edges" (E,) — the lines where a window begins or ends inside the domain (see `seam_boundaries`); "beside"
    (E,) — for each edge line, the mean step of the lines within `span` pixels of it, itself left out (a seam shows
    as an edge step well above the steps beside it); "inside" (I,) — the lines inside single windows."""
    fields = np.asarray(fields, np.float32)
    out = {"edges": [], "beside": [], "inside": []}
    for axis, starts, length in ((-1, layout.lefts, layout.width), (-2, layout.tops, layout.height)):
        steps = np.abs(np.diff(fields, axis=axis))  # steps[..., b-1] is the step across boundary b
        per_line = steps.mean(axis=tuple(a for a in range(steps.ndim) if a != steps.ndim + axis))
        edges, inside = seam_boundaries(starts, layout.window, length)
        out["edges"].append(per_line[edges - 1])
        out["beside"].append(np.array([np.mean([per_line[b - 1 + k] for k in range(-span, span + 1)
                                                if k and 0 <= b - 1 + k < len(per_line)]) for b in edges]))
        out["inside"].append(per_line[inside - 1])
    return {k: np.concatenate(v).astype(np.float32) for k, v in out.items()}
