"""The contract every method of the registry keeps, one parametrised suite in place of a copy in
each method's file: a method that needs a ViT refuses another backbone clearly, and one that does
not trains on a ViT; its ImageNet recipe is its paper's; a stopped run resumes to the state,
losses and masks of an uninterrupted one; its step masks follow the run's seed and the step, and
each process keeps its rows of them; its pictures show the same masks at every call; the UI gets
the matrices it declares; gradients reach what trains and nothing else.

Which methods a property applies to comes from what they declare (`backbones`, MaskedMethod,
`uses_mask_token`, `position_embedding`, `matrix_names`); what is particular to one method (its
loss against a hand computation, its own state) stays in its test_method_<name>.py. The runs are
`tests.method_runs`, each trained once a session.
"""

import dataclasses
import math
import re

import pytest
import torch

from ssl_engine.augment.presets import preset_views
from ssl_engine.checkpoint import load_checkpoint
from ssl_engine.config import BackboneConfig, ExperimentConfig, OptimConfig
from ssl_engine.errors import ConfigError
from ssl_engine.methods import METHODS, masked
from ssl_engine.models.backbones import build_backbone
from ssl_engine.models.build import build_backbone_for
from tests.helpers import assert_same_state, tiny_config
from tests.method_runs import EPOCHS, STEPS_PER_EPOCH, STOP_AT, run_config

ALL = sorted(METHODS)
VIT_ONLY = [name for name in ALL if METHODS[name].backbones is not None]
ANY_BACKBONE = [name for name in ALL if METHODS[name].backbones is None]
MASKED = [name for name in ALL if issubclass(METHODS[name], masked.MaskedMethod)]

# Values the papers (and their code) set, written down by hand for the methods listed here, which
# their ImageNet recipe must hold; views are listed one by one, as many as the preset gives at 32 px.
_NO_COLOUR = {"jitter_p": 0, "grayscale_p": 0, "blur_p": 0, "solarize_p": 0}
PAPER_RECIPES = {
    "beit": {
        "params": {"mask_ratio": 0.4, "codebook_size": 512},
        "views": [{"crop_scale_min": 0.08, "crop_scale_max": 1.0, "flip_p": 0.5, "jitter_p": 1.0, "brightness": 0.4,
                   "contrast": 0.4, "saturation": 0.4, "hue": 0.0, "grayscale_p": 0, "blur_p": 0, "solarize_p": 0}],
        # lr 1.5e-3 for a batch of 2048, the code's min_lr 1e-5
        "optim": {"name": "adamw", "lr": 1.5e-3 / 8, "weight_decay": 0.05, "momentum": 0.9, "warmup_epochs": 10.0,
                  "grad_clip": 3.0, "min_lr_ratio": 1e-5 / 1.5e-3},
    },
    # DINO's multi-crop: 2 global views (full size) and 8 local ones (16 px at 32 px)
    "dino": {"views": [{"output_size": 0}] * 2 + [{"output_size": 16}] * 8},
    "ibot": {
        "family": "hybrid", "preset": "dino",
        "params": {"out_dim": 8192, "patch_out_dim": 8192, "shared_head": True, "norm_last_layer": False,
                   "warmup_teacher_temp": 0.04, "teacher_temp": 0.07, "warmup_teacher_patch_temp": 0.04,
                   "teacher_patch_temp": 0.07, "warmup_teacher_temp_epochs": 30, "mask_probability": 0.5,
                   "mask_ratio_min": 0.1, "mask_ratio_max": 0.5, "lambda1": 1.0, "lambda2": 1.0, "student_temp": 0.1,
                   "center_momentum": 0.9, "base_momentum": 0.996, "freeze_last_layer": 1},
        "optim": {"name": "adamw", "lr": 5e-4, "weight_decay": 0.04, "warmup_epochs": 10.0, "grad_clip": 3.0},
    },
    "ijepa": {
        "params": {"num_targets": 4, "target_scale_min": 0.15, "target_scale_max": 0.2, "context_scale_min": 0.85,
                   "target_aspect_min": 0.75, "target_aspect_max": 1.5, "base_momentum": 0.996},
        "views": [{"crop_scale_min": 0.3, "crop_scale_max": 1.0, "flip_p": 0.0, **_NO_COLOUR}],
        "optim": {"name": "adamw", "lr": 1.25e-4, "weight_decay": 0.04, "warmup_epochs": 40.0},
    },
    "mae": {
        "params": {"mask_ratio": 0.75, "norm_pix_loss": True},
        "views": [{"crop_scale_min": 0.2, "crop_scale_max": 1.0, "flip_p": 0.5, **_NO_COLOUR}],
        "optim": {"name": "adamw", "lr": 1.5e-4, "weight_decay": 0.05, "warmup_epochs": 40.0},
    },
    "maskfeat": {
        "params": {"mask_ratio": 0.4, "masking": "block"},
        "views": [{"crop_scale_min": 0.5, "crop_scale_max": 1.0, "flip_p": 0.5, **_NO_COLOUR}],
        "optim": {"name": "adamw", "lr": 2e-4, "weight_decay": 0.05, "warmup_epochs": 30.0},
    },
    "simmim": {
        "params": {"mask_ratio": 0.6},
        "views": [{"crop_scale_min": 0.67, "crop_scale_max": 1.0, "flip_p": 0.5, **_NO_COLOUR}],
        "optim": {"name": "adamw", "lr": 5e-5, "weight_decay": 0.05, "warmup_epochs": 10.0, "grad_clip": 5.0},
    },
}


