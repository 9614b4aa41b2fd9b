"""Recipes: each method's settings for a scale of images, every value with its source.

- "imagenet": the paper's ImageNet recipe, what every method declares as its defaults (its
  `Params`, `optim_defaults` and `augment_preset`).
- "small": images of 64 px and less: the method's published small-image recipe (the paper's
  CIFAR appendix where it has one, otherwise solo-learn's CIFAR configs), declared by the
  method as `small_recipe`, on top of its ImageNet recipe.
- "quick": for trying a method in a few minutes on a CPU, not for its best result: the small
  recipe, a time budget (`QUICK_COMMON`) and what the method's `quick_recipe` changes so that
  it learns within that budget, each change with the reason it was measured for.

A recipe is a tuple of `Setting`s: a config key, a value and where the value comes from. A key
is the address of one setting (`ssl_engine.addresses`): `section.field` for data, backbone, optim
and train, `method.field` for the method's own parameters, `augment.views[N].field` for view N;
or it names several views: `augment.field` for every view, `augment.global.field` /
`augment.local.field` for the global / local (multi-crop) views, and `augment.local_views` for
how many local views are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .addresses import table_path
from .errors import ConfigError, Problem

RECIPES: dict[str, str] = {
    "small": "the published small-image (CIFAR) recipe, for images of 64 px and less",
    "imagenet": "the paper's ImageNet recipe",
    "quick": "learns within minutes on a CPU: for trying a method, not for its best result",
}
SMALL_IMAGES = 64  # the largest image side the small recipe is chosen for


@dataclass(frozen=True)
class Setting:
    """One value of a recipe: the config key it sets, the value, and its source or reason."""

    key: str
    value: Any
    source: str


# every quick recipe: two minutes of training (an evaluation follows), on any device, in steps
# of 256 images: twice the steps of the CIFAR recipes' 512 in the same minutes (the rates are per
# 256 images, so they follow the batch)
QUICK_COMMON = (
    Setting("train.minutes", 2.0, "quick: two minutes of training, whatever the data set's size and the device"),
    Setting("train.batch_size", 256, "quick: a two-minute CPU run at batch 512 is under 200 steps; 256 doubles them"),
)

# SimCLR's colour distortion (strength 1: 0.8, 0.8, 0.8, 0.2) for the joint-embedding methods.
# Their papers' jitter (hue 0.1, saturation 0.2) leaves most of a view's hue as it was, and in a
# few hundred steps an invariance objective learns the hue first: after 3 minutes of Barlow
# Twins on shapes with its own jitter, a kNN tells an image's hue with 0.854 (0.804 at random
# init) and its shape with 0.265 (0.298); with SimCLR's strength the shape reaches 0.333. SimCLR's
# figure 5 and table 1 found stronger colour distortion helps self-supervised learning.
_COLOUR = "quick: SimCLR's colour strength 1 (its figure 5); with the papers' weaker jitter a short run learns hue"
QUICK_COLOUR = tuple(Setting(f"augment.{name}", value, _COLOUR)
                     for name, value in (("brightness", 0.8), ("contrast", 0.8), ("saturation", 0.8), ("hue", 0.2)))

# ViT-Tiny's width with 4 blocks and 8 px patches (16 per 32 px image): 4 to 10 times the CPU
# speed of 12 blocks at 4 px patches, where a masked method gets 1 epoch in 5 minutes
_VIT = "quick: 4 blocks of 8 px patches train 4-10x faster on a CPU than 12 blocks of 4 px patches"
QUICK_VIT = (
    Setting("backbone.name", "vit_tiny", _VIT),
    Setting("backbone.vit_depth", 4, _VIT),
    Setting("backbone.patch_size", 8, _VIT),
)

# the masked methods' rates are per 256 images for batches of 2048 to 4096 and hundreds of
# epochs (MAE's 1.5e-4 is 2.4e-3 at its batch 4096); a few hundred steps at batch 256 need about
# the rate those batches train at
QUICK_MASKED_LR = "quick: a few hundred steps at batch 256 need about the rate the papers' 2048-4096 batches train at"

# multi-crop's local views cost most of a step: two of them give a short run more steps
QUICK_LOCAL_VIEWS = Setting("augment.local_views", 2, "quick: the local views cost most of a step; 2 leave more steps")

# an EMA teacher at 0.996-0.9995 stays near its initialisation over the few hundred steps a
# quick run has; 0.99 follows the online network within about a hundred steps
QUICK_MOMENTUM = Setting("method.base_momentum", 0.99,
                         "quick: a target at 0.996 or more barely leaves its initialisation in a few hundred steps")

# the papers' LARS (trust coefficient 0.001, unclipped) instead of solo-learn's (0.02, clipped),
# which moves too little in a few hundred steps: after 1 minute on shapes (random init 0.298)
# VICReg's kNN was 0.191 with solo-learn's, 0.326 unclipped, 0.344 with the papers'; Barlow
# Twins' 0.185, 0.235 and 0.285
_LARS = "quick: after 1 minute on shapes solo-learn's LARS left VICReg at kNN 0.191 (random 0.298), the papers' 0.344"
QUICK_LARS = (
    Setting("optim.lars_eta", 0.001, _LARS),
    Setting("optim.lars_clip", False, _LARS),
)

NO_SMALL_RECIPE = "no small-image recipe is published for {} (neither in its paper nor in solo-learn's CIFAR configs)"


SOLO_LEARN = "solo-learn scripts/pretrain/cifar/{}.yaml"
"""Where solo-learn (da Costa et al., JMLR 2022) keeps its CIFAR recipes, ResNet-18 for 1000 epochs;
its learning rates are per 256 images, as ours."""


def solo_learn_lars(config: str, lr: float, weight_decay: float, result: str) -> tuple[Setting, ...]:
    """The optimiser every LARS recipe of solo-learn's CIFAR configs shares, at its rate and
    decay: LARS with eta 0.02 and LARC's clipping, no decay or adaptation on biases and norm
    layers, 10 warm-up epochs (its scheduler's default) and a cosine to 0, batch 256.
    `result` is the config's published CIFAR-10 / CIFAR-100 linear accuracy (its README)."""
    source = f"{SOLO_LEARN.format(config)}; {result}"
    return (
        Setting("optim.name", "lars", source),
        Setting("optim.lr", lr, f"{source}: optimizer.lr, per 256 images"),
        Setting("optim.weight_decay", weight_decay, f"{source}: optimizer.weight_decay"),
        Setting("optim.weight_decay_schedule", "constant", source),
        Setting("optim.lars_eta", 0.02, f"{source}: optimizer.kwargs.eta"),
        Setting("optim.lars_clip", True, f"{source}: optimizer.kwargs.clip_lr"),
        Setting("optim.decay_exclusions", "bias_and_norm", f"{source}: optimizer.kwargs.exclude_bias_n_norm"),
        Setting("optim.bias_lr_ratio", 1.0, f"{source}: one rate for every parameter"),
        Setting("optim.warmup_epochs", 10.0, "solo-learn's scheduler.warmup_epochs default (10)"),
        Setting("optim.min_lr_ratio", 0.0, "solo-learn's scheduler.min_lr default (0)"),
        Setting("train.batch_size", 256, f"{source}: optimizer.batch_size"),
    )


# solo-learn's asymmetric.yaml (BYOL, Barlow Twins, MoCo v3, DINO): BYOL's views at 32 px, no blur
SOLO_ASYMMETRIC = (
    Setting("augment.crop_scale_min", 0.08, f"{SOLO_LEARN.format('augmentations/asymmetric')}: rrc.crop_min_scale"),
    Setting("augment.blur_p", 0.0, f"{SOLO_LEARN.format('augmentations/asymmetric')}: gaussian_blur.prob 0"),
    Setting("augment.views[0].solarize_p", 0.0, f"{SOLO_LEARN.format('augmentations/asymmetric')}: first crop"),
    Setting("augment.views[1].solarize_p", 0.2, f"{SOLO_LEARN.format('augmentations/asymmetric')}: second crop"),
)


def recipe_for(image_size: int) -> str:
    """The recipe chosen for images of side `image_size`: small up to 64 px, else imagenet."""
    return "small" if image_size <= SMALL_IMAGES else "imagenet"


# each recipe sits on another: (the recipe it starts from, or None for the method's own defaults)
BASE_RECIPE = {"imagenet": None, "small": "imagenet", "quick": "small"}


def recipe_problem(recipe) -> Problem | None:
    """The problem a bad recipe name is, None for a good one."""
    return None if recipe in RECIPES else Problem("method.recipe", f"must be one of {', '.join(RECIPES)}, got {recipe!r}")


def own_settings(method, recipe: str) -> tuple[Setting, ...]:
    """What recipe `recipe` changes on the one it starts from (`BASE_RECIPE`)."""
    if recipe == "small":
        return tuple(method.small_recipe)
    return QUICK_COMMON + tuple(method.quick_recipe) if recipe == "quick" else ()


def recipe_settings(method, recipe: str) -> tuple[Setting, ...]:
    """The settings recipe `recipe` puts on method class `method`'s ImageNet recipe, in order
    (a later setting of the same key wins)."""
    problem = recipe_problem(recipe)
    if problem:
        raise ConfigError([problem])
    base = BASE_RECIPE[recipe]
    return (recipe_settings(method, base) if base else ()) + own_settings(method, recipe)


def recipe_sources(method, recipe: str) -> dict[str, Setting]:
    """Each key the recipe sets, with the setting that decides it (the last of that key)."""
    return {setting.key: setting for setting in recipe_settings(method, recipe)}


def apply_settings(table: dict, settings: tuple[Setting, ...], image_size: int) -> None:
    """Write `settings` into config table `table` (as `ExperimentConfig.to_dict` gives it).
    A view is global when it has the image's own size (output_size 0 or `image_size`)."""
    for setting in settings:
        path = table_path(setting.key)
        if path[0] != "augment":
            node = table
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = setting.value
            continue
        views = table["augment"]["views"]
        is_global = global_views(views, image_size)
        if path[1:] == ("local_views",):
            local = [i for i, g in enumerate(is_global) if not g]
            dropped = set(local[int(setting.value):])
            table["augment"]["views"] = [view for i, view in enumerate(views) if i not in dropped]
            continue
        if len(path) == 2:
            chosen = range(len(views))
        elif len(path) == 3 and path[1] in ("global", "local"):
            chosen = [i for i, g in enumerate(is_global) if g == (path[1] == "global")]
        elif len(path) == 4 and path[1] == "views" and isinstance(path[2], int):
            chosen = [path[2]] if path[2] < len(views) else []
        else:
            raise ValueError(f"recipe key {setting.key} is not a view key")
        for i in chosen:
            views[i][path[-1]] = setting.value


def global_views(views: list[dict], image_size: int) -> list[bool]:
    """Which views of a config table are global (multi-crop's others are local): those at the
    image's own size (output_size 0 or `image_size`)."""
    return [view.get("output_size", 0) in (0, image_size) for view in views]


def view_scope(key: str) -> str:
    """Which views a view key reaches, in words: 'every view', 'local views', 'view 2'."""
    path = table_path(key)
    if len(path) == 3 and path[1] in ("global", "local"):
        return f"{path[1]} views"
    if len(path) == 4 and path[1] == "views":
        return f"view {path[2] + 1}"
    return "every view"


def recipe_keys(method, recipe: str) -> set[str]:
    """The plain (non-view) keys a recipe sets outside the method, optimiser and views, which
    follow the recipe as a whole: e.g. train.batch_size, train.minutes, backbone.vit_depth."""
    return {s.key for s in recipe_settings(method, recipe)
            if table_path(s.key)[0] not in ("method", "optim", "augment")}
