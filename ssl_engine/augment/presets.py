"""The view recipes of the papers, by name.

- "simclr" (Chen et al., 2020, appendix A): two identical views; crop 0.08-1, flip 0.5,
  colour jitter p 0.8 with strength s = 1 (brightness, contrast, saturation 0.8 s, hue 0.2 s),
  greyscale 0.2, Gaussian blur p 0.5 with sigma 0.1-2.0.
- "moco_v2" (Chen et al., 2020, "Improved Baselines with Momentum Contrastive Learning"):
  two identical views; crop 0.2-1, jitter p 0.8 (0.4, 0.4, 0.4, 0.1), greyscale 0.2,
  blur p 0.5 (sigma 0.1-2.0), flip 0.5.
- "byol" (Grill et al., 2020, appendix B, table 6): two asymmetric views, both crop 0.08-1,
  flip 0.5, jitter p 0.8 (0.4, 0.4, 0.2, 0.1), greyscale 0.2, sigma 0.1-2.0; view 1 always
  blurred and never solarised, view 2 blurred with p 0.1 and solarised with p 0.2.
  Barlow Twins (Zbontar et al., 2021) and VICReg (Bardes et al., 2022) use BYOL's recipe:
  "barlow_twins" and "vicreg" are aliases.
- "simsiam" (Chen & He, 2021): MoCo v2's recipe.
- "swav" (Caron et al., 2020, multi-crop): 2 global views, crop 0.14-1, and 6 local views at
  96/224 of the image side, crop 0.05-0.14; SimCLR's colour distortion (s = 1), blur p 0.5.
- "dino" (Caron et al., 2021): 2 global views, crop 0.4-1 (BYOL's asymmetric blur and
  solarisation), and 8 local views at 96/224 of the side, crop 0.05-0.4, blur p 0.5.
  Local views are rounded to a multiple of 8 px (16 px for 32 px images), so ViT patches fit.
- "mae" (He et al., 2022, appendix A.1 and its code): one view, crop 0.2-1 (aspect 3/4-4/3),
  flip 0.5; no colour jitter, greyscale, blur or solarisation (masking is the augmentation).
- "simmim" (Xie et al., 2022, section 4.1): one view, crop 0.67-1 with aspect 3/4-4/3, flip 0.5;
  nothing else.
- "maskfeat" (Wei et al., 2022; SlowFast's in1k_VIT_B_MaskFeat_PT config): one view, crop
  0.5-1 (aspect 3/4-4/3), flip 0.5; nothing else.
- "ijepa" (Assran et al., 2023; the I-JEPA code's ImageNet configs): one view, crop 0.3-1 only:
  no flip, no colour distortion, no blur.
- "beit" (Bao et al., 2022, appendix table; microsoft/unilm beit/datasets.py as first released):
  one view, colour jitter always applied (brightness, contrast, saturation 0.4, no hue), flip
  0.5, crop 0.08-1 (aspect 3/4-4/3); no greyscale, blur or solarisation.

Small images (image_size <= 32, CIFAR-sized): every preset turns the blur off (blur_p = 0),
as SimCLR does for CIFAR-10 (appendix B.9), and as the common CIFAR reproductions of the
other methods do: at 32 px the kernel is 3 px and a sigma up to 2 px wipes out most of what
the network could learn from. Everything else is kept, including BYOL's solarisation.
(SimCLR's CIFAR-10 runs also halve the jitter strength, s = 0.5; this preset keeps s = 1.)
"""

from __future__ import annotations

import dataclasses

from ..errors import ConfigError
from .views import ViewConfig

PRESETS: dict[str, str] = {
    "simclr": "SimCLR: two identical views, strong colour jitter (s = 1), blur p 0.5",
    "moco_v2": "MoCo v2: two identical views, crop 0.2-1, jitter (0.4, 0.4, 0.4, 0.1), blur p 0.5",
    "byol": "BYOL: asymmetric views, blur p 1.0 / 0.1, solarise p 0 / 0.2",
    "barlow_twins": "Barlow Twins: BYOL's views",
    "vicreg": "VICReg: BYOL's views",
    "simsiam": "SimSiam: MoCo v2's views",
    "swav": "SwAV multi-crop: 2 global views (crop 0.14-1) + 6 local views (crop 0.05-0.14)",
    "dino": "DINO multi-crop: 2 global views (crop 0.4-1, BYOL's asymmetry) + 8 local views (crop 0.05-0.4)",
    "mae": "MAE: one view, crop 0.2-1 and flip, no colour changes",
    "simmim": "SimMIM: one view, crop 0.67-1 and flip, no colour changes",
    "maskfeat": "MaskFeat: one view, crop 0.5-1 and flip, no colour changes",
    "ijepa": "I-JEPA: one view, crop 0.3-1 only (no flip, no colour changes)",
    "beit": "BEiT: one view, crop 0.08-1, flip, colour jitter 0.4 (always)",
}

SMALL_IMAGE_SIZE = 32  # at or below this side, presets drop the blur (papers' CIFAR settings)

