"""CIFAR-10, CIFAR-100 and STL-10 through torchvision, read from their arrays in one go.

CIFAR keeps its official train/test split. STL-10 trains on 'train+unlabeled' (the 100,000
unlabelled images get label -1) and tests on 'test'. Files live under `root`, by default
~/.cache/ssl_explorer/data; when they are missing and `download` is on, a quick check that the
server answers comes first, so that a machine without a network fails in seconds, not minutes.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import torch

from ..errors import DataError
from .image_set import DataSplits, ImageSet, resize_images

DEFAULT_ROOT = "~/.cache/ssl_explorer/data"
TORCHVISION_SOURCES: tuple[str, ...] = ("cifar10", "cifar100", "stl10")
REACH_TIMEOUT_S = 10.0
OFFLINE_HINT = "or use the bundled sets 'digits' or 'shapes', which work offline"


def _server_answers(url: str) -> str | None:
    """None when the server of `url` answers within REACH_TIMEOUT_S, else why it did not."""
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "ssl-explorer"})
    try:
        with urllib.request.urlopen(request, timeout=REACH_TIMEOUT_S):
            return None
    except urllib.error.HTTPError:
        return None  # the server answered; some refuse HEAD, but the download itself may work
    except (urllib.error.URLError, OSError) as error:
        return str(getattr(error, "reason", error))


def _open(name: str, dataset_class, root: str, download: bool, **kwargs):
    """torchvision's `dataset_class` from `root`, downloading it when allowed, or a DataError."""
    try:
        return dataset_class(root, download=False, **kwargs)
    except RuntimeError:
        pass  # not there (or corrupt)
    if not download:
        raise DataError(f"{name} is not in {root} and download is off; put the files there, "
                        f"turn download on, {OFFLINE_HINT}")
    problem = _server_answers(dataset_class.url)
    if problem is None:
        try:
            return dataset_class(root, download=True, **kwargs)
        except (urllib.error.URLError, OSError, RuntimeError) as error:
            problem = str(getattr(error, "reason", error))
    host = urllib.parse.urlsplit(dataset_class.url).netloc
    raise DataError(f"could not download {name} from {host} ({problem}); "
                    f"put the files in {root} by hand, {OFFLINE_HINT}")


def _image_set(pixels: np.ndarray, labels, class_names: list[str], image_size: int,
               channels_last: bool) -> ImageSet:
    images = torch.from_numpy(pixels)
    if channels_last:
        images = images.permute(0, 3, 1, 2)
    return ImageSet(images=resize_images(images, image_size).contiguous(),
                    labels=torch.as_tensor(np.asarray(labels), dtype=torch.long),
                    class_names=list(class_names))


def load_torchvision_set(name: str, image_size: int, root: str | None = None,
                         download: bool = True) -> DataSplits:
    """`name` (one of TORCHVISION_SOURCES) as train and test sets of image_size x image_size."""
    from torchvision import datasets  # slow to import; only the sets that need it pay

    root = os.path.abspath(os.path.expanduser(root or DEFAULT_ROOT))
    if name in ("cifar10", "cifar100"):
        dataset_class = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
        train = _open(name, dataset_class, root, download, train=True)
        test = _open(name, dataset_class, root, download, train=False)
        return DataSplits(
            train=_image_set(train.data, train.targets, train.classes, image_size, channels_last=True),
            test=_image_set(test.data, test.targets, test.classes, image_size, channels_last=True),
            skipped=[], name=name)
    if name == "stl10":
        train = _open(name, datasets.STL10, root, download, split="train+unlabeled")
        test = _open(name, datasets.STL10, root, download, split="test")
        return DataSplits(
            train=_image_set(train.data, train.labels, train.classes, image_size, channels_last=False),
            test=_image_set(test.data, test.labels, test.classes, image_size, channels_last=False),
            skipped=[], name=name)
    raise DataError(f"unknown torchvision set {name!r}; use one of {', '.join(TORCHVISION_SOURCES)}")
