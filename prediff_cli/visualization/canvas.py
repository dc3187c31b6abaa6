"""Paletted drawing for the GIF and PNG outputs: SEVIR colours plus interface and probability colours, no
dithering, on a light background.

Images are Pillow "P" images whose palette is fixed: indices 0–10 are the VIL colormap (see `colormap`), then the
interface colours, then the 10 probability colours, then the colour of the latitude/longitude lines. Fields are
written as palette indices directly, text is drawn without anti-aliasing, so every pixel of the output is exactly
one of these colours.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from prediff.vil_scale import digital_to_kg_m2

from .colormap import (LEVELS, PROBABILITY_COLORS, PROBABILITY_LEVELS, level_labels_kg_m2, palette,
                       probability_to_bin, vil_to_index)

BACKGROUND, TEXT, FRAME, EMPTY = 11, 12, 13, 14
UI_COLORS = {BACKGROUND: (255, 255, 255), TEXT: (20, 20, 20), FRAME: (140, 140, 140), EMPTY: (248, 248, 248)}
PROBABILITY_BASE = 15  # palette indices 15..24: probability bins
GRID_LINE, GRID_LINE_COLOR = 25, (90, 90, 90)
THUMBNAIL_STRIDE = 2  # member thumbnails of a strip: every second pixel, drawn without upscaling
SCALE = 2  # nearest-neighbour upscaling of the 128-px frames for readability
# larger domains: drawn at one screen pixel per pixel up to this side, beyond it shrunk by an integer factor
# keeping each block's largest value (storm cores stay visible), so pictures of any domain stay a few MB
LARGEST_PANEL = 768
LABEL_H = 18
BAR_CELL_W, BAR_H, LEGEND_LABEL_W = 56, 16, 150
LEGEND_H = 2 * 14 + BAR_H + 8  # title row, bar, second label row


def full_palette() -> np.ndarray:
    return np.concatenate([palette(), np.array([UI_COLORS[i] for i in sorted(UI_COLORS)], np.uint8),
                           np.array(PROBABILITY_COLORS, np.uint8), np.array([GRID_LINE_COLOR], np.uint8)])


def font(size: int = 13):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def new_image(width: int, height: int) -> Image.Image:
    img = Image.new("P", (width, height), BACKGROUND)
    flat = full_palette().reshape(-1).tolist()
    img.putpalette(flat + [0] * (768 - len(flat)))
    return img


def draw_text(img: Image.Image, xy, text: str, size: int = 13, fill: int = TEXT) -> None:
    draw = ImageDraw.Draw(img)
    draw.fontmode = "1"
    draw.text(xy, text, fill=fill, font=font(size))


def display_factor(shape) -> tuple:
    """(up, down): a field of `shape` (H, W) is drawn enlarged `up` times, or shrunk `down` times."""
    side = max(int(shape[0]), int(shape[1]))
    if side <= 256:
        return SCALE, 1
    return 1, -(-side // LARGEST_PANEL)


def _displayed(index: np.ndarray) -> np.ndarray:
    up, down = display_factor(index.shape)
    if down > 1:
        h, w = index.shape
        padded = np.zeros((-(-h // down) * down, -(-w // down) * down), index.dtype)
        padded[:h, :w] = index
        index = padded.reshape(padded.shape[0] // down, down, padded.shape[1] // down, down).max(axis=(1, 3))
    return np.kron(index, np.ones((up, up), np.uint8)) if up > 1 else index


def _paste_index(img: Image.Image, index: np.ndarray, x: int, top: int, lines=None, native: bool = False) -> None:
    """Draw palette indices (H, W) at (x, top) at their display size (`display_factor`; one image pixel per index
    when `native`), framed; `lines` (H, W) bool: pixels drawn in the grid-line colour (latitude/longitude lines;
    kept when a field is shrunk, as the largest index of its block)."""
    index = index.astype(np.uint8)
    if lines is not None:
        index = np.where(lines, GRID_LINE, index).astype(np.uint8)
    if not native:
        index = _displayed(index)
    h, w = index.shape
    img.paste(Image.frombytes("P", (w, h), np.ascontiguousarray(index).tobytes()), (x, top))
    ImageDraw.Draw(img).rectangle([x - 1, top - 1, x + w, top + h], outline=FRAME)


def paste_field(img: Image.Image, field01, x: int, y: int, label: str, lines=None,
                shape=(128, 128)) -> None:
    """Draw a (H, W) field on the 0–1 scale (or None for an empty panel of `shape`) with its label above it;
    `lines`: (H, W) bool mask of latitude/longitude lines drawn over it."""
    draw_text(img, (x + 2, y + 2), label)
    top = y + LABEL_H
    if field01 is None:
        w, h = panel_size(shape)
        h -= LABEL_H
        ImageDraw.Draw(img).rectangle([x, top, x + w - 1, top + h - 1], fill=EMPTY, outline=FRAME)
        return
    _paste_index(img, vil_to_index(np.asarray(field01) * 255.0), x, top, lines)


def paste_probability(img: Image.Image, probability, x: int, y: int, label: str, lines=None,
                      shape=(128, 128)) -> None:
    """Draw a (H, W) probability field in [0, 1] (or None for an empty panel of `shape`); 0 is drawn as no
    echo."""
    if probability is None:
        paste_field(img, None, x, y, label, shape=shape)
        return
    draw_text(img, (x + 2, y + 2), label)
    bins = probability_to_bin(probability)
    _paste_index(img, np.where(bins < 0, 1, bins + PROBABILITY_BASE), x, y + LABEL_H, lines)


def thumbnail_size(shape) -> tuple:
    """(width, height) of a member thumbnail in a strip, its small label included."""
    h, w = shape
    return -(-w // THUMBNAIL_STRIDE), -(-h // THUMBNAIL_STRIDE) + THUMB_LABEL_H


THUMB_LABEL_H = 12


def paste_thumbnail(img: Image.Image, field01, x: int, y: int, label: str) -> None:
    """Draw a (H, W) field on the 0–1 scale at half resolution (every second pixel), labelled in small type:
    one member of a strip (or an empty box for None)."""
    draw_text(img, (x + 1, y), label, size=10)
    top = y + THUMB_LABEL_H
    if field01 is None:
        return
    index = vil_to_index(np.asarray(field01)[::THUMBNAIL_STRIDE, ::THUMBNAIL_STRIDE] * 255.0)
    _paste_index(img, index, x, top, native=True)


def draw_graticule_labels(img: Image.Image, labels, x: int, top: int, shape) -> None:
    """Write the latitude/longitude values (`graticule.Graticule.labels`: (row, column, text)) along the left and
    bottom edges of the image panel whose field starts at (x, top)."""
    up, down = display_factor(shape)
    h = -(-shape[0] // down) * up
    for row, col, text in labels:
        if col == 0:  # a latitude on the left edge, just above its line
            draw_text(img, (x + 2, top + row * up // down - 12), text, size=10)
        else:  # a longitude on the bottom edge, right of its line
            draw_text(img, (x + col * up // down + 2, top + h - 12), text, size=10)


def panel_size(shape) -> tuple:
    """(width, height) in image pixels of the panel of a (H, W) field, its label included."""
    h, w = shape
    up, down = display_factor(shape)
    return -(-w // down) * up, -(-h // down) * up + LABEL_H


def _colour_bar(img: Image.Image, x: int, y: int, title: str, colours: Sequence[int], top: Sequence[str],
                bottom: Sequence[str]) -> int:
    """A colour bar: equal cells, boundary labels above (`top`) and below (`bottom`); returns its height."""
    draw = ImageDraw.Draw(img)
    draw_text(img, (x, y + 14 + 2), title, size=13)
    bx = x + LEGEND_LABEL_W
    for i, colour in enumerate(colours):
        draw.rectangle([bx + i * BAR_CELL_W, y + 14, bx + (i + 1) * BAR_CELL_W - 1, y + 14 + BAR_H - 1],
                       fill=colour, outline=FRAME)
    for labels, ty in ((top, y), (bottom, y + 14 + BAR_H + 2)):
        for i, text in enumerate(labels):
            draw_text(img, (bx + i * BAR_CELL_W - 3 * len(text) + (3 if i == 0 else 0), ty), text, size=11)
    return LEGEND_H


def draw_legend(img: Image.Image, x: int, y: int) -> int:
    """The 10 VIL bins as a colour bar: digital levels above, kg m-2 below; returns the legend's height."""
    return _colour_bar(img, x, y, "VIL: digital (top)", list(range(1, 11)), [str(v) for v in LEVELS],
                       level_labels_kg_m2()) and _kg_caption(img, x, y)


