"""Animated GIF of an ensemble forecast: context frames, then forecast frames.

Each frame shows, left to right and top to bottom: the observation (context frames, then the truth when it is
known), the ensemble mean, the ensemble maximum, the probability of exceedance of one threshold (74 when it is
among the thresholds, labelled in digital and kg m-2 units) and every member — as full panels when there are at
most `max_members` of them, otherwise all of them as a strip of half-resolution thumbnails below; a title with
the model's name, the issue time (the last context frame), the lead time (T−60 … T+0 min over the context,
T+10 … over the forecast) and the valid time, where known; latitude/longitude lines when the grid is known; and
the two colour bars (VIL in digital and kg m-2 units, probability). During the context frames the forecast
panels are empty.

Written with Pillow — imageio's own GIF backend — from paletted frames: the SEVIR colours stay exact (imageio's
array interface would re-quantize them).
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from prediff.io.atomic import atomic_path

from prediff.exceedance import exceedance_probability

from .canvas import (LABEL_H, LEGEND_H, draw_graticule_labels, draw_legend, draw_probability_legend, draw_text,
                     grid_layout, legend_width, new_image, panel_size, paste_field, paste_probability,
                     paste_thumbnail, probability_label, shown_threshold, thumbnail_size)
from .captions import issue_line, valid_time
from .graticule import graticule_of

TITLE_H, MARGIN, COLUMNS = 42, 6, 4
DEFAULT_MAX_MEMBERS = 8


def _panels(context, members, truth, max_members, threshold):
    """(label, per-frame field or None, is a probability) for every panel; frames = context then forecast."""
    t_in, t_out = len(context), members.shape[1]
    observed = list(context) + (list(truth) if truth is not None else [None] * t_out)
    blank = [None] * t_in
    mean, top = members.mean(axis=0), members.max(axis=0)
    prob = exceedance_probability(np.clip(members * 255.0, 0, 255), [threshold])[0]
    panels = [("observed", observed, False), ("ensemble mean", blank + list(mean), False),
              ("ensemble max", blank + list(top), False), (probability_label(threshold), blank + list(prob), True)]
    if len(members) <= max_members:
        for m in range(len(members)):
            panels.append((f"member {m + 1}", blank + list(members[m]), False))
    return panels


def strip_layout(n: int, shape, width: int):
    """Columns, rows and the (w, h) of one thumbnail for a strip of n member thumbnails within `width` pixels."""
    tw, th = thumbnail_size(shape)
    columns = max(1, min(n, (width - MARGIN) // (tw + MARGIN)))
    return columns, -(-n // columns), (tw, th)


def render_frames(context: np.ndarray, members: np.ndarray, lead_minutes: Sequence[int], truth=None,
                  max_members: int = DEFAULT_MAX_MEMBERS, reference_time: Optional[dt.datetime] = None,
                  step_minutes: int = 10, thresholds: Sequence[float] = (74.0,), model_name: Optional[str] = None,
                  grid=None):
    """Paletted Pillow frames. context (T_in, H, W), members (M, T_out, H, W), truth (T_out, H, W) — all 0–1;
    `thresholds` (digital VIL): the exceedance panel shows `shown_threshold(thresholds)`; `grid`: the input's
    grid (latitude/longitude lines), or None."""
    threshold = shown_threshold(thresholds)
    shape = context.shape[1:]
    panels = _panels(context, members, truth, max_members, threshold)
    strip = len(members) > max_members
    pw, ph = panel_size(shape)
    cols = min(COLUMNS, len(panels))
    rows = -(-len(panels) // cols)
    width = max(cols * (pw + MARGIN) + MARGIN, legend_width() + 2 * MARGIN)
    strip_cols, strip_rows, (tw, th) = strip_layout(len(members), shape, width)
    strip_h = (16 + strip_rows * (th + MARGIN)) if strip else 0
    height = TITLE_H + rows * (ph + MARGIN) + MARGIN + strip_h + 2 * (LEGEND_H + MARGIN)
    lines = graticule_of(grid, shape)
    t_in = len(context)
    leads = [-(t_in - 1 - k) * step_minutes for k in range(t_in)] + list(lead_minutes)
    heading = issue_line(model_name, reference_time)
    frames = []
    for f, lead in enumerate(leads):
        img = new_image(width, height)
        title = f"T{lead:+d} min" + (" (observed)" if f < t_in else " (forecast)")
        valid = valid_time(reference_time, lead)
        if valid is not None:
            title += f"   valid {valid:%Y-%m-%d %H:%M} UTC"
        draw_text(img, (MARGIN, 4), heading or "forecast", size=15)
        draw_text(img, (MARGIN, 22), title, size=15)
        for i, ((label, series, is_prob), (c, r)) in enumerate(zip(panels, grid_layout(len(panels), cols))):
            draw = paste_probability if is_prob else paste_field
            x, y = MARGIN + c * (pw + MARGIN), TITLE_H + r * (ph + MARGIN)
            draw(img, series[f], x, y, label, None if lines is None else lines.lines, shape=shape)
            if i == 0 and lines is not None:
                draw_graticule_labels(img, lines.labels, x, y + LABEL_H, shape)
        y0 = TITLE_H + rows * (ph + MARGIN) + MARGIN
        if strip:
            draw_text(img, (MARGIN, y0), f"members 1-{len(members)} (every second pixel)"
                      + ("" if f >= t_in else ": forecast frames only"), size=13)
            for m in range(len(members)):
                c, r = m % strip_cols, m // strip_cols
                paste_thumbnail(img, members[m, f - t_in] if f >= t_in else None,
                                MARGIN + c * (tw + MARGIN), y0 + 16 + r * (th + MARGIN), str(m + 1))
        legend_y = y0 + strip_h
        draw_legend(img, MARGIN, legend_y)
        draw_probability_legend(img, MARGIN, legend_y + LEGEND_H + MARGIN, threshold)
        frames.append(img)
    return frames


def write_forecast_gif(path, context: np.ndarray, members: np.ndarray, *, lead_minutes: Sequence[int],
                       max_members: int = DEFAULT_MAX_MEMBERS, truth: Optional[np.ndarray] = None,
                       reference_time: Optional[dt.datetime] = None, frame_ms: int = 500,
                       thresholds: Sequence[float] = (74.0,), model_name: Optional[str] = None,
                       grid=None) -> Path:
    """Write the animation to `path` atomically; the last frame is held three times as long."""
    frames = render_frames(np.asarray(context), np.asarray(members), lead_minutes, truth, max_members,
                           reference_time, thresholds=thresholds, model_name=model_name, grid=grid)
    durations = [frame_ms] * (len(frames) - 1) + [frame_ms * 3]
    with atomic_path(path) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0,
                       optimize=False, disposal=1)
    return Path(path)
