"""Radar frames put on the model's grid, and a forecast put back on the input's grid.

An input on a map grid (`io.grid`) is resampled onto the model's 3 km LAEA grid (`io.model_grid` places it,
`io.regrid` resamples: area-weighted when coarsening, bilinear when refining). Honest about what it does not know:

* a model pixel whose area holds a missing (NaN) input value is refused: one line naming the frame, since the
  model needs complete frames;
* model pixels beyond the input's domain (the model grid is a rectangle of at least 128 × 128 pixels around the
  input's domain, which may be smaller or not rectangular in the model's projection) are given no echo (0),
  as a radar sees none beyond its range; `Placement.coverage` says which share of the model grid the input
  covers, and the forecast's report says it.

An input without a map grid is taken as it is (its pixels as the model's). `--output-grid input` resamples the
forecast back onto the input's grid by the same method (`Placement.to_input`), and writes the context frames as
they were read. Fields are north-up throughout; a forecast written on the input's own pixels (`--output-grid
input`, or an input without a map grid) has its rows and columns turned back to run as the input's did
(`written_orientation`); on the model's grid they stay north-up.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from prediff.errors import InputError
from prediff.io.model_grid import MODEL_SIDE, model_grid_for
from prediff.io.orientation import Orientation
from prediff.io.regrid import resample

#: where a forecast is written: on the model's grid, or resampled back onto the input's
OUTPUT_GRIDS = ("model", "input")


@dataclass
class Placement:
    """How an input on its own grid was put on the model's grid: both grids, the frames as read (on 0–1, (T, H, W)
    on `input_grid`) and the share of the model grid's area that the input covers (0..1)."""

    input_grid: object
    model_grid: object
    input_context: np.ndarray
    input_truth: Optional[np.ndarray]
    coverage: float

    def to_input(self, fields: np.ndarray) -> np.ndarray:
        """Fields (..., H_model, W_model) on the model grid → (..., H_input, W_input) on the input grid."""
        values, _ = resample(fields, self.model_grid, self.input_grid)
        return values


def place_on_model_grid(context: np.ndarray, truth: Optional[np.ndarray], grid, min_side: int = MODEL_SIDE):
    """(context, truth, grid, placement) on the model grid for frames on `grid` (context (T_in, H, W), truth
    (T_out, H, W) or None, on 0–1); placement is None when the frames already are on a model grid of at least
    `min_side` pixels a side, or have no map grid. Raises InputError for frames with missing values."""
    if grid is None:
        return context, truth, None, None
    model = model_grid_for(grid, min_side)
    if model is grid:
        return context, truth, grid, None
    frames = context if truth is None else np.concatenate([context, truth])
    values, coverage = resample(frames, grid, model)
    outside = coverage == 0
    for k, frame in enumerate(values):
        missing = int(np.count_nonzero(np.isnan(frame) & ~outside))
        if missing:
            which = f"context frame {k + 1} of {len(context)}" if k < len(context) else \
                f"truth frame {k - len(context) + 1} of {len(values) - len(context)}"
            raise InputError(f"{which} has missing values under {missing} pixels of the model's grid inside the "
                             "input's domain; the model needs complete frames (fill or crop the input)")
    values[:, outside] = 0.0  # beyond the input's domain: no echo
    placement = Placement(input_grid=grid, model_grid=model, input_context=context, input_truth=truth,
                          coverage=float(coverage.mean()))
    on_model = np.ascontiguousarray(values[:len(context)])
    truth_on_model = None if truth is None else np.ascontiguousarray(values[len(context):])
    return on_model, truth_on_model, model, placement


def output_fields(members: np.ndarray, context: np.ndarray, truth: Optional[np.ndarray], grid,
                  placement: Optional[Placement], output_grid: str = "model") -> Tuple:
    """(members, context, truth, grid) to write: on the model's grid as forecast, or (`output_grid` "input")
    the members resampled onto the input's grid with the frames as read. `members` (M, T, H, W) on 0–1."""
    if output_grid not in OUTPUT_GRIDS:
        raise InputError(f"unknown output grid {output_grid!r}; valid output grids: {', '.join(OUTPUT_GRIDS)}")
    if output_grid == "model" or placement is None:  # no placement: the input's grid is the model's
        return members, context, truth, grid
    return (placement.to_input(members), placement.input_context, placement.input_truth, placement.input_grid)


def written_orientation(orientation: Orientation, grid, output_grid: str = "model") -> Orientation:
    """How the forecast's rows and columns run in the file: as the input's (`orientation`) when it is written on
    the input's own pixels (`output_grid` "input", or an input without a map grid, `grid` None), else north-up
    (the model's grid)."""
    return orientation if output_grid == "input" or grid is None else Orientation()