def assert_values(settings, expected: dict) -> None:
    """`settings` holds each value of `expected`: floats up to their last bit's rounding, the rest exactly."""
    for field_name, value in expected.items():
        actual = getattr(settings, field_name)
        assert actual == (pytest.approx(value, rel=1e-12, abs=0) if isinstance(value, float) else value), field_name


def built(folder, name, seed=0):
    """Method `name` as the Trainer builds it from `run_config` after seeding torch with `seed`
    (train.seed), untrained."""
    config = run_config(folder, name)
    torch.manual_seed(seed)
    return METHODS[name](build_backbone_for(config), config.method.params, total_steps=100)


def parts(masks) -> tuple:
    """Step or picture masks as a tuple of tensors (I-JEPA draws a context and targets)."""
    return masks if isinstance(masks, tuple) else (masks,)


def same_masks(first, second) -> bool:
    first, second = parts(first), parts(second)
    return len(first) == len(second) and all(torch.equal(a, b) for a, b in zip(first, second))


# -- backbones -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", VIT_ONLY)
def test_a_method_that_needs_a_vit_refuses_a_cnn_with_a_clear_message(tmp_path, name):
    method = METHODS[name]
    allowed = " or ".join(method.backbones)
    assert "ViT" in method.backbone_need  # the message says why
    with pytest.raises(ConfigError, match=re.escape(f"{name} {method.backbone_need}: backbone.name must be "
                                                    f"{allowed}, got small_cnn")):
        method(build_backbone("small_cnn", image_size=16), method.Params(), total_steps=10)
    # the config says so first, at the field, as the only problem
    with pytest.raises(ConfigError) as error:
        tiny_config(tmp_path, name, "backbone.name=small_cnn")
    assert error.value.problems == [f"backbone.name must be {allowed} for {name}, got 'small_cnn'"]


@pytest.mark.parametrize("name", ANY_BACKBONE)
def test_a_method_for_any_backbone_trains_on_a_vit(method_runs, name):
    seen, run_dir = method_runs.on_vit(name)
    assert seen.summary["steps"] == STEPS_PER_EPOCH and math.isfinite(seen.summary["final_loss"])
    state = load_checkpoint(run_dir)
    assert state["step"] == STEPS_PER_EPOCH and state["config"]["backbone"]["name"] == "vit_tiny"


