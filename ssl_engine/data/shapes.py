"""A generated, seeded set of shapes on textured backgrounds, built to need invariance.

Ten classes of shapes that stay distinct under rotation. Everything else varies independently
of the class: the shape's colour, size, position and rotation, and a background of stripes,
a checkerboard, smooth noise or a gradient. So raw pixels say little about the class (a kNN on
raw pixels stays weak), while a person or a CNN sees the shape at once.

What varies from image to image is chosen so that the papers' augmentations can undo it:
position and size (the crop), and colour within what colour jitter spans. Each image has one
hue from a 0.3-wide arc of the colour circle, its background in two nearby shades of that hue
and its shape in the opposite hue, light-on-dark or dark-on-light at random. What no
augmentation undoes is kept weak, because SSL matches two views of an image by whatever they
share: measured with SimCLR, hues over the whole circle or a high-contrast background texture
made the features encode the hue (6-bin kNN 0.91) or the background kind rather than the
shape, and the shape kNN stayed near raw pixels. Smaller shapes (radius 0.35-0.65 of half the
side) keep raw pixels weak without that colour noise.

Drawing is vectorised: each shape is an inside test on a supersampled coordinate grid for a
chunk of images at once, averaged down to the image size for antialiased edges.
"""

from __future__ import annotations

import numpy as np
import torch

from .image_set import ImageSet

SHAPE_NAMES: tuple[str, ...] = ("circle", "ring", "triangle", "square", "star", "cross",
                                "crescent", "heart", "semicircle", "ellipse")
BACKGROUNDS: tuple[str, ...] = ("stripes", "checkerboard", "noise", "gradient")

RADIUS = (0.35, 0.65)  # the shape's radius as a fraction of half the image side
# Image hues span this share of the colour circle: within reach of the papers' hue jitter
# (+-0.1 to +-0.2 per view), so that invariance to the jitter makes hue nearly uninformative.
HUE_SPAN = 0.3
# The background's two shades are this share of their full spread apart: a visible texture, but
# one that does not outweigh the shape when two crops of one image are matched.
BACKGROUND_CONTRAST = 0.5


def _half_planes(u: np.ndarray, v: np.ndarray, points: int, distance: float,
                 turn: float = 0.0) -> np.ndarray:
    """How many of the half-planes u cos a + v sin a <= distance, a = turn + 2 pi k / points, hold."""
    count = np.zeros(u.shape, dtype=np.uint8)
    for k in range(points):
        angle = turn + 2 * np.pi * k / points
        count += (u * np.float32(np.cos(angle)) + v * np.float32(np.sin(angle))) <= distance
    return count


