"""One process equals two: every method trained for 2 steps in a plain process and in 2 gloo
processes started by torchrun, on the same global batch, ends with the same weights and the same
method state (queues, centres, prototypes, cluster labels), and both processes agree.

The launches are benchmarks/ddp_equivalence.py's (which prints the figures). Float results
differ by summation order: the tolerance is measured against how far the two steps moved the
state, well above that rounding (one process at 1 and at 2 threads differs by about 1e-4 of a
step) and well below the per-process BatchNorm it replaced (2e-2).
"""

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

ROOT = Path(__file__).resolve().parents[1]
PROCESSES = 2
TOLERANCE = 2e-3  # of the two steps' change in the whole state


def _benchmark():
    spec = importlib.util.spec_from_file_location("ddp_equivalence", ROOT / "benchmarks" / "ddp_equivalence.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENCHMARK = _benchmark()


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("this torch build has no gloo backend")
    out = tmp_path_factory.mktemp("ddp")
    BENCHMARK.launch(list(BENCHMARK.CASES), out, PROCESSES)
    return out


def test_every_method_is_a_case():
    from ssl_engine.methods import METHODS
    assert set(METHODS) <= set(BENCHMARK.CASES) and len(METHODS) == 18


@pytest.mark.parametrize("case", list(BENCHMARK.CASES))
def test_two_processes_train_what_one_trains(results, case):
    single, ranks = BENCHMARK.load(results, case, PROCESSES)
    for result in (single, *ranks):
        assert "error" not in result, result.get("error")
    initial, final = single["initial"], single["final"]
    for rank, result in enumerate(ranks):
        assert result["final"].keys() == final.keys()
        gap = BENCHMARK.overall(final, result["final"], initial)
        assert gap < TOLERANCE, f"rank {rank} ends {gap:.1e} of the 2-step change away from one process"
        for key, value in final.items():
            other = result["final"][key]
            if value.is_floating_point():
                continue
            if value.numel() <= 1:  # pointers, counters, flags
                assert torch.equal(other, value), key
            else:  # cluster labels: a point on a boundary may go either way after rounding
                assert (other == value).float().mean() >= 0.95, key
    # the steps did move the state (else any two runs would agree)
    moved = [k for k, v in final.items() if v.is_floating_point() and not torch.allclose(v, initial[k], equal_nan=True)]
    assert moved
    # DDP keeps the processes' copies equal
    for key, value in ranks[0]["final"].items():
        torch.testing.assert_close(ranks[1]["final"][key], value, rtol=1e-6, atol=1e-7, equal_nan=True)
