"""Animated GIF of an ensemble forecast: context frames, then forecast frames.

Each frame shows, left to right and top to bottom: the observation (context frames, then the truth when it is
known), the ensemble mean, the ensemble maximum, the probability of exceedance of one threshold (74 when it is
among the thresholds), and up to `max_members` members; a title line with the lead time (T−60 … T+0 min over the
context, T+10 … over the forecast) and the valid time when known; and the two colour bars (VIL in digital and
kg m-2 units, probability). During the context frames the forecast panels are empty.

Written with Pillow — imageio's own GIF backend — from paletted frames: the SEVIR colours stay exact (imageio's
array interface would re-quantize them).
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from prediff.io.atomic import atomic_path

from prediff.verification.exceedance import exceedance_probability

from .canvas import (LEGEND_H, draw_legend, draw_probability_legend, draw_text, grid_layout, legend_width,
                     new_image, panel_size, paste_field, paste_probability, shown_threshold)

TITLE_H, MARGIN, COLUMNS = 24, 6, 4


def _panels(context, members, truth, max_members, threshold):
    """(label, per-frame field or None, is a probability) for every panel; frames = context then forecast."""
    t_in, t_out = len(context), members.shape[1]
    observed = list(context) + (list(truth) if truth is not None else [None] * t_out)
    blank = [None] * t_in
    mean, top = members.mean(axis=0), members.max(axis=0)
    prob = exceedance_probability(np.clip(members * 255.0, 0, 255), [threshold])[0]
    panels = [("observed", observed, False), ("ensemble mean", blank + list(mean), False),
              ("ensemble max", blank + list(top), False), (f"P(VIL >= {threshold:g})", blank + list(prob), True)]
    for m in range(min(len(members), max_members)):
        panels.append((f"member {m + 1}", blank + list(members[m]), False))
    return panels


def render_frames(context: np.ndarray, members: np.ndarray, lead_minutes: Sequence[int], truth=None,
                  max_members: int = 4, reference_time: Optional[dt.datetime] = None, step_minutes: int = 10,
                  thresholds: Sequence[float] = (74.0,)):
    """Paletted Pillow frames. context (T_in, H, W), members (M, T_out, H, W), truth (T_out, H, W) — all 0–1;
    `thresholds` (digital VIL): the exceedance panel shows `shown_threshold(thresholds)`."""
    threshold = shown_threshold(thresholds)
    panels = _panels(context, members, truth, max_members, threshold)
    pw, ph = panel_size(context.shape[1:])
    cols = min(COLUMNS, len(panels))
    rows = -(-len(panels) // cols)
    width = max(cols * (pw + MARGIN) + MARGIN, legend_width() + 2 * MARGIN)
    height = TITLE_H + rows * (ph + MARGIN) + MARGIN + 2 * (LEGEND_H + MARGIN)
    t_in = len(context)
    leads = [-(t_in - 1 - k) * step_minutes for k in range(t_in)] + list(lead_minutes)
    frames = []
    for f, lead in enumerate(leads):
        img = new_image(width, height)
        title = f"T{lead:+d} min" + (" (observed)" if f < t_in else " (forecast)")
        if reference_time is not None:
            title += f"   valid {(reference_time + dt.timedelta(minutes=lead)):%Y-%m-%d %H:%M} UTC"
        draw_text(img, (MARGIN, 4), title, size=15)
        for (label, series, is_prob), (c, r) in zip(panels, grid_layout(len(panels), cols)):
            draw = paste_probability if is_prob else paste_field
            draw(img, series[f], MARGIN + c * (pw + MARGIN), TITLE_H + r * (ph + MARGIN), label, context.shape[1:])
        legend_y = TITLE_H + rows * (ph + MARGIN) + MARGIN
        draw_legend(img, MARGIN, legend_y)
        draw_probability_legend(img, MARGIN, legend_y + LEGEND_H + MARGIN, threshold)
        frames.append(img)
    return frames


def write_forecast_gif(path, context: np.ndarray, members: np.ndarray, *, lead_minutes: Sequence[int],
                       max_members: int = 4, truth: Optional[np.ndarray] = None,
                       reference_time: Optional[dt.datetime] = None, frame_ms: int = 500,
                       thresholds: Sequence[float] = (74.0,)) -> Path:
    """Write the animation to `path` atomically; the last frame is held three times as long."""
    frames = render_frames(np.asarray(context), np.asarray(members), lead_minutes, truth, max_members,
                           reference_time, thresholds=thresholds)
    durations = [frame_ms] * (len(frames) - 1) + [frame_ms * 3]
    with atomic_path(path) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0,
                       optimize=False, disposal=1)
    return Path(path)
