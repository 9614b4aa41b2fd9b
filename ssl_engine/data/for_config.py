"""The data set an experiment config describes, split as the config says."""

from __future__ import annotations

from ..config import ExperimentConfig
from . import load_data
from .image_set import DataSplits


def load_data_for(config: ExperimentConfig, *, source: str | None = None, image_size: int | None = None,
                  seed: int | None = None) -> DataSplits:
    """The data set `config` describes (or `source` at `image_size`, split with `seed`)."""
    data = config.data
    return load_data(source or data.source, image_size or data.image_size, test_fraction=data.test_fraction,
                     seed=config.train.seed if seed is None else seed, root=data.root, download=data.download,
                     shapes_count=data.shapes_count)
