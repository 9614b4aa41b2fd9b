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
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image, ImageOps

from ..errors import DataError
from .image_set import ImageSet

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
TRANSPARENT_BACKGROUND = (255, 255, 255)  # what transparent pixels are composited over


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


def _decode(path: str, image_size: int) -> np.ndarray | str:
    """The image at `path` as (image_size, image_size, 3) uint8, or the reason it cannot be read."""
    try:
        if os.path.getsize(path) == 0:
            return "empty file (0 bytes)"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "palette images with transparency", EXIF noise
            with Image.open(path) as image:
                image.draft(None, (image_size, image_size))  # JPEG: decode at a reduced scale
                image.load()
                image = ImageOps.exif_transpose(image)
                image = _to_rgb(image)
                image = ImageOps.fit(image, (image_size, image_size), method=Image.Resampling.BICUBIC)
                return np.asarray(image, dtype=np.uint8)
    except Image.UnidentifiedImageError:
        return "not a readable image (unknown or corrupt format)"
    except Image.DecompressionBombError as error:
        return f"too large to decode safely ({error})"
    except Exception as error:  # a damaged file can break a decoder in any way; skip, never stop
        return f"cannot decode ({type(error).__name__}: {error})"


def read_folder(path: str, image_size: int) -> tuple[ImageSet, list[tuple[str, str]]]:
    """All readable images under `path` and the (path, reason) of every file that was skipped.

    Decodes on a thread pool (Pillow releases the GIL while decoding); the order is the sorted
    order of the files, so the same folder always gives the same set.
    """
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

    skipped: list[tuple[str, str]] = []
    if class_files:
        skipped += [(f, "at the top level beside class folders; move it into a class folder")
                    for f in top_files]
        files = [f for found in class_files.values() for f in found]
        folder_of = [name for name, found in class_files.items() for _ in found]
    else:
        files, folder_of = top_files, [None] * len(top_files)

    pixels = np.empty((len(files), image_size, image_size, 3), dtype=np.uint8)
    readable = np.zeros(len(files), dtype=bool)
    workers = min(32, 2 * (os.cpu_count() or 2))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, result in enumerate(pool.map(lambda f: _decode(f, image_size), files)):
            if isinstance(result, str):
                skipped.append((files[i], result))
            else:
                pixels[i] = result
                readable[i] = True
    skipped.sort()

    if not readable.any():
        if skipped:
            raise DataError(f"no readable image in {folder}: all {len(skipped)} image files were "
                            f"skipped (first: {os.path.basename(skipped[0][0])}: {skipped[0][1]})")
        raise DataError(f"no images in {folder} (looked for {', '.join(IMAGE_EXTENSIONS)})")

    kept = np.flatnonzero(readable)
    kept_folders = [folder_of[i] for i in kept]
    class_names = sorted({name for name in kept_folders if name is not None})
    label_of = {name: k for k, name in enumerate(class_names)}
    labels = torch.tensor([label_of.get(name, -1) for name in kept_folders], dtype=torch.long)
    images = torch.from_numpy(pixels[kept]).permute(0, 3, 1, 2).contiguous()
    return ImageSet(images=images, labels=labels, class_names=class_names,
                    paths=[files[i] for i in kept]), skipped
