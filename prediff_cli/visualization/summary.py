"""PNG summary grid of a forecast: a title (model, issue time); rows = observed context, truth (if known), ensemble
mean, maximum, the probability of exceedance of one threshold (74 when among the thresholds, labelled in digital
and kg m-2) and the members — one row each when there are at most `max_members`, otherwise a strip of
half-resolution thumbnails of all of them at the last lead time; columns = frames (context times for the first
row, lead times with their valid times for the others); latitude/longitude lines when the grid is known; below,
the VIL and probability colour bars."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from prediff.io.atomic import atomic_path

from prediff.exceedance import exceedance_probability

from .animation import DEFAULT_MAX_MEMBERS, strip_layout
from .canvas import (LABEL_H, LEGEND_H, draw_graticule_labels, draw_legend, draw_probability_legend, draw_text,
                     legend_width, new_image, panel_size, paste_field, paste_probability, paste_thumbnail,
                     probability_label, shown_threshold)
from .captions import frame_label, issue_line
from .graticule import graticule_of

MARGIN, ROW_LABEL_W, TITLE_H = 6, 110, 26


def write_summary_png(path, context: np.ndarray, members: np.ndarray, *, lead_minutes: Sequence[int],
                      truth: Optional[np.ndarray] = None, max_members: int = DEFAULT_MAX_MEMBERS,
                      step_minutes: int = 10, thresholds: Sequence[float] = (74.0,),
                      reference_time: Optional[dt.datetime] = None, model_name: Optional[str] = None,
                      grid=None) -> Path:
    """Write the summary to `path` atomically. context (T_in, H, W), members (M, T_out, H, W), truth (T_out, H, W)
    on 0–1; reference_time: UTC of the last context frame (the issue time); grid: the input's grid or None."""
    context, members = np.asarray(context), np.asarray(members)
    threshold = shown_threshold(thresholds)
    shape = context.shape[1:]
    t_in, t_out = len(context), members.shape[1]
    leads = list(lead_minutes)
    rows = [("context", list(context), [-(t_in - 1 - k) * step_minutes for k in range(t_in)])]
    if truth is not None:
        rows.append(("truth", list(truth), leads))
    rows.append(("ensemble mean", list(members.mean(axis=0)), leads))
    rows.append(("ensemble max", list(members.max(axis=0)), leads))
    prob = exceedance_probability(np.clip(members * 255.0, 0, 255), [threshold])[0]
    rows.append((probability_label(threshold), list(prob), leads))
    strip = len(members) > max_members
    if not strip:
        for m in range(len(members)):
            rows.append((f"member {m + 1}", list(members[m]), leads))
    pw, ph = panel_size(shape)
    cols = max(t_in, t_out)
    width = max(ROW_LABEL_W + cols * (pw + MARGIN) + MARGIN, legend_width() + 2 * MARGIN)
    strip_cols, strip_rows, (tw, th) = strip_layout(len(members), shape, width - ROW_LABEL_W)
    strip_h = (18 + strip_rows * (th + MARGIN)) if strip else 0
    height = TITLE_H + len(rows) * (ph + MARGIN) + MARGIN + strip_h + 2 * (LEGEND_H + MARGIN)
    lines = graticule_of(grid, shape)
    img = new_image(width, height)
    draw_text(img, (MARGIN, 4), issue_line(model_name, reference_time) or "forecast", size=15)
    for r, (label, fields, row_leads) in enumerate(rows):
        y = TITLE_H + r * (ph + MARGIN)
        is_prob = label.startswith("P(")
        if is_prob:  # the full event (digital and kg m-2) does not fit the row label's width on one line
            digital, kg = label[:-1].split(" = ")
            draw_text(img, (MARGIN, y + ph // 2), digital + ")", size=14)
            draw_text(img, (MARGIN, y + ph // 2 + 16), f"= {kg}", size=11)
        else:
            draw_text(img, (MARGIN, y + ph // 2), label, size=14)
        draw = paste_probability if is_prob else paste_field
        for c, (field, lead) in enumerate(zip(fields, row_leads)):
            x = ROW_LABEL_W + c * (pw + MARGIN)
            draw(img, field, x, y, frame_label(lead, reference_time), None if lines is None else lines.lines,
                 shape=shape)
            if r == 0 and c == 0 and lines is not None:
                draw_graticule_labels(img, lines.labels, x, y + LABEL_H, shape)
    y0 = TITLE_H + len(rows) * (ph + MARGIN) + MARGIN
    if strip:
        draw_text(img, (MARGIN, y0), f"members 1-{len(members)} at {frame_label(leads[-1], reference_time)} "
                  "(every second pixel)", size=13)
        for m in range(len(members)):
            c, r = m % strip_cols, m // strip_cols
            paste_thumbnail(img, members[m, -1], ROW_LABEL_W + c * (tw + MARGIN), y0 + 18 + r * (th + MARGIN),
                            str(m + 1))
    legend_y = y0 + strip_h
    draw_legend(img, MARGIN, legend_y)
    draw_probability_legend(img, MARGIN, legend_y + LEGEND_H + MARGIN, threshold)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return Path(path)
