"""The kNN benchmark's summary over seeds: mean gain, standard error, seeds above the floor."""

import importlib.util
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def benchmark():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "knn_vs_baselines.py"
    spec = importlib.util.spec_from_file_location("knn_vs_baselines", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gain_summary_by_hand(benchmark):
    # gains 0.01, 0.03, -0.01, 0.05: mean 0.02; deviations -0.01, 0.01, -0.03, 0.03; sample
    # variance 0.002 / 3; standard error sqrt(0.002 / 3 / 4) = 0.0129
    line = benchmark.gain_summary("simmim", [0.01, 0.03, -0.01, 0.05])
    assert line.startswith("simmim: kNN gain over the random network +0.020 +- 0.013 ")
    assert "4 seeds; above it at 3 of 4" in line
