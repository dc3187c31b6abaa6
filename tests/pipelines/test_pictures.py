"""The forecast pictures: titles, every member or a strip, the probability's units, latitude/longitude lines."""
import datetime as dt

import numpy as np

from prediff.io.grid import Grid
from prediff.visualization.animation import _panels, render_frames
from prediff.visualization.canvas import GRID_LINE, probability_label
from prediff.visualization.captions import frame_label, issue_line
from prediff.visualization.graticule import graticule_of
from prediff.visualization.summary import write_summary_png

SIZE = 32
REFERENCE = dt.datetime(2019, 7, 1, 19, 0)
# a SEVIR-like grid: about 384 km square around 38° N, 98° W
SEVIR_GRID = Grid.from_corners((36.2, -100.2, 39.7, -95.6), height=SIZE, width=SIZE)


def _fields(m, seed=0):
    rng = np.random.default_rng(seed)
    context = rng.uniform(0, 0.6, (7, SIZE, SIZE)).astype(np.float32)
    members = rng.uniform(0, 0.9, (m, 6, SIZE, SIZE)).astype(np.float32)
    return context, members


def test_captions_name_the_model_issue_and_valid_times_and_both_units():
    assert issue_line("demo", REFERENCE) == "model demo | issued 2019-07-01 19:00 UTC"
    assert issue_line(None, None) == ""
    assert frame_label(30, REFERENCE) == "T+30 min 19:30" and frame_label(-10, None) == "T-10 min"
    assert probability_label(74) == "P(VIL >= 74 = 0.78 kg m-2)"


def test_every_member_up_to_eight_then_a_strip():
    context, eight = _fields(8)
    labels = [p[0] for p in _panels(context, eight, None, 8, 74.0)]
    assert labels[4:] == [f"member {m}" for m in range(1, 9)]
    _, nine = _fields(9)
    assert len(_panels(context, nine, None, 8, 74.0)) == 4  # members go to the strip
    panels_only = render_frames(context, eight, [10 * (k + 1) for k in range(6)])
    strip = render_frames(context, nine, [10 * (k + 1) for k in range(6)])
    assert strip[0].size[1] < panels_only[0].size[1]  # 3 rows of panels → 1 row + a strip of thumbnails
    # the last frame's strip shows the members' fields (VIL colours 2..10 of the palette) below the panels
    last = np.asarray(strip[-1])
    below_panels = last[last.shape[0] // 2:]
    assert np.isin(below_panels, np.arange(2, 11)).sum() > 9 * (SIZE // 2) ** 2 // 4


def test_latitude_longitude_lines_when_the_grid_is_known(tmp_path):
    lines = graticule_of(SEVIR_GRID, (SIZE, SIZE))
    assert lines.lines.any() and lines.spacing == 1.0
    texts = [text for _, _, text in lines.labels]
    assert any(t.endswith("N") for t in texts) and any(t.endswith("W") for t in texts)
    assert graticule_of(None, (SIZE, SIZE)) is None
    context, members = _fields(3)
    with_grid = render_frames(context, members, [10 * (k + 1) for k in range(6)], grid=SEVIR_GRID,
                              model_name="demo", reference_time=REFERENCE)
    without = render_frames(context, members, [10 * (k + 1) for k in range(6)])
    assert (np.asarray(with_grid[0]) == GRID_LINE).any() and not (np.asarray(without[0]) == GRID_LINE).any()
    path = write_summary_png(tmp_path / "f.png", context, members, lead_minutes=[10 * (k + 1) for k in range(6)],
                             reference_time=REFERENCE, model_name="demo", grid=SEVIR_GRID)
    from PIL import Image

    with Image.open(path) as img:
        assert (np.asarray(img) == GRID_LINE).any()
