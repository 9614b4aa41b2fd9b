"""Experiment config: paper defaults, exact TOML round trip, overrides, validation messages, and
the one address of every setting (`method.temperature` in messages, [method.params] in TOML)."""

import dataclasses
import tomllib

import pytest

from ssl_engine.addresses import address_of, table_path, value_at
from ssl_engine.augment.presets import preset_views
from ssl_engine.config import ExperimentConfig, parse_assignments, table_problems
from ssl_engine.errors import ConfigError, Problem
from ssl_engine.methods import METHODS
from ssl_engine.params import describe, spec_of


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_recipe_is_valid_and_round_trips_exactly(tmp_path, name):
    config = ExperimentConfig.for_method(name)
    assert config.problems() == []
    path = tmp_path / "experiment.toml"
    config.save(path)
    loaded = ExperimentConfig.load(path)
    assert loaded == config
    assert type(loaded.method.params) is METHODS[name].Params
    # saving the loaded config writes the same bytes
    path2 = tmp_path / "again.toml"
    loaded.save(path2)
    assert path2.read_text() == path.read_text()


def test_round_trip_keeps_non_default_values(tmp_path):
    config = ExperimentConfig.for_method("vicreg").with_overrides(
        ["optim.lr=0.123456789", "method.cov_coeff=0.5", "augment.views.0.blur_p=0.3",
         "data.source=folder:/tmp/some images", "train.seed=7"])
    config.save(tmp_path / "c.toml")
    loaded = ExperimentConfig.load(tmp_path / "c.toml")
    assert loaded == config
    assert loaded.optim.lr == 0.123456789
    assert loaded.method.params.cov_coeff == 0.5
    assert loaded.data.source == "folder:/tmp/some images"


def test_partial_file_starts_from_the_methods_paper_recipe(tmp_path):
    path = tmp_path / "partial.toml"
    path.write_text('[method]\nname = "barlow_twins"\n[method.params]\nlambd = 0.01\n[train]\nepochs = 3\n')
    config = ExperimentConfig.load(path)
    assert config.method.params.lambd == pytest.approx(0.01)
    # no recipe named: 32 px images take the small one (solo-learn's 2048-wide projector)
    assert config.method.recipe == "small" and config.method.params.projection_dim == 2048
    assert config.optim.name == "lars"
    assert config.train.epochs == 3
    path.write_text('[method]\nname = "barlow_twins"\nrecipe = "imagenet"\n[method.params]\nlambd = 0.01\n')
    config = ExperimentConfig.load(path)
    assert config.method.params.lambd == pytest.approx(0.01)
    assert config.method.params.projection_dim == 8192  # the paper's default stays
    assert config.augment.views == preset_views("barlow_twins", 32)


def test_methods_carry_their_papers_recipes():
    assert ExperimentConfig.for_method("moco_v2").optim.name == "sgd"
    assert ExperimentConfig.for_method("barlow_twins").optim.name == "lars"
    byol = ExperimentConfig.for_method("byol").augment.views
    assert byol[0].blur_p != byol[1].blur_p or byol[0].solarize_p != byol[1].solarize_p
    simclr = ExperimentConfig.for_method("simclr").augment.views
    assert simclr[0] == simclr[1]


def test_methods_clip_and_decay_as_their_code_does():
    optim = {name: ExperimentConfig.for_method(name, 32, "imagenet").optim for name in METHODS}
    # DINO's and iBOT's clip_gradients clips each parameter; MSN, BEiT, SimMIM and MaskFeat the global norm
    assert {n for n, o in optim.items() if o.grad_clip_mode == "per_parameter"} == {"dino", "ibot"}
    assert {n for n, o in optim.items() if o.grad_clip > 0} == {"dino", "ibot", "msn", "beit", "simmim", "maskfeat"}
    # SwAV's LARC, and the plain optimisers of MoCo v2, MoCo v3 (AdamW), SimSiam, DeepCluster and SeLa,
    # decay every parameter; the others leave biases and norm layers out
    assert {n for n, o in optim.items() if o.decay_exclusions == "none"} == \
        {"swav", "moco_v2", "moco_v3", "simsiam", "deepcluster", "sela"}
    # learning-rate floors: Barlow Twins' and VICReg's end_lr = base_lr * 0.001, DINO's min_lr 1e-6 of 5e-4
    assert optim["barlow_twins"].min_lr_ratio == pytest.approx(0.001) == optim["vicreg"].min_lr_ratio
    assert optim["dino"].min_lr_ratio == pytest.approx(1e-6 / 5e-4) == optim["ibot"].min_lr_ratio