# -- the recipe ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_the_imagenet_recipe_is_the_methods_declared_paper_recipe(name):
    method = METHODS[name]
    config = ExperimentConfig.for_method(name, 32, "imagenet")
    assert config.backbone.name == (method.backbones[0] if method.backbones else BackboneConfig().name)
    assert config.method.params == method.Params()
    assert config.augment.preset == method.augment_preset
    assert config.augment.views == preset_views(method.augment_preset, 32)
    assert config.optim == dataclasses.replace(OptimConfig(), **method.optim_defaults)

    paper = PAPER_RECIPES.get(name, {})
    assert method.family == paper.get("family", method.family)
    assert config.augment.preset == paper.get("preset", config.augment.preset)
    assert_values(config.method.params, paper.get("params", {}))
    assert_values(config.optim, paper.get("optim", {}))
    if "views" in paper:
        assert len(config.augment.views) == len(paper["views"])
        for view, expected in zip(config.augment.views, paper["views"]):
            assert_values(view, expected)


# -- resuming ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_a_stopped_run_resumes_to_the_state_losses_and_masks_of_an_uninterrupted_one(method_runs, name):
    run = method_runs.resumed(name)
    total = EPOCHS * STEPS_PER_EPOCH
    assert run.straight.summary["steps"] == run.resumed.summary["steps"] == total
    assert run.stopped.summary["steps"] == STOP_AT and run.stopped.summary["stopped_early"]
    assert math.isfinite(run.straight.summary["final_loss"]) and math.isfinite(run.resumed.summary["final_loss"])
    straight, stopped, resumed = run.straight_state(), run.stopped_state(), run.resumed_state()
    assert stopped["step"] == STOP_AT and resumed["step"] == straight["step"] == total

    # the resumed run trained only the steps after the stop, each with the uninterrupted run's loss
    assert sorted(run.stopped.losses) == list(range(1, STOP_AT + 1))
    assert sorted(run.resumed.losses) == list(range(STOP_AT + 1, total + 1))
    for part in (run.stopped, run.resumed):
        for step, loss in part.losses.items():
            assert loss == pytest.approx(run.straight.losses[step], rel=1e-6, abs=1e-9), step
    # and ends with its weights, buffers and optimiser state, bit for bit
    assert_same_state(straight["method"], resumed["method"])
    assert_same_state(straight["optimizer"], resumed["optimizer"])
    # which the steps after the stop did change (the comparison is not of the stop's state with itself)
    assert any(not torch.equal(value, stopped["method"][key]) for key, value in resumed["method"].items())

    if name in MASKED:  # the same masks at every step, before and after the stop
        assert run.straight.mask_seed == run.stopped.mask_seed == run.resumed.mask_seed
        assert sorted(run.straight.masks) == list(range(1, total + 1))
        for part in (run.stopped, run.resumed):
            assert part.masks.keys() == part.losses.keys()
            for step, masks in part.masks.items():
                assert same_masks(masks, run.straight.masks[step]), step
        assert not same_masks(run.straight.masks[1], run.straight.masks[2])  # a draw per step


# -- masks and pictures --------------------------------------------------------------------
@pytest.mark.parametrize("name", MASKED)
def test_step_masks_follow_the_runs_seed_and_the_step(tmp_path, name):
    x = torch.zeros(8, 3, 16, 16)
    method, again, other_seed = built(tmp_path, name), built(tmp_path, name), built(tmp_path, name, seed=1)
    for views in (1, 2):
        at_seven = method.step_masks(x, 7, views)
        assert same_masks(method.step_masks(x, 7, views), at_seven)
        assert not same_masks(method.step_masks(x, 8, views), at_seven)
        # a method built after the same seed (a resumed run, another process) draws the same
        # masks; after another train.seed, others
        assert same_masks(again.step_masks(x, 7, views), at_seven)
        assert not same_masks(other_seed.step_masks(x, 7, views), at_seven)


