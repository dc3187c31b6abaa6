"""PNG summary grid of a forecast: rows = observed context, truth (if known), ensemble mean, maximum, the
probability of exceedance of one threshold (74 when among the thresholds) and members; columns = frames (context
times for the first row, lead times for the others); below, the VIL and probability colour bars."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from prediff.io.atomic import atomic_path

from prediff.verification.exceedance import exceedance_probability

from .canvas import (LEGEND_H, draw_legend, draw_probability_legend, draw_text, legend_width, new_image, panel_size,
                     paste_field, paste_probability, shown_threshold)

MARGIN, ROW_LABEL_W = 6, 110


def write_summary_png(path, context: np.ndarray, members: np.ndarray, *, lead_minutes: Sequence[int],
                      truth: Optional[np.ndarray] = None, max_members: int = 4, step_minutes: int = 10,
                      thresholds: Sequence[float] = (74.0,)) -> Path:
    context, members = np.asarray(context), np.asarray(members)
    threshold = shown_threshold(thresholds)
    t_in, t_out = len(context), members.shape[1]
    rows = [("context", list(context), [-(t_in - 1 - k) * step_minutes for k in range(t_in)])]
    if truth is not None:
        rows.append(("truth", list(truth), list(lead_minutes)))
    rows.append(("ensemble mean", list(members.mean(axis=0)), list(lead_minutes)))
    rows.append(("ensemble max", list(members.max(axis=0)), list(lead_minutes)))
    prob = exceedance_probability(np.clip(members * 255.0, 0, 255), [threshold])[0]
    rows.append((f"P(VIL>={threshold:g})", list(prob), list(lead_minutes)))
    for m in range(min(len(members), max_members)):
        rows.append((f"member {m + 1}", list(members[m]), list(lead_minutes)))
    pw, ph = panel_size(context.shape[1:])
    cols = max(t_in, t_out)
    width = max(ROW_LABEL_W + cols * (pw + MARGIN) + MARGIN, legend_width() + 2 * MARGIN)
    height = len(rows) * (ph + MARGIN) + MARGIN + 2 * (LEGEND_H + MARGIN)
    img = new_image(width, height)
    for r, (label, fields, leads) in enumerate(rows):
        y = MARGIN + r * (ph + MARGIN)
        draw_text(img, (MARGIN, y + ph // 2), label, size=14)
        draw = paste_probability if label.startswith("P(") else paste_field
        for c, (field, lead) in enumerate(zip(fields, leads)):
            draw(img, field, ROW_LABEL_W + c * (pw + MARGIN), y, f"T{lead:+d} min")
    legend_y = len(rows) * (ph + MARGIN) + MARGIN
    draw_legend(img, MARGIN, legend_y)
    draw_probability_legend(img, MARGIN, legend_y + LEGEND_H + MARGIN, threshold)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return Path(path)