_SIMCLR = ViewConfig(crop_scale_min=0.08, crop_scale_max=1.0, flip_p=0.5, jitter_p=0.8,
                     brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2, grayscale_p=0.2,
                     blur_p=0.5, blur_sigma_min=0.1, blur_sigma_max=2.0, solarize_p=0.0)
_MOCO_V2 = ViewConfig(crop_scale_min=0.2, crop_scale_max=1.0, flip_p=0.5, jitter_p=0.8,
                      brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, grayscale_p=0.2,
                      blur_p=0.5, blur_sigma_min=0.1, blur_sigma_max=2.0, solarize_p=0.0)
_BYOL = ViewConfig(crop_scale_min=0.08, crop_scale_max=1.0, flip_p=0.5, jitter_p=0.8,
                   brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, grayscale_p=0.2,
                   blur_p=1.0, blur_sigma_min=0.1, blur_sigma_max=2.0, solarize_p=0.0)

_RECIPES: dict[str, list[ViewConfig]] = {
    "simclr": [_SIMCLR, _SIMCLR],
    "moco_v2": [_MOCO_V2, _MOCO_V2],
    "byol": [_BYOL, dataclasses.replace(_BYOL, blur_p=0.1, solarize_p=0.2)],
    "simsiam": [_MOCO_V2, _MOCO_V2],
}
_RECIPES["barlow_twins"] = _RECIPES["byol"]
_RECIPES["vicreg"] = _RECIPES["byol"]
_LOCAL = -1  # placeholder size of a local view, set from the image size by preset_views
_SWAV_GLOBAL = dataclasses.replace(_SIMCLR, crop_scale_min=0.14)
_RECIPES["swav"] = [_SWAV_GLOBAL] * 2 + [
    dataclasses.replace(_SIMCLR, crop_scale_min=0.05, crop_scale_max=0.14, output_size=_LOCAL)] * 6
_DINO_GLOBAL = dataclasses.replace(_BYOL, crop_scale_min=0.4)
_RECIPES["dino"] = [_DINO_GLOBAL, dataclasses.replace(_DINO_GLOBAL, blur_p=0.1, solarize_p=0.2)] + [
    dataclasses.replace(_BYOL, crop_scale_min=0.05, crop_scale_max=0.4, blur_p=0.5, output_size=_LOCAL)] * 8

# Masked image modelling: one view, only cropped and flipped (every colour op off)
_CROP_AND_FLIP = ViewConfig(crop_scale_min=0.2, crop_scale_max=1.0, flip_p=0.5, jitter_p=0.0, brightness=0.0,
                            contrast=0.0, saturation=0.0, hue=0.0, grayscale_p=0.0, blur_p=0.0, solarize_p=0.0)
_RECIPES["mae"] = [_CROP_AND_FLIP]
_RECIPES["simmim"] = [dataclasses.replace(_CROP_AND_FLIP, crop_scale_min=0.67)]
_RECIPES["maskfeat"] = [dataclasses.replace(_CROP_AND_FLIP, crop_scale_min=0.5)]
_RECIPES["ijepa"] = [dataclasses.replace(_CROP_AND_FLIP, crop_scale_min=0.3, flip_p=0.0)]
_RECIPES["beit"] = [dataclasses.replace(_CROP_AND_FLIP, crop_scale_min=0.08, jitter_p=1.0, brightness=0.4,
                                        contrast=0.4, saturation=0.4)]


def local_view_size(image_size: int) -> int:
    """Multi-crop's local side: 96/224 of the image side (the papers' 96 px at 224), rounded to a
    multiple of 8 px and at least 8."""
    return max(8, round(image_size * 96 / 224 / 8) * 8)


def preset_views(name: str, image_size: int) -> list[ViewConfig]:
    """The views of preset `name` (a key of PRESETS) for images of side `image_size`.

    Fresh copies: changing them does not change the preset.
    """
    if name not in _RECIPES:
        raise ConfigError([f"augment preset must be one of {', '.join(PRESETS)}, got {name!r}"])
    views = [dataclasses.replace(view, output_size=local_view_size(image_size) if view.output_size == _LOCAL
                                 else view.output_size) for view in _RECIPES[name]]
    if image_size <= SMALL_IMAGE_SIZE:
        views = [dataclasses.replace(view, blur_p=0.0) for view in views]
    return views


def size_rule_notes(name: str, image_size: int) -> dict[str, str]:
    """What the size rule turned off in preset `name` at `image_size`, per view field, in words
    (empty when nothing was): the field says so where the user sees it."""
    if image_size > SMALL_IMAGE_SIZE or name not in _RECIPES:
        return {}
    used = list(dict.fromkeys(view.blur_p for view in _RECIPES[name] if view.blur_p > 0))  # in view order
    if not used:
        return {}
    return {"blur_p": f"off at {image_size} px: at {SMALL_IMAGE_SIZE} px and below the blur's 3 px kernel wipes out "
                      f"most of what the network can learn from, so the papers' CIFAR settings drop it (the "
                      f"preset uses p {' / '.join(f'{p:g}' for p in used)} on larger images); you can set it again"}
