"""The method's card in the set-up: family, objective, safeguard, paper, what to watch, and the
switch that removes the safeguard through the model's own settings."""

import html

import pytest

from app.experiment_model import ExperimentModel
from app.widgets.method_card import MethodCard
from ssl_engine.collapse import removed_safeguard
from ssl_engine.config import ExperimentConfig
from ssl_engine.methods import METHODS


def test_every_method_has_a_card(qtbot):
    model = ExperimentModel(ExperimentConfig.for_method("simclr", 32, "small"))
    card = MethodCard(model)
    qtbot.addWidget(card)
    for name, cls in METHODS.items():
        model.switch_method(name)
        text = html.unescape(card.text.text())
        assert cls.family in text and cls.paper in text and cls.objective and "Watch in Diagnostics" in text
        assert card.without_safeguard.isVisibleTo(card) == (cls.safeguard is not None)
        if cls.safeguard is not None:
            assert cls.safeguard.name in text and not card.without_safeguard.isChecked()


@pytest.mark.parametrize("method", ["simsiam", "byol", "barlow_twins", "vicreg", "dino"])
def test_the_switch_removes_the_safeguard_and_puts_it_back(qtbot, method):
    model = ExperimentModel(ExperimentConfig.for_method(method, 32, "small"))
    card = MethodCard(model)
    qtbot.addWidget(card)
    intact = model.table
    card.without_safeguard.setChecked(True)
    removed = METHODS[method].safeguard.removed
    assert len(removed_safeguard(model.table)) == len(removed) and model.config is not None
    assert model.config.to_dict() == ExperimentConfig.from_dict(intact).without_safeguard().to_dict()
    card.without_safeguard.setChecked(False)
    assert model.table == intact and removed_safeguard(model.table) == []
    # the same setting edited in the method's form checks the switch
    for setting in removed:
        model.set_value(setting.key, setting.value)
    assert card.without_safeguard.isChecked()


def test_the_set_up_form_shows_what_the_switch_set(qtbot):
    from app.widgets.setup_panel import SetupPanel

    model = ExperimentModel(ExperimentConfig.for_method("byol", 32, "small"))
    panel = SetupPanel(model)
    qtbot.addWidget(panel)
    editors = panel.method_form.editors
    assert editors["predictor"].isChecked() and editors["ema_target"].isChecked()
    panel.method_card.without_safeguard.setChecked(True)
    assert not editors["predictor"].isChecked() and not editors["ema_target"].isChecked()
    panel.method_card.without_safeguard.setChecked(False)
    assert editors["predictor"].isChecked() and editors["ema_target"].isChecked()
