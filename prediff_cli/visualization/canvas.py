"""Paletted drawing for the GIF and PNG outputs: SEVIR colours plus a few interface colours, no dithering.

Images are Pillow "P" images whose palette is fixed: indices 0–10 are the VIL colormap (see `colormap`), then
the interface colours below. Fields are written as palette indices directly, text is drawn without
anti-aliasing, so every pixel of the output is exactly one of these colours.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .colormap import bin_labels, palette, vil_to_index

BACKGROUND, TEXT, FRAME, EMPTY = 11, 12, 13, 14
UI_COLORS = {BACKGROUND: (24, 24, 24), TEXT: (235, 235, 235), FRAME: (110, 110, 110), EMPTY: (48, 48, 48)}
SCALE = 2  # nearest-neighbour upscaling of the 128-px frames for readability
LABEL_H = 18


def full_palette() -> np.ndarray:
    return np.concatenate([palette(), np.array([UI_COLORS[i] for i in sorted(UI_COLORS)], np.uint8)])


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


def paste_field(img: Image.Image, field01, x: int, y: int, label: str) -> None:
    """Draw a (H, W) field on the 0–1 scale (or None for an empty panel) with its label above it."""
    draw_text(img, (x + 2, y + 2), label)
    top = y + LABEL_H
    if field01 is None:
        h, w = 128 * SCALE, 128 * SCALE
        ImageDraw.Draw(img).rectangle([x, top, x + w - 1, top + h - 1], fill=EMPTY, outline=FRAME)
        return
    index = vil_to_index(np.asarray(field01) * 255.0)
    index = np.kron(index, np.ones((SCALE, SCALE), np.uint8))
    h, w = index.shape
    img.paste(Image.frombytes("P", (w, h), np.ascontiguousarray(index).tobytes()), (x, top))


def panel_size(shape) -> tuple:
    h, w = shape
    return w * SCALE, h * SCALE + LABEL_H


def draw_legend(img: Image.Image, x: int, y: int) -> int:
    """The 10 colour bins with their digital VIL ranges in one row; returns the legend's height."""
    draw = ImageDraw.Draw(img)
    draw_text(img, (x, y), "VIL (digital 0-255)")
    cx = x + 130
    for i, label in enumerate(bin_labels()):
        draw.rectangle([cx, y + 2, cx + 12, y + 14], fill=i + 1, outline=FRAME)
        draw_text(img, (cx + 16, y), label, size=12)
        cx += 16 + 8 * len(label) + 10
    return 20


def legend_width() -> int:
    return 130 + sum(16 + 8 * len(l) + 10 for l in bin_labels())


def grid_layout(n: int, columns: int) -> Sequence[tuple]:
    return [(i % columns, i // columns) for i in range(n)]
