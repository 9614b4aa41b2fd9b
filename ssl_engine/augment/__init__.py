"""Self-supervised views, computed on whole batches on the device with per-sample randomness.

`ViewAugmenter(preset_views("simclr", 32), output_size=32)(images, generator)` gives one
augmented batch per view; `ops` holds the batched operations (SimCLR, Chen et al., 2020;
BYOL, Grill et al., 2020) and `presets` the papers' recipes.
"""

from .presets import PRESETS, preset_views
from .views import ViewAugmenter, ViewConfig, ViewParams, apply_view, check_view, draw_view_params

__all__ = ["PRESETS", "ViewAugmenter", "ViewConfig", "ViewParams", "apply_view", "check_view",
           "draw_view_params", "preset_views"]