@pytest.mark.parametrize("assignment, value", [("optim.grad_clip_mode=per_parameter", "per_parameter"),
                                               ("optim.decay_exclusions=none", "none")])
def test_recipe_choices_are_set_saved_and_checked_like_other_fields(tmp_path, assignment, value):
    key = assignment.split("=")[0].split(".")[1]
    config = ExperimentConfig.for_method("simclr").with_overrides([assignment]).validate()
    assert getattr(config.optim, key) == value
    config.save(tmp_path / "c.toml")
    assert getattr(ExperimentConfig.load(tmp_path / "c.toml").optim, key) == value
    with pytest.raises(ConfigError) as error:
        ExperimentConfig.for_method("simclr").with_overrides([f"optim.{key}=sometimes"]).validate()
    assert error.value.problems == [f"optim.{key} must be one of "
                                    f"{', '.join(spec_of(next(f for f in dataclasses.fields(config.optim) if f.name == key)).choices)}"
                                    f", got 'sometimes'"]


def test_switching_method_switches_recipe_and_keeps_data():
    config = ExperimentConfig.for_method("simclr").with_overrides(["data.source=digits", "method.name=vicreg",
                                                                   "method.sim_coeff=10"])
    assert config.method.name == "vicreg"
    assert config.method.params.sim_coeff == 10
    assert config.optim.lr == ExperimentConfig.for_method("vicreg").optim.lr
    assert config.data.source == "digits"


@pytest.mark.parametrize("assignment, message", [
    ("optim.lr=-1", "optim.lr must be > 0, got -1"),
    ("train.batch_size=1", "train.batch_size must be >= 2, got 1"),
    ("optim.name=adam", "optim.name must be one of sgd, adamw, lars, got 'adam'"),
    ("method.temperature=0", "method.temperature must be > 0, got 0"),
    ("augment.views.0.flip_p=1.5", "augment.views[0].flip_p must be <= 1, got 1.5"),
    ("data.source=imagenet", "data.source must be one of digits, shapes, cifar10, cifar100, stl10 or folder:PATH"),
    ("backbone.name=vgg", "backbone.name must be one of"),
    ("train.device=tpu", "train.device must be auto, cpu, cuda, cuda:N or mps, got 'tpu'"),
])
def test_validation_gives_one_clear_line_per_field(assignment, message):
    key, _, value = assignment.partition("=")
    if key.startswith("augment.views.0."):
        config = ExperimentConfig.for_method("simclr")
        views = list(config.augment.views)
        views[0] = dataclasses.replace(views[0], flip_p=float(value))
        config = dataclasses.replace(config, augment=dataclasses.replace(config.augment, views=views))
        problems = config.problems()
    else:
        try:
            problems = ExperimentConfig.for_method("simclr").with_overrides([assignment]).problems()
        except ConfigError as error:
            problems = error.problems
    assert len(problems) == 1, problems
    assert str(problems[0]).startswith(message)
    # the problem is at the address it names, the one the assignment used
    assert problems[0].address == address_of(table_path(key)) and message.startswith(problems[0].address + " ")


def test_all_problems_are_reported_together():
    config = ExperimentConfig.for_method("simclr").with_overrides(["optim.lr=-1", "train.epochs=0"])
    with pytest.raises(ConfigError) as error:
        config.validate()
    assert error.value.problems == ["optim.lr must be > 0, got -1", "train.epochs must be >= 1, got 0"]
    assert error.value.problems == [("optim.lr", "must be > 0, got -1"), ("train.epochs", "must be >= 1, got 0")]
    assert str(error.value) == "optim.lr must be > 0, got -1; train.epochs must be >= 1, got 0"