@pytest.mark.parametrize("name", MASKED)
def test_each_process_keeps_its_rows_of_every_views_masks(tmp_path, name, monkeypatch):
    """With 2 processes of 3 images, each gets its rows of each view of the masks one process
    draws for all 6 images at that step."""
    method = built(tmp_path, name)
    x = torch.zeros(6, 3, 16, 16)
    whole = {views: parts(method.step_masks(x, 4, views=views)) for views in (1, 2)}  # views x 6 rows, view by view
    for views, drawn in whole.items():
        assert all(len(part) == 6 * views for part in drawn)
    assert not all(torch.equal(part[:6], part[6:]) for part in whole[2])  # each view its own draw
    monkeypatch.setattr(masked, "world_size", lambda: 2)
    for rank in (0, 1):
        monkeypatch.setattr(masked, "rank", lambda rank=rank: rank)
        for views, drawn in whole.items():
            mine = parts(method.step_masks(x[3 * rank:3 * rank + 3], 4, views=views))
            for part, every in zip(mine, drawn, strict=True):
                rows = [every[6 * view + 3 * rank:6 * view + 3 * rank + 3] for view in range(views)]
                assert torch.equal(part, torch.cat(rows)), (views, rank)


@pytest.mark.parametrize("name", MASKED)
def test_pictures_show_the_same_masks_at_every_call_whatever_the_runs_seed(tmp_path, name):
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    method = built(tmp_path, name)
    pictures, again = method.pictures(x), method.pictures(x)
    assert pictures.keys() == again.keys()  # (MSN shows none)
    for key, picture in pictures.items():
        assert picture.shape[0] == 4 and picture.shape[1] in (1, 3) and picture.shape[2:] == (16, 16), key
        assert torch.equal(again[key], picture), key
    # the pictures' masks have a seed of their own: the same images keep their masks in any run
    assert same_masks(built(tmp_path, name, seed=1).picture_masks(x), method.picture_masks(x))


# -- what the UI and the optimiser see -----------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_the_ui_gets_the_matrices_the_method_declares(method_runs, name):
    assert method_runs.resumed(name).straight.matrix_names == set(METHODS[name].matrix_names)


@pytest.mark.parametrize("name", ALL)
def test_gradients_reach_every_trained_parameter_and_nothing_else(method_runs, name):
    """At every step: every trainable parameter gets a gradient (DDP needs each in every step) and
    is in the optimiser's groups, a frozen one (a momentum target's, a fixed position embedding, a
    mask token the method never uses) gets none, and the backbone learns from every step. On a ViT
    (every method on one here), the mask token trains only where the method puts it in place of
    patches, as it declares, and the position embedding only where it is learnt."""
    method = METHODS[name]
    watched = [method_runs.resumed(name).straight] + ([method_runs.on_vit(name)[0]] if name in ANY_BACKBONE else [])
    for seen in watched:
        assert seen.gradients
        for step, gradients in seen.gradients.items():
            trainable = {n for n, gradient in gradients.items() if gradient.trainable}
            assert all(gradients[n].present for n in trainable), step
            assert not any(gradient.present for n, gradient in gradients.items() if n not in trainable), step
            # the optimiser's groups hold every trainable parameter and no momentum target (some
            # methods also hand it the ViT's frozen mask token, which it skips without a gradient)
            assert trainable <= seen.trained and not seen.targets & (trainable | seen.trained)
            backbone = [n for n in trainable if n.startswith("backbone.")]
            assert backbone and all(gradients[n].nonzero for n in backbone), step
    on_a_vit = watched[-1]
    assert on_a_vit.mask_token_used == method.uses_mask_token  # what the method declares is what it does
    assert on_a_vit.gradients[1]["backbone.mask_token"].trainable == method.uses_mask_token
    assert on_a_vit.gradients[1]["backbone.pos_embed"].trainable == (method.position_embedding == "learnt")
