"""PNG summary grid of a forecast: rows = observed context, truth (if known), ensemble mean, maximum and members;
columns = frames (context times for the first row, lead times for the others)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from prediff.io.atomic import atomic_path

from .canvas import draw_legend, draw_text, legend_width, new_image, panel_size, paste_field

MARGIN, ROW_LABEL_W = 6, 110


def write_summary_png(path, context: np.ndarray, members: np.ndarray, *, lead_minutes: Sequence[int],
                      truth: Optional[np.ndarray] = None, max_members: int = 4, step_minutes: int = 10) -> Path:
    context, members = np.asarray(context), np.asarray(members)
    t_in, t_out = len(context), members.shape[1]
    rows = [("context", list(context), [-(t_in - 1 - k) * step_minutes for k in range(t_in)])]
    if truth is not None:
        rows.append(("truth", list(truth), list(lead_minutes)))
    rows.append(("ensemble mean", list(members.mean(axis=0)), list(lead_minutes)))
    rows.append(("ensemble max", list(members.max(axis=0)), list(lead_minutes)))
    for m in range(min(len(members), max_members)):
        rows.append((f"member {m + 1}", list(members[m]), list(lead_minutes)))
    pw, ph = panel_size(context.shape[1:])
    cols = max(t_in, t_out)
    width = max(ROW_LABEL_W + cols * (pw + MARGIN) + MARGIN, legend_width() + 2 * MARGIN)
    height = len(rows) * (ph + MARGIN) + MARGIN + 26
    img = new_image(width, height)
    for r, (label, fields, leads) in enumerate(rows):
        y = MARGIN + r * (ph + MARGIN)
        draw_text(img, (MARGIN, y + ph // 2), label, size=14)
        for c, (field, lead) in enumerate(zip(fields, leads)):
            paste_field(img, field, ROW_LABEL_W + c * (pw + MARGIN), y, f"T{lead:+d} min")
    draw_legend(img, MARGIN, height - 22)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return Path(path)
