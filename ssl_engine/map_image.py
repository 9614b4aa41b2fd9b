"""A 2D embedding map drawn as a picture (uint8 RGB), without Qt: one dot per point coloured by
its class, with a legend of the class names. For files and logs that hold images (TensorBoard);
the app draws its own interactive map.
"""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

UNLABELLED_COLOUR = (150, 150, 150)  # the app's maps draw unknown labels in this grey too
BACKGROUND = (255, 255, 255)
TEXT_COLOUR = (40, 40, 40)
DOT_RADIUS = 2.5
MARGIN = 12          # pixels between the outermost dots and the plot's edge
LEGEND_WIDTH = 170
LEGEND_ROW = 14      # the default font is about 11 px tall


def class_colours(count: int) -> np.ndarray:
    """uint8 (count, 3): evenly spaced hues at full saturation and brightness, the colours the
    app's maps give classes (pyqtgraph's intColor with `hues=count`)."""
    hues = [i / max(count, 1) for i in range(count)]
    return np.array([[round(255 * c) for c in colorsys.hsv_to_rgb(h, 1.0, 1.0)] for h in hues],
                    dtype=np.uint8).reshape(count, 3)


def _pixels(points: np.ndarray, side: int) -> np.ndarray:
    """Points (N, 2) -> pixel positions in a `side` square: one scale for both axes (a map's
    distances mean the same across and up), centred, y up as on a plot."""
    low, high = points.min(axis=0), points.max(axis=0)
    span = float((high - low).max()) or 1.0  # all points at one place: any scale shows them
    scale = (side - 2 * MARGIN) / span
    centre = (low + high) / 2
    x = side / 2 + (points[:, 0] - centre[0]) * scale
    y = side / 2 - (points[:, 1] - centre[1]) * scale
    return np.stack([x, y], axis=1)


def draw_map(points: np.ndarray, labels: np.ndarray, class_names: list[str], side: int = 512) -> np.ndarray:
    """The map of `points` (N, 2) as uint8 (side, side + legend, 3): each point a dot in its
    label's colour (grey for -1 or a label without a name), the legend beside it. Points that
    are not finite (a diverged run) are left out."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    labels = np.asarray(labels).reshape(-1)
    colours = class_colours(len(class_names))
    image = Image.new("RGB", (side + LEGEND_WIDTH, side), BACKGROUND)
    draw = ImageDraw.Draw(image)
    finite = np.isfinite(points).all(axis=1)
    if finite.any():
        pixels = _pixels(points[finite], side)
        shown = labels[finite]
        # a fixed shuffle of the drawing order, so that no class always lies on top of the others
        for i in np.random.default_rng(0).permutation(len(pixels)):
            label = int(shown[i])
            colour = tuple(int(c) for c in colours[label]) if 0 <= label < len(colours) else UNLABELLED_COLOUR
            x, y = pixels[i]
            draw.ellipse((x - DOT_RADIUS, y - DOT_RADIUS, x + DOT_RADIUS, y + DOT_RADIUS), fill=colour)
    _legend(draw, labels, class_names, colours, left=side, height=side)
    return np.asarray(image, dtype=np.uint8).copy()


def _legend(draw: ImageDraw.ImageDraw, labels: np.ndarray, class_names: list[str], colours: np.ndarray,
            left: int, height: int) -> None:
    """A swatch and a name per class present, as many as fit down the side, then how many more."""
    font = ImageFont.load_default()
    entries = [(class_names[label] if 0 <= label < len(class_names) else "no label",
                tuple(int(c) for c in colours[label]) if 0 <= label < len(colours) else UNLABELLED_COLOUR)
               for label in (int(value) for value in np.unique(labels))]
    rows = max(1, (height - 2 * MARGIN) // LEGEND_ROW)
    hidden = len(entries) - rows + 1 if len(entries) > rows else 0
    for row, (name, colour) in enumerate(entries[:len(entries) - hidden] if hidden else entries):
        y = MARGIN + row * LEGEND_ROW
        draw.rectangle((left + 8, y + 2, left + 18, y + 12), fill=colour)
        draw.text((left + 24, y), name[:24], fill=TEXT_COLOUR, font=font)
    if hidden:
        draw.text((left + 24, MARGIN + (rows - 1) * LEGEND_ROW), f"... {hidden} more", fill=TEXT_COLOUR, font=font)