def _inside(name: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether each point (u, v) in shape coordinates lies inside the shape (radius about 1)."""
    if name == "circle":
        return u * u + v * v <= 0.85 ** 2
    if name == "ring":
        r2 = u * u + v * v
        return (r2 <= 0.95 ** 2) & (r2 >= 0.55 ** 2)
    if name == "triangle":  # equilateral, circumradius 1, centred on its centroid
        return _half_planes(u, v, 3, 0.5) == 3
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.72
    if name == "star":  # filled pentagram: its five lines, of which a point must be inside four
        return _half_planes(u, v, 5, np.cos(2 * np.pi / 5)) >= 4
    if name == "cross":  # plus sign with arms of half-width 0.3
        au, av = np.abs(u), np.abs(v)
        return ((au <= 0.3) & (av <= 0.95)) | ((av <= 0.3) & (au <= 0.95))
    if name == "crescent":  # a disc minus an offset disc
        return (u * u + v * v <= 0.9 ** 2) & ((u - 0.5) ** 2 + v * v >= 0.7 ** 2)
    if name == "heart":  # (x^2 + y^2 - 1)^3 <= x^2 y^3, scaled to radius about 1
        x, y = u * 1.25, 0.2 - v * 1.25
        q = x * x + y * y - 1
        return q * q * q <= x * x * y * y * y
    if name == "semicircle":  # half disc, centred on the middle of its height
        v0 = v - 0.5
        return (u * u + v0 * v0 <= 1.0) & (v0 <= 0)  # disc centre and flat edge at v = 0.5
    if name == "ellipse":
        return (u / 0.95) ** 2 + (v / 0.5) ** 2 <= 1
    raise ValueError(f"unknown shape {name!r}")


def _coverage(mask: np.ndarray, supersample: int) -> np.ndarray:
    """The fraction of each supersample x supersample block of `mask` (n, H*s, W*s) that is set."""
    n, fine_h, fine_w = mask.shape
    hits = mask.view(np.uint8).reshape(n, fine_h // supersample, supersample, fine_w)
    hits = sum(hits[:, :, i] for i in range(supersample))          # (n, H, W*s), adding rows
    hits = hits.reshape(n, fine_h // supersample, fine_w // supersample, supersample)
    hits = sum(hits[..., j] for j in range(supersample))            # (n, H, W), adding columns
    return hits.astype(np.float32) / np.float32(supersample * supersample)


def _background(kind: np.ndarray, params: np.ndarray, noise_rng: np.random.Generator,
                x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A mixing weight in 0..1 per pixel, (n, H, W), for each image's background kind and params.

    params[:, 0] is an angle, params[:, 1] a frequency in cycles per image, params[:, 2] a phase,
    params[:, 3] a sharpness, and params[:, 4:10] three more angles and frequencies for the noise.
    """
    n = len(kind)
    size = x.shape[-1]
    weight = np.empty((n, size, size), dtype=np.float32)
    angle, freq, phase, sharp = (params[:, i, None, None] for i in range(4))
    along = x * np.cos(angle) + y * np.sin(angle)            # (n, H, W), in -1.4..1.4
    across = -x * np.sin(angle) + y * np.cos(angle)
    for k, name in enumerate(BACKGROUNDS):
        rows = kind == k
        if not rows.any():
            continue
        a, c, f, p, s = along[rows], across[rows], freq[rows], phase[rows], sharp[rows]
        if name == "stripes":
            w = 0.5 + s * np.sin(np.pi * f * a + p)
        elif name == "checkerboard":
            product = np.sin(np.pi * f * a + p) * np.sin(np.pi * f * c + p)
            w = 0.5 + s * np.sign(product) * np.sqrt(np.abs(product))
        elif name == "noise":  # a sum of four random low-frequency waves
            w = np.sin(np.pi * f * a + p)
            for j in range(3):
                turn = params[rows, 4 + 2 * j, None, None]
                w = w + np.sin(np.pi * params[rows, 5 + 2 * j, None, None]
                               * (x * np.cos(turn) + y * np.sin(turn)) + p * (j + 2))
            w = 0.5 + s * w / 2
        else:  # gradient
            w = 0.5 + 0.5 * a / 1.42
        weight[rows] = w
    weight += noise_rng.normal(0.0, 0.04, size=weight.shape).astype(np.float32)
    return np.clip(weight, 0.0, 1.0, out=weight)


def _hsv_to_rgb(hue: np.ndarray, saturation: np.ndarray, value: np.ndarray) -> np.ndarray:
    """(n,) HSV values in 0..1 -> (n, 3) float32 RGB in 0..1."""
    sector = np.floor(hue * 6).astype(np.int64) % 6
    f = (hue * 6 - np.floor(hue * 6)).astype(np.float32)
    p, q, t = value * (1 - saturation), value * (1 - f * saturation), value * (1 - (1 - f) * saturation)
    choices = [np.stack(channels, -1) for channels in
               ((value, t, p), (q, value, p), (p, value, t), (p, q, value), (t, p, value), (value, p, q))]
    return np.choose(sector[:, None], choices).astype(np.float32)


def _pick_colours(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Background colour pairs (n, 2, 3) and shape colours (n, 3): two shades of a random hue
    behind a shape in the opposite hue, dark behind light or light behind dark at random. The
    shape's brightness stays at least 0.2 (in HSV value) from every shade of its background."""
    hue = rng.random(count) * HUE_SPAN
    saturation = rng.uniform(0.3, 0.7, count)
    light_shape = rng.random(count) < 0.5
    low = np.where(light_shape, rng.uniform(0.15, 0.35, count), rng.uniform(0.65, 0.8, count))
    high = np.where(light_shape, rng.uniform(0.4, 0.6, count), rng.uniform(0.85, 1.0, count))
    high = low + (high - low) * BACKGROUND_CONTRAST
    shape_value = np.where(light_shape, rng.uniform(0.8, 1.0, count), rng.uniform(0.05, 0.3, count))
    background = np.stack([_hsv_to_rgb(hue, saturation, low), _hsv_to_rgb(hue, saturation, high)], axis=1)
    shape = _hsv_to_rgb((hue + 0.5) % 1.0, rng.uniform(0.5, 1.0, count), shape_value)
    return background, shape


def generate_shapes(count: int, image_size: int = 32, seed: int = 0) -> ImageSet:
    """`count` images of the SHAPE_NAMES classes, balanced (counts differ by at most one).

    The same seed gives the same bytes. Each image draws, independently of its class: a rotation,
    a radius in RADIUS of half the image, a centre that keeps the shape inside the image, a
    background kind with random colours and parameters, and a shape colour that stands clear of
    the background.
    """
    rng = np.random.default_rng(seed)
    n_classes = len(SHAPE_NAMES)
    labels = rng.permutation(np.arange(count) % n_classes)
    rotation = rng.uniform(0, 2 * np.pi, count)
    radius = rng.uniform(*RADIUS, count)
    centre = rng.uniform(-1, 1, (count, 2)) * (0.95 - radius)[:, None]
    background_kind = rng.integers(0, len(BACKGROUNDS), count)
    background_params = np.stack([
        rng.uniform(0, np.pi, count),            # angle
        rng.uniform(2, 7, count),                # frequency, cycles per image width
        rng.uniform(0, 2 * np.pi, count),        # phase
        rng.uniform(0.25, 0.6, count),           # sharpness / amplitude
        *[column for _ in range(3) for column in (rng.uniform(0, np.pi, count),
                                                  rng.uniform(0.5, 3, count))],
    ], axis=1).astype(np.float32)
    background_colours, shape_colours = _pick_colours(rng, count)

    supersample = 4 if image_size <= 32 else 3 if image_size <= 64 else 2
    fine = image_size * supersample
    chunk = max(1, 2_000_000 // (fine * fine))
    fine_axis = ((np.arange(fine, dtype=np.float32) + 0.5) / fine * 2 - 1)
    axis = ((np.arange(image_size, dtype=np.float32) + 0.5) / image_size * 2 - 1)
    x, y = axis[None, None, :], axis[None, :, None]

    images = np.empty((count, image_size, image_size, 3), dtype=np.uint8)
    for start in range(0, count, chunk):
        stop = min(start + chunk, count)
        part = slice(start, stop)
        n = stop - start
        # shape coordinates: u, v = R(-rotation) (point - centre) / radius
        cos, sin = np.cos(rotation[part]) / radius[part], np.sin(rotation[part]) / radius[part]
        cos, sin = cos.astype(np.float32), sin.astype(np.float32)
        dx = fine_axis[None, None, :] - centre[part, 0, None, None].astype(np.float32)
        dy = fine_axis[None, :, None] - centre[part, 1, None, None].astype(np.float32)
        coverage = np.empty((n, image_size, image_size), dtype=np.float32)
        for k, name in enumerate(SHAPE_NAMES):
            rows = np.flatnonzero(labels[part] == k)
            if len(rows) == 0:
                continue
            c, s = cos[rows, None, None], sin[rows, None, None]
            u = dx[rows] * c + dy[rows] * s
            v = dy[rows] * c - dx[rows] * s
            coverage[rows] = _coverage(_inside(name, u, v), supersample)
        weight = _background(background_kind[part], background_params[part],
                             np.random.default_rng([seed, start]), x, y)
        low = background_colours[part, 0, None, None, :]
        high = background_colours[part, 1, None, None, :]
        picture = low + (high - low) * weight[..., None]
        alpha = coverage[..., None]
        picture = picture * (1 - alpha) + shape_colours[part, None, None, :] * alpha
        images[part] = np.rint(picture * 255).astype(np.uint8)
    return ImageSet(images=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
                    labels=torch.from_numpy(labels).long(),
                    class_names=list(SHAPE_NAMES))
