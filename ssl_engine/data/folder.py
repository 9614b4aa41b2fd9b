"""Read any folder of images: labelled by first-level subfolders, or unlabelled when flat.

Layout:
- With subfolders that hold images, each first-level subfolder is a class (named after it);
  images nested deeper belong to that class. Images at the top level beside class folders are
  skipped, with a reason saying to move them into a class folder.
- Without such subfolders, every image at the top level is read, unlabelled (label -1).
- Hidden files and folders (name starting with '.') are ignored; so are files whose extension
  is not an image extension (.jpg .jpeg .png .bmp .gif .webp .tif .tiff, any case).

Every image becomes RGB uint8: greyscale and palette images are expanded; transparent images
(RGBA, LA, palette with transparency) are composited over WHITE; 16-bit greyscale is scaled
0..65535 to 0..255; CMYK is converted; the EXIF orientation is applied. Then the shorter side
is resized to `image_size` and the centre is cropped (antialiased). Files that cannot be read
(empty, truncated, not an image) are skipped and reported as (path, reason), never raised.

The pieces are public so that a streaming reader (ssl_engine.eval.folder_embedding) follows
exactly the same rules: `list_folder` (which files, which class), `decode_image` (one file),
`class_labels` (labels of the files kept) and `no_readable_images` (the error when none are).
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps

from ..errors import DataError
from .image_set import ImageSet

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
TRANSPARENT_BACKGROUND = (255, 255, 255)  # what transparent pixels are composited over
DECODE_WORKERS = min(32, 2 * (os.cpu_count() or 2))  # threads: Pillow releases the GIL while decoding


def _image_files(folder: str, seen: set[str] | None = None) -> list[str]:
    """Image files under `folder`, recursively, sorted; hidden entries skipped, symlink loops cut."""
    seen = set() if seen is None else seen
    real = os.path.realpath(folder)
    if real in seen:
        return []
    seen.add(real)
    files, folders = [], []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                folders.append(entry.path)
            elif entry.name.lower().endswith(IMAGE_EXTENSIONS) and entry.is_file():
                files.append(entry.path)
    for sub in sorted(folders):
        files.extend(_image_files(sub, seen))
    return sorted(files)


def _to_rgb(image: Image.Image) -> Image.Image:
    """`image` in RGB: 16-bit and 32-bit greyscale scaled, transparency composited over white."""
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16") or (mode == "I" and values.min() >= 0 and values.max() <= 65535):
            values = values / 257.0                    # 16-bit range onto 8 bits, 65535 -> 255
        elif mode == "F" and values.min() >= 0 and values.max() <= 1:
            values = values * 255.0                    # float image in 0..1
        else:                                          # any other range: stretch min..max
            low, high = values.min(), values.max()
            values = (values - low) * (255.0 / (high - low) if high > low else 0.0)
        grey = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))
        return grey.convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    elif mode in ("LA", "La", "PA", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, TRANSPARENT_BACKGROUND)
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


class UnreadableImage(DataError):
    """One file cannot be decoded; the message is the reason, in one line."""


@contextmanager
def opened_rgb(path: str, draft_size: int):
    """The image at `path` in RGB, upright (EXIF orientation applied); JPEGs are decoded at the
    smallest scale that still covers `draft_size`. Raises UnreadableImage with the reason."""
    try:
        if os.path.getsize(path) == 0:
            raise UnreadableImage("empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "palette images with transparency", EXIF noise
            with Image.open(path) as image:
                image.draft(None, (draft_size, draft_size))  # JPEG: decode at a reduced scale
                image.load()
                yield _to_rgb(ImageOps.exif_transpose(image))
    except UnreadableImage:
        raise
    except FileNotFoundError:
        raise UnreadableImage("file not found") from None
    except Image.UnidentifiedImageError:
        raise UnreadableImage("not a readable image (unknown or corrupt format)") from None
    except Image.DecompressionBombError as error:
        raise UnreadableImage(f"too large to decode safely ({error})") from None
    except Exception as error:  # a damaged file can break a decoder in any way; skip, never stop
        raise UnreadableImage(f"cannot decode ({type(error).__name__}: {error})") from None


def _fit(image: Image.Image, size: int) -> np.ndarray:
    """Shorter side resized to `size`, centre cropped: (size, size, 3) uint8."""
    return np.array(ImageOps.fit(image, (size, size), method=Image.Resampling.BICUBIC), dtype=np.uint8)


def decode_image(path: str, image_size: int) -> np.ndarray:
    """The image at `path` as (image_size, image_size, 3) uint8 RGB; UnreadableImage if it cannot be read."""
    with opened_rgb(path, image_size) as image:
        return _fit(image, image_size)


def decode_image_and_thumbnail(path: str, image_size: int, thumbnail_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(pixels at image_size, thumbnail at thumbnail_size), both centre crops, from one open of the file.

    The pixels equal `decode_image`'s (for JPEGs, up to the reduced decoding scale, which here
    must also cover the thumbnail). When image_size >= thumbnail_size the thumbnail is a downscale
    of the pixels, so a large image is resampled only once.
    """
    with opened_rgb(path, max(image_size, thumbnail_size)) as image:
        pixels = _fit(image, image_size)
        if image_size >= thumbnail_size:
            small = Image.fromarray(pixels).resize((thumbnail_size, thumbnail_size), Image.Resampling.BICUBIC)
            return pixels, np.asarray(small, dtype=np.uint8)
        return pixels, _fit(image, thumbnail_size)


