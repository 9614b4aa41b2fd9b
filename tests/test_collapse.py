"""The collapse alarm against hand-made diagnostics: complete and dimensional collapse against
the network's random-init values, the safeguard named, a demo said to be one."""

import pytest

from ssl_engine.collapse import RANK_SHARE, STD_SHARE, collapse_alarm, collapse_kind, removed_safeguard
from ssl_engine.config import ExperimentConfig

HIGHEST = {"rankme": 20.0, "embedding_std": 0.01, "uniformity": -2.0}


@pytest.mark.parametrize("values, kind", [
    ({"rankme": 25.0, "embedding_std": 0.012}, None),                       # healthy: both kept
    ({"rankme": 20.0 * RANK_SHARE * 1.05, "embedding_std": 0.01}, None),    # just above the rank's share
    ({"rankme": 20.0 * RANK_SHARE * 0.95, "embedding_std": 0.01}, "dimensional"),
    ({"rankme": 10.0, "embedding_std": 0.01 * STD_SHARE * 0.9}, "complete"),  # the spread is gone
    ({"rankme": 1.2, "embedding_std": 0.009}, "complete"),                   # one direction left
    ({"rankme": float("nan"), "embedding_std": 0.01}, None),                 # nothing measured
    ({"rankme": 10.0, "embedding_std": 0.01, "uniformity": -0.1}, "complete"),  # merged: -0.1 of a lowest -2
    ({"rankme": 10.0, "embedding_std": 0.01, "uniformity": -0.3}, None),
])
def test_the_kind_of_collapse(values, kind):
    assert collapse_kind(values, HIGHEST) == kind
    assert collapse_kind(values, {}) is None  # no random-init reference: no verdict


def test_the_alarm_names_the_safeguard_and_the_usual_causes():
    alarm = collapse_alarm({"rankme": 2.0, "embedding_std": 0.009}, HIGHEST, epoch=3, method="simsiam")
    assert alarm.kind == "dimensional" and alarm.epoch == 3
    assert "epoch 3" in alarm.message and "the stop-gradient" in alarm.message
    assert "learning rate" in alarm.message and "batch" in alarm.message
    assert collapse_alarm({"rankme": 19.0, "embedding_std": 0.01}, HIGHEST, epoch=3, method="simsiam") is None


def test_a_demo_is_told_it_switched_the_safeguard_off():
    table = ExperimentConfig.for_method("byol", 32, "small").without_safeguard().to_dict()
    off = removed_safeguard(table)
    assert sorted(off) == ["method.ema_target=False", "method.predictor=False"]
    alarm = collapse_alarm({"rankme": 1.0, "embedding_std": 0.0001}, HIGHEST, epoch=1, method="byol", removed=off)
    assert alarm.kind == "complete" and "switched off" in alarm.message and "method.predictor=False" in alarm.message
    assert removed_safeguard(ExperimentConfig.for_method("byol", 32, "small").to_dict()) == []
    assert removed_safeguard(ExperimentConfig.for_method("mae", 32, "small").to_dict()) == []


def test_the_watch_compares_each_epoch_with_the_runs_highest_so_far():
    from ssl_engine.collapse import CollapseWatch
    from ssl_engine.probes.base import ProbeResult

    table = ExperimentConfig.for_method("simsiam", 32, "small").to_dict()
    watch = CollapseWatch(table)
    # the rank rises from the random-init network's, then falls to under a fifth of its peak
    ranks = [30.0, 60.0, 120.0, 100.0, 20.0]
    alarms = [watch.feed(ProbeResult("diagnostics", step=10 * epoch, epoch=epoch,
                                     value={"rankme": rank, "embedding_std": 0.02}))
              for epoch, rank in enumerate(ranks)]
    assert alarms[:4] == [None] * 4  # 100 of a peak of 120 is no collapse
    assert alarms[4].kind == "dimensional" and alarms[4].rank_reference == pytest.approx(120.0)
    assert "17% of this run's highest" in alarms[4].message and watch.alarm is alarms[4]
    healthy = CollapseWatch(table)
    assert all(healthy.feed(ProbeResult("diagnostics", step=e, epoch=e, value={"rankme": 10.0 + e,
                                                                          "embedding_std": 0.01}))
               is None for e in range(5))
