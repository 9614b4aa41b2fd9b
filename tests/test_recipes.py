"""Recipes per scale: every method's small, imagenet and quick settings build a valid config,
each value names its source, and switching recipe or method brings the recipe's values along
and takes the old recipe's away."""

import pytest

from ssl_engine.addresses import value_at
from ssl_engine.cli import main
from ssl_engine.config import ExperimentConfig
from ssl_engine.errors import ConfigError
from ssl_engine.methods import METHODS
from ssl_engine.recipes import QUICK_COMMON, RECIPES, apply_settings, recipe_for, recipe_settings, view_scope


def _value_at(config: ExperimentConfig, key: str):
    return value_at(config.to_dict(), key)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_recipe_of_every_method_is_valid_and_sourced(name):
    for recipe in RECIPES:
        config = ExperimentConfig.for_method(name, 32, recipe).validate()
        assert config.method.recipe == recipe
        for setting in recipe_settings(METHODS[name], recipe):
            assert len(setting.source) > 10, f"{name} {recipe} {setting.key} has no source"
        # what the recipe sets is what the config holds (the last setting of a key wins)
        last = {s.key: s.value for s in recipe_settings(METHODS[name], recipe)}
        for key, value in last.items():
            if not key.startswith("augment."):
                assert _value_at(config, key) == pytest.approx(value) if isinstance(value, float) \
                    else _value_at(config, key) == value, f"{name} {recipe} {key}"
        # a saved file reads back to the same config
        assert ExperimentConfig.from_dict(config.to_dict()) == config


def test_small_recipes_differ_from_imagenet_where_a_method_declares_one():
    declared = [name for name, cls in METHODS.items() if cls.small_recipe]
    assert len(declared) >= 10
    for name in declared:
        assert ExperimentConfig.for_method(name, 32, "small") != ExperimentConfig.for_method(name, 32, "imagenet")


def test_the_recipe_follows_the_image_size_when_not_given():
    assert recipe_for(32) == recipe_for(64) == "small" and recipe_for(65) == recipe_for(224) == "imagenet"
    assert ExperimentConfig.for_method("byol", 32).method.recipe == "small"
    assert ExperimentConfig.from_dict({"data": {"image_size": 96}}).method.recipe == "imagenet"
    assert ExperimentConfig.from_dict({"method": {"recipe": "quick"}, "data": {"image_size": 96}}).method.recipe == "quick"


def test_a_bad_recipe_is_one_clear_problem():
    with pytest.raises(ConfigError) as error:
        ExperimentConfig.from_dict({"method": {"name": "byol", "recipe": "cifar"}})
    assert error.value.problems == ["method.recipe must be one of small, imagenet, quick, got 'cifar'"]
    assert error.value.problems == [("method.recipe", "must be one of small, imagenet, quick, got 'cifar'")]
    with pytest.raises(ConfigError):
        ExperimentConfig.for_method("byol").with_overrides(["method.recipe=fast"])


def test_switching_recipe_brings_its_values_and_takes_the_old_ones_away():
    quick = ExperimentConfig.for_method("mae", 32, "quick")
    assert quick.train.minutes == pytest.approx(QUICK_COMMON[0].value)
    user = quick.with_overrides(["train.seed=7", "data.source=digits"])
    small = user.with_overrides(["method.recipe=small"])
    assert small.method.recipe == "small"
    assert small.train.minutes == pytest.approx(0.0)  # the budget was the quick recipe's
    assert small.backbone.vit_depth == ExperimentConfig.for_method("mae", 32, "small").backbone.vit_depth
    assert (small.train.seed, small.data.source) == (7, "digits")  # the user's own settings stay


def test_switching_method_keeps_the_recipe_and_gives_the_new_methods_backbone():
    mae = ExperimentConfig.for_method("mae", 32, "quick")
    vicreg = mae.with_overrides(["method.name=vicreg"])
    assert vicreg.method.recipe == "quick"
    assert vicreg == ExperimentConfig.for_method("vicreg", 32, "quick")


def test_view_keys_reach_the_views_they_name():
    table = ExperimentConfig.for_method("dino", 32, "imagenet").to_dict()
    from ssl_engine.recipes import Setting

    apply_settings(table, (Setting("augment.local_views", 2, "test"), Setting("augment.global.hue", 0.3, "test"),
                           Setting("augment.local.hue", 0.05, "test"), Setting("augment.views[1].solarize_p", 0.5, "t"),
                           Setting("augment.views.2.blur_p", 0.25, "the older spelling of view 3's address")),
                   32)
    views = table["augment"]["views"]
    assert len(views) == 4
    assert [v["hue"] for v in views] == pytest.approx([0.3, 0.3, 0.05, 0.05])
    assert views[1]["solarize_p"] == pytest.approx(0.5)
    assert views[2]["blur_p"] == pytest.approx(0.25)
    assert [view_scope(key) for key in ("augment.hue", "augment.local.hue", "augment.views[1].hue")] == \
        ["every view", "local views", "view 2"]


def test_the_command_line_takes_a_recipe_and_lists_all_three(capsys, tmp_path):
    from ssl_engine.cli import build_parser, experiment_config

    args = build_parser().parse_args(["train", "--method", "byol", "--recipe", "quick"])
    assert experiment_config(args).method.recipe == "quick"
    args = build_parser().parse_args(["train", "--method", "byol", "--set", "data.image_size=96"])
    assert experiment_config(args).method.recipe == "imagenet"
    path = tmp_path / "x.toml"
    ExperimentConfig.for_method("byol", 32, "small").save(path)
    args = build_parser().parse_args(["train", "--config", str(path), "--recipe", "quick"])
    assert experiment_config(args).train.minutes > 0
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    starts = sorted(out.index(f"\n  {name} ") for name in METHODS)
    for name in METHODS:
        start = out.index(f"\n  {name} ")
        end = next((s for s in starts if s > start), len(out))
        for recipe in RECIPES:
            assert f"        {recipe}:" in out[start:end], f"{name} does not list its {recipe} recipe"
