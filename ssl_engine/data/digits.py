"""scikit-learn's bundled handwritten digits (1,797 real 8x8 images), upscaled to RGB.

UCI's optical recognition of handwritten digits, as shipped with scikit-learn: no download,
so it works offline. Pixel values 0..16 (ink is high, paper is black) become 0..255.
"""

from __future__ import annotations

import torch

from .image_set import ImageSet, resize_images


def load_digits(image_size: int = 32) -> ImageSet:
    """All 1,797 digits as an `ImageSet` of (N, 3, image_size, image_size), classes "0".."9"."""
    from sklearn.datasets import load_digits as sklearn_digits  # slow to import; only digits pays

    digits = sklearn_digits()
    pixels = torch.from_numpy(digits.images).float().mul_(255.0 / 16.0).unsqueeze(1)
    grey = resize_images(pixels, image_size)
    return ImageSet(images=grey.repeat(1, 3, 1, 1).contiguous(),
                    labels=torch.from_numpy(digits.target).long(),
                    class_names=[str(name) for name in digits.target_names])