def test_unknown_keys_are_named_not_ignored(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text('[optim]\nlearning_rate = 0.1\n[method.params]\ntemprature = 0.2\n[trian]\nepochs = 1\n')
    with pytest.raises(ConfigError) as error:
        ExperimentConfig.load(path)
    text = str(error.value)
    assert "optim.learning_rate is not a known setting" in text
    assert "method.temprature is not a known setting" in text
    assert "trian is not a known section" in text


def test_wrong_types_are_reported(tmp_path):
    path = tmp_path / "types.toml"
    path.write_text('[optim]\nlr = "fast"\n[train]\nepochs = 2.5\n')
    with pytest.raises(ConfigError) as error:
        ExperimentConfig.load(path)
    assert error.value.problems == ["optim.lr must be a number, got 'fast'",
                                    "train.epochs must be an integer, got 2.5"]
    assert [problem.address for problem in error.value.problems] == ["optim.lr", "train.epochs"]


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        ExperimentConfig.load(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[optim\nlr = ")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        ExperimentConfig.load(bad)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_hyperparameter_declares_default_range_and_help(name):
    params = METHODS[name].Params
    for field in dataclasses.fields(params):
        spec = spec_of(field)
        assert spec.help, f"{name}.{field.name} has no help"
        if field.type in ("int", "float", int, float):
            assert spec.range_text(), f"{name}.{field.name} has no range"
    assert [row[0] for row in describe(params)] == [f.name for f in dataclasses.fields(params)]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_setting_has_one_address_and_its_toml_path_leads_back_to_it(tmp_path, name):
    """Each hyper() setting of the method (and of every section and view): its address is
    section.field (method.FIELD for the method's own), its table path is where the saved TOML
    holds its value, and that path gives the address back."""
    config = ExperimentConfig.for_method(name)
    config.save(tmp_path / "c.toml")
    saved = tomllib.loads((tmp_path / "c.toml").read_text())
    settings = [(f"method.{f.name}", ("method", "params", f.name), getattr(config.method.params, f.name))
                for f in dataclasses.fields(METHODS[name].Params)]
    settings += [(f"{section}.{f.name}", (section, f.name), getattr(getattr(config, section), f.name))
                 for section in ("data", "backbone", "optim", "train") for f in dataclasses.fields(getattr(config, section))]
    settings += [("method.name", ("method", "name"), name), ("method.recipe", ("method", "recipe"), config.method.recipe),
                 ("augment.preset", ("augment", "preset"), config.augment.preset)]
    settings += [(f"augment.views[{i}].{f.name}", ("augment", "views", i, f.name), getattr(view, f.name))
                 for i, view in enumerate(config.augment.views) for f in dataclasses.fields(view)]
    for address, path, value in settings:
        assert table_path(address) == path, address
        assert address_of(path) == address, path
        assert value_at(saved, address) == value, address
    # the spellings the command line also reads lead to the same address
    assert address_of(table_path("method.params.temperature")) == "method.temperature"
    assert address_of(table_path("augment.views.1.blur_p")) == "augment.views[1].blur_p"


def test_problems_are_address_and_message_pairs_and_read_as_one_line():
    table = ExperimentConfig.for_method("simclr").to_dict()
    table["optim"]["lr"] = "abc"                      # a wrong type: found while reading
    table["method"]["params"]["temperature"] = 0      # out of range: found by the checks
    table["augment"]["views"][1]["hue"] = 0.9
    problems = table_problems(table)
    assert problems == [("optim.lr", "must be a number, got 'abc'"),
                        ("method.temperature", "must be > 0, got 0"),
                        ("augment.views[1].hue", "must be <= 0.5, got 0.9")]
    assert all(isinstance(problem, Problem) for problem in problems)
    assert [str(problem) for problem in problems] == ["optim.lr must be a number, got 'abc'",
                                                      "method.temperature must be > 0, got 0",
                                                      "augment.views[1].hue must be <= 0.5, got 0.9"]
    # each address leads to the value the problem is about
    assert [value_at(table, problem.address) for problem in problems] == ["abc", 0, 0.9]
    # a problem of the file as a whole has no address and reads as its message
    assert str(Problem("", "config file x.toml does not exist")) == "config file x.toml does not exist"
    assert ConfigError(["a plain line"]).problems == [Problem("", "a plain line")]


def test_typed_values_are_set_by_address_and_checked_as_a_file_is():
    config = ExperimentConfig.for_method("simclr")
    typed = config.with_values({"train.epochs": 3, "method.temperature": 0.2, "augment.views[1].blur_p": 0.25,
                                "data.source": "folder:/tmp/a b", "train.linear_probe": False})
    assert (typed.train.epochs, typed.method.params.temperature, typed.data.source) == (3, 0.2, "folder:/tmp/a b")
    assert typed.augment.views[1].blur_p == pytest.approx(0.25) and typed.train.linear_probe is False
    assert typed == config.with_overrides(["train.epochs=3", "method.temperature=0.2", "augment.views.1.blur_p=0.25",
                                           "data.source=folder:/tmp/a b", "train.linear_probe=false"])
    with pytest.raises(ConfigError) as error:
        config.with_values([("optim.lr", "fast"), ("train.epochs", 2.5), ("method.temprature", 1.0)])
    assert error.value.lines == ["optim.lr must be a number, got 'fast'", "train.epochs must be an integer, got 2.5",
                                 "method.temprature is not a known setting (known: temperature, projection_dim, hidden_dim, negatives)"]
    assert parse_assignments(["method.params.temperature=0.2", "augment.views.0.blur_p=0", "train.device=cpu"]) == \
        [("method.temperature", 0.2), ("augment.views[0].blur_p", 0), ("train.device", "cpu")]