def _kg_caption(img: Image.Image, x: int, y: int) -> int:
    draw_text(img, (x, y + 14 + BAR_H + 2), "kg m-2 (bottom)", size=13)
    return LEGEND_H


def probability_label(threshold: float) -> str:
    """"P(VIL >= 74 = 0.78 kg m-2)": the exceedance event in digital and physical units."""
    kg = float(digital_to_kg_m2(np.float64(threshold)))
    return f"P(VIL >= {threshold:g} = {kg:.2g} kg m-2)"


def draw_probability_legend(img: Image.Image, x: int, y: int, threshold: float) -> int:
    """The 10 probability bins as a colour bar, titled with the event in digital and kg m-2; returns its
    height."""
    height = _colour_bar(img, x, y, f"P(VIL >= {threshold:g})", [PROBABILITY_BASE + i for i in range(10)],
                         [f"{v:g}" for v in PROBABILITY_LEVELS], [])
    draw_text(img, (x, y + 14 + BAR_H + 2), f"= {float(digital_to_kg_m2(np.float64(threshold))):.2g} kg m-2",
              size=13)
    return height


def legend_width() -> int:
    return LEGEND_LABEL_W + BAR_CELL_W * (len(LEVELS) - 1) + 20


def grid_layout(n: int, columns: int) -> Sequence[tuple]:
    return [(i % columns, i // columns) for i in range(n)]


def shown_threshold(thresholds: Sequence[float]) -> float:
    """The threshold of the pictures' exceedance panel: 74 (moderate VIL, 0.78 kg m-2) when given, else the first."""
    return 74.0 if any(float(t) == 74.0 for t in thresholds) else float(thresholds[0])
