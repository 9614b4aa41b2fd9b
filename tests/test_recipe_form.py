"""The set-up's recipe choice, driven as a user drives it: the window opens on a quick run,
switching recipe brings its values into the forms with their sources, and switching method
keeps the recipe and gives the method its own backbone."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

from app.experiment_model import FIRST_EXPERIMENT, ExperimentModel  # noqa: E402
from app.widgets.setup_panel import SetupPanel  # noqa: E402
from ssl_engine.config import ExperimentConfig  # noqa: E402
from ssl_engine.methods import METHODS  # noqa: E402
from ssl_engine.recipes import recipe_sources  # noqa: E402


def panel(qtbot, config=None) -> SetupPanel:
    widget = SetupPanel(ExperimentModel(config))
    qtbot.addWidget(widget)
    widget.show()
    return widget


def pick(combo, data) -> None:
    combo.setCurrentIndex(combo.findData(data))
    combo.activated.emit(combo.currentIndex())


def test_the_first_experiment_is_a_quick_run_and_says_so(qtbot):
    setup = panel(qtbot)
    assert (setup.model.value("method.name"), setup.model.recipe) == FIRST_EXPERIMENT
    assert setup.recipe.currentData() == "quick"
    assert "minutes" in setup.recipe_note.text()
    minutes = setup.train_form.editors["minutes"]
    assert float(minutes.text()) > 0
    assert "quick recipe: 2.0" in minutes.toolTip()


def test_picking_a_recipe_brings_its_values_and_their_sources(qtbot):
    setup = panel(qtbot)
    pick(setup.recipe, "small")
    model = setup.model
    assert model.config.method.recipe == "small"
    assert model.config == ExperimentConfig.for_method("simclr", 32, "small")
    assert float(setup.train_form.editors["minutes"].text()) == pytest.approx(0.0)  # the quick budget is gone
    sources = recipe_sources(METHODS["simclr"], "small")
    optim_keys = [key.split(".")[1] for key in sources if key.startswith("optim.")]
    assert optim_keys, "SimCLR's small recipe sets its optimiser"
    for name in optim_keys:
        assert sources[f"optim.{name}"].source in setup.optim_form.editors[name].toolTip()
    pick(setup.recipe, "imagenet")
    assert "small recipe is the usual one for 32 px" in setup.recipe_note.text()


def test_switching_method_keeps_the_recipe_and_the_methods_own_backbone(qtbot):
    setup = panel(qtbot)
    setup.method.setCurrentIndex(setup.method.findData("mae"))
    assert setup.model.config.backbone.name == "vit_tiny"
    assert setup.model.recipe == "quick"
    setup.method.setCurrentIndex(setup.method.findData("vicreg"))
    config = setup.model.config
    assert config.backbone.name == "small_cnn"  # MAE's ViT was MAE's choice, not the user's
    assert config == ExperimentConfig.for_method("vicreg", 32, "quick")
    assert setup.backbone_form.editors["name"].currentData() == "small_cnn"


def test_a_users_edit_elsewhere_survives_a_recipe_switch(qtbot):
    setup = panel(qtbot)
    seed = setup.train_form.editors["seed"]
    seed.selectAll()
    qtbot.keyClicks(seed, "5")
    pick(setup.recipe, "small")
    assert setup.model.config.train.seed == 5
    assert seed.text() == "5"


def test_the_form_and_the_command_line_let_untouched_views_follow_the_image_size_alike(qtbot):
    base = ExperimentConfig.for_method("byol", 32, "imagenet")   # blur off at 32 px, on above
    model = ExperimentModel(base)
    model.set_value("data.image_size", 96)
    from_cli = base.with_overrides(["data.image_size=96"])
    assert model.config.augment.views == from_cli.augment.views == base.recipe_views(96)
    assert [view.blur_p for view in from_cli.augment.views] == [1.0, 0.1] != [v.blur_p for v in base.augment.views]
    for size in (600, 4, True):   # sizes the data cannot have leave the views as they were
        model.set_value("data.image_size", size)
        assert model.config is None
        assert [view["blur_p"] for view in model._table["augment"]["views"]] == [1.0, 0.1]


def test_a_method_parameters_problem_is_marked_at_the_field_of_its_address(qtbot):
    setup = panel(qtbot)
    form = setup.method_form
    editor = form.editors["temperature"]
    assert form.address("temperature") == editor.objectName() == "method.temperature"
    editor.selectAll()
    qtbot.keyClicks(editor, "0")
    assert setup.model.value("method.temperature") == 0  # kept as typed, in [method.params]
    assert setup.model.table["method"]["params"]["temperature"] == 0
    problem = setup.model.problem_for("method.temperature")
    assert problem == ("method.temperature", "must be > 0, got 0")
    assert form.problem_labels["temperature"].text() == "temperature must be > 0, got 0"
    assert "setting method.temperature: method.temperature must be > 0, got 0" == form.problem_labels["temperature"].toolTip()
    # by the address exactly: no other field of the form, nor a shorter address, takes it
    assert [name for name, label in form.problem_labels.items() if label.text()] == ["temperature"]
    assert setup.model.problem_for("method") is None and setup.model.problem_for("method.temp") is None
    assert setup.field_for("method.temperature") == (editor, "temperature")
    assert setup.field_for("augment.views[0].hue") is None  # a view's setting: the Augmentations tab's
