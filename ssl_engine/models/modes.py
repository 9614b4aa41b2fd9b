"""A module in evaluation mode for a while, with every submodule's train/eval flag put back after."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import nn


@contextmanager
def evaluation_mode(module: nn.Module) -> Iterator[nn.Module]:
    """`module.eval()` inside the block; afterwards each submodule's own `training` flag as it
    was (not `module.train()`: a method keeps frozen parts, such as an EMA target, in eval mode)."""
    modes = {submodule: submodule.training for submodule in module.modules()}
    module.eval()
    try:
        yield module
    finally:
        for submodule, training in modes.items():
            submodule.training = training