def _decode_or_reason(path: str, image_size: int) -> np.ndarray | str:
    try:
        return decode_image(path, image_size)
    except UnreadableImage as error:
        return str(error)


@dataclass
class FolderListing:
    """The image files of a folder, before any is decoded."""

    root: str                        # absolute folder path
    files: list[str]                 # absolute paths, in the order images are read
    class_of: list[str | None]       # first-level subfolder of each file; None when unlabelled
    skipped: list[tuple[str, str]]   # top-level files beside class folders, with the reason


def list_folder(path: str) -> FolderListing:
    """The image files under `path` by the rules above (no file is opened); DataError when
    `path` is missing or not a folder. An empty listing is not an error here."""
    folder = os.path.abspath(os.path.expanduser(path))
    if not os.path.exists(folder):
        raise DataError(f"folder {folder} does not exist")
    if not os.path.isdir(folder):
        raise DataError(f"{folder} is not a folder; give a folder of images (or of class folders)")

    top_files, class_files = [], {}
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                found = _image_files(entry.path)
                if found:
                    class_files[entry.name] = found
            elif entry.name.lower().endswith(IMAGE_EXTENSIONS) and entry.is_file():
                top_files.append(entry.path)

    if not class_files:
        return FolderListing(folder, top_files, [None] * len(top_files), [])
    return FolderListing(
        root=folder,
        files=[f for found in class_files.values() for f in found],
        class_of=[name for name, found in class_files.items() for _ in found],
        skipped=[(f, "at the top level beside class folders; move it into a class folder") for f in top_files])


def class_labels(class_of: list[str | None]) -> tuple[np.ndarray, list[str]]:
    """int64 labels (-1 for None) and the sorted class names of the images kept."""
    class_names = sorted({name for name in class_of if name is not None})
    label_of = {name: k for k, name in enumerate(class_names)}
    return np.array([label_of.get(name, -1) for name in class_of], dtype=np.int64), class_names


def no_readable_images(folder: str, skipped: list[tuple[str, str]]) -> DataError:
    """The one-line error for a folder where no image could be read."""
    if skipped:
        return DataError(f"no readable image in {folder}: all {len(skipped)} image files were "
                         f"skipped (first: {os.path.basename(skipped[0][0])}: {skipped[0][1]})")
    return DataError(f"no images in {folder} (looked for {', '.join(IMAGE_EXTENSIONS)})")


def read_folder(path: str, image_size: int) -> tuple[ImageSet, list[tuple[str, str]]]:
    """All readable images under `path` and the (path, reason) of every file that was skipped.

    Decodes on a thread pool (Pillow releases the GIL while decoding); the order is the sorted
    order of the files, so the same folder always gives the same set.
    """
    listing = list_folder(path)
    files = listing.files
    skipped = list(listing.skipped)
    pixels = np.empty((len(files), image_size, image_size, 3), dtype=np.uint8)
    readable = np.zeros(len(files), dtype=bool)
    with ThreadPoolExecutor(max_workers=DECODE_WORKERS) as pool:
        for i, result in enumerate(pool.map(lambda f: _decode_or_reason(f, image_size), files)):
            if isinstance(result, str):
                skipped.append((files[i], result))
            else:
                pixels[i] = result
                readable[i] = True
    skipped.sort()

    if not readable.any():
        raise no_readable_images(listing.root, skipped)

    kept = np.flatnonzero(readable)
    labels, class_names = class_labels([listing.class_of[i] for i in kept])
    images = torch.from_numpy(pixels[kept]).permute(0, 3, 1, 2).contiguous()
    return ImageSet(images=images, labels=torch.from_numpy(labels), class_names=class_names,
                    paths=[files[i] for i in kept]), skipped
