"""The diagnostics probe in real runs: in every run's metrics.jsonl (headless too, the init row
included), on views that stay the same from epoch to epoch, read back by a reopened run, without
changing what the run trains; and the masked methods' held-out loss, which changes no state."""

import copy
import json
import math

import pytest
import torch

from ssl_engine.methods import METHODS
from ssl_engine.models.build import build_backbone_for
from ssl_engine.probes.diagnostics import COLUMNS
from ssl_engine.run_replay import replay_run
from ssl_engine.train import EventRates, Trainer
from ssl_engine.train.events import StepMetrics
from tests.helpers import assert_same_state, tiny_config
from tests.method_runs import run_config

MEASURES = [column for column in COLUMNS if column != "held_out_loss"]


def diagnostic_rows(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [row for row in rows if row["kind"] in ("init", "epoch")]


def test_a_headless_run_records_every_measure_before_training_and_at_each_epoch(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, "simclr", "train.diagnostics=true", epochs=2))
    trainer.run()  # no listener at all: the run folder alone asks
    rows = diagnostic_rows(trainer.run_dir)
    steps = trainer.steps_per_epoch
    assert [(row["kind"], row["step"]) for row in rows] == [("init", 0), ("epoch", steps), ("epoch", 2 * steps)]
    for row in rows:
        assert set(MEASURES) <= set(row) and "held_out_loss" not in row, row  # simclr has no loss of its own
        assert all(math.isfinite(row[key]) for key in MEASURES), row
        assert row["infonce_ceiling"] == pytest.approx(math.log(64))  # train.eval_subset=64 pairs
        assert row["infonce_bound"] <= row["infonce_ceiling"]
        # the method's embedding: SimCLR's projector output
        width = trainer.config.method.params.projection_dim
        assert row["embedding_dim"] == pytest.approx(width) and row["embedding_std_reference"] == pytest.approx(width ** -0.5)
        assert 1.0 <= row["feature_rankme"] <= 128.0
        assert 1.0 <= row["rankme"] <= 128.0  # at most the 2 x 64 rows
        assert 0.0 <= row["alignment"] <= 4.0 and row["uniformity"] <= 0.0
    assert not (trainer.run_dir / "probes").exists()  # a curve: its values are the rows
    # a reopened run reads each row back as the probe sent it
    curves = [result for result in replay_run(trainer.run_dir).curves if result.name == "diagnostics"]
    assert [result.step for result in curves] == [0, steps, 2 * steps]
    assert curves[-1].value == pytest.approx({key: rows[-1][key] for key in MEASURES})


def test_a_still_network_measures_the_same_at_every_epoch(tmp_path):
    # a learning rate of 1e-9 leaves MAE's ViT (no BatchNorm) as it was: only a new draw of the
    # views or masks could move the measures
    trainer = Trainer(tiny_config(tmp_path, "mae", "train.diagnostics=true", "optim.lr=1e-9", "optim.weight_decay=0", epochs=2))
    trainer.run()
    first, *later = diagnostic_rows(trainer.run_dir)
    assert "held_out_loss" in first and first["alignment"] > 1e-4  # two different views of each image
    for row in later:
        assert {key: row[key] for key in COLUMNS} == pytest.approx({key: first[key] for key in COLUMNS}, rel=1e-4)


def test_measuring_does_not_change_what_the_run_trains(tmp_path):
    def step_losses(folder, record):
        trainer, losses = Trainer(tiny_config(folder, "simclr", f"train.diagnostics={str(record).lower()}",
                                              epochs=2)), []
        trainer.subscribe(lambda event: losses.append(event.loss) if isinstance(event, StepMetrics) else None,
                          EventRates(metrics_every_steps=1))
        trainer.run()
        return losses, diagnostic_rows(trainer.run_dir)

    measured, rows = step_losses(tmp_path / "measured", True)
    unmeasured, plain_rows = step_losses(tmp_path / "plain", False)
    assert "rankme" in rows[-1] and "rankme" not in plain_rows[-1]
    assert measured == pytest.approx(unmeasured, rel=1e-6)


def built(folder, name):
    config = run_config(folder, name)
    torch.manual_seed(0)
    return METHODS[name](build_backbone_for(config), config.method.params, total_steps=100)


@pytest.mark.parametrize("name", ["mae", "simmim", "maskfeat", "beit", "ijepa"])
def test_a_held_out_loss_changes_no_state(tmp_path, name):
    method = built(tmp_path, name)
    x = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    if name == "beit":
        assert method.held_out_loss(x) is None  # no codebook before the first epoch's work
        method.before_epoch(0, lambda encoder=None: encoder(torch.randn(40, 3, 16, 16)))
    method.train()
    before = copy.deepcopy(method.state_dict())
    first = method.held_out_loss(x)
    assert math.isfinite(first) and first > 0
    assert method.held_out_loss(x) == pytest.approx(first, rel=1e-9)  # the same masks each time
    assert_same_state(method.state_dict(), before)
    assert all(module.training for module in method.backbone.modules())  # train mode given back


@pytest.mark.parametrize("name", ["ibot", "msn", "simclr"])
def test_a_loss_that_cannot_be_measured_without_side_effects_is_not(tmp_path, name):
    method = built(tmp_path, name)
    assert method.held_out_loss(torch.randn(4, 3, 16, 16)) is None
