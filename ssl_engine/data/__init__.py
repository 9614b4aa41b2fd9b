"""Data sources by name: `load_data("shapes")`, `load_data("folder:~/photos")`, `load_data("cifar10")`.

Every source comes back as `DataSplits` of uint8 RGB `ImageSet`s at image_size x image_size:
- "digits": scikit-learn's 1,797 handwritten digits, bundled, offline.
- "shapes": generated shapes on textured backgrounds (see shapes.py), offline.
- "folder:PATH": any folder of images, labelled by its subfolders or unlabelled (folder.py).
- "cifar10", "cifar100", "stl10": torchvision, downloaded into `root` on first use.
Labelled sets without an official test split get a seeded, stratified one (split.py).
"""

from __future__ import annotations

import os

from ..errors import ConfigError, DataError
from .digits import load_digits
from .folder import read_folder
from .image_set import DataSplits, ImageSet
from .shapes import SHAPE_NAMES, generate_shapes
from .split import stratified_split
from .torchvision_sets import TORCHVISION_SOURCES, load_torchvision_set

SOURCES: tuple[str, ...] = ("digits", "shapes") + TORCHVISION_SOURCES
FOLDER_PREFIX = "folder:"

__all__ = ["SOURCES", "FOLDER_PREFIX", "SHAPE_NAMES", "DataSplits", "ImageSet", "load_data",
           "generate_shapes", "load_digits", "read_folder", "stratified_split"]


def _split(image_set: ImageSet, test_fraction: float, seed: int, name: str,
           skipped: list[tuple[str, str]]) -> DataSplits:
    """A stratified split when `image_set` is labelled; otherwise train on all of it, no test."""
    if not image_set.has_labels:
        return DataSplits(train=image_set, test=None, skipped=skipped, name=name)
    train, test = stratified_split(image_set, test_fraction, seed)
    return DataSplits(train=train, test=test if len(test) else None, skipped=skipped, name=name)


def load_data(source: str, image_size: int = 32, *, test_fraction: float = 0.2, seed: int = 0,
              root: str | None = None, download: bool = True, shapes_count: int = 10000) -> DataSplits:
    """The train and test images of `source`: one of SOURCES or "folder:PATH".

    `test_fraction` and `seed` shape the split of labelled sets without an official one
    (digits, shapes, labelled folders); the test set is None when there is nothing to test on
    (an unlabelled folder, or test_fraction 0). `seed` also seeds the generated shapes.
    `root` and `download` only concern the torchvision sets.
    """
    problems = []
    if isinstance(image_size, bool) or not isinstance(image_size, int) or not 8 <= image_size <= 1024:
        problems.append(f"image_size must be an integer from 8 to 1024, got {image_size!r}")
    if not 0.0 <= test_fraction < 1.0:
        problems.append(f"test_fraction must be >= 0 and < 1, got {test_fraction!r}")
    if source == "shapes" and shapes_count < 10:
        problems.append(f"shapes_count must be at least 10, got {shapes_count!r}")
    if problems:
        raise ConfigError(problems)

    if source.startswith(FOLDER_PREFIX):
        path = source[len(FOLDER_PREFIX):].strip()
        if not path:
            raise DataError("folder source needs a path, e.g. folder:~/pictures")
        folder = os.path.abspath(os.path.expanduser(path))
        image_set, skipped = read_folder(folder, image_size)
        return _split(image_set, test_fraction, seed, f"{FOLDER_PREFIX}{folder}", skipped)
    if source == "digits":
        return _split(load_digits(image_size), test_fraction, seed, "digits", [])
    if source == "shapes":
        return _split(generate_shapes(shapes_count, image_size, seed), test_fraction, seed, "shapes", [])
    if source in TORCHVISION_SOURCES:
        return load_torchvision_set(source, image_size, root=root, download=download)
    raise DataError(f"unknown data source {source!r}; use one of {', '.join(SOURCES)} "
                    f"or folder:PATH")
