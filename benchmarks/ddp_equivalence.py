"""One process against N: does torchrun train what a single process trains?

Trains each method for 2 steps (2 epochs of one step, so per-epoch work such as DeepCluster's
clustering runs twice) on the same global batch of 64 shapes images, once in a plain process
and once in N gloo processes started by torchrun on the CPU, and prints, per method, the
largest relative difference between the two runs' weights and method state (queues, centres,
prototypes, cluster labels), measured against the tensor's norm and against how far the two
steps moved it.

    python benchmarks/ddp_equivalence.py                  # every method, 2 processes
    python benchmarks/ddp_equivalence.py --methods msn,dino --processes 2

The test tests/test_ddp_equivalence.py runs the same two launches and asserts the same weights.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from ssl_engine.config import ExperimentConfig  # noqa: E402
from ssl_engine.methods import METHODS  # noqa: E402

GLOBAL_BATCH = 64
# Narrow heads keep a step to milliseconds (the tests' sizes); the ViT-only methods (and one run
# of DINO and of MoCo v3 each, where the ViT's frozen and unused parameters matter) on a 4 x 4
# grid of 8 px patches. SwAV's queue is filled from the first step and read at the second.
CASES = {name: [] for name in sorted(METHODS)}
CASES["swav"] = ["method.queue_length=64", "method.epoch_queue_starts=0"]
CASES["dino_vit"] = ["backbone.name=vit_tiny", "backbone.patch_size=8"]
CASES["moco_v3_vit"] = ["backbone.name=vit_tiny", "backbone.patch_size=8"]


def method_of(case: str) -> str:
    return case[:-len("_vit")] if case.endswith("_vit") else case


def case_config(case: str, runs_dir: Path) -> ExperimentConfig:
    """Two steps of `case` on 80 training images, on the CPU, written under `runs_dir`."""
    from tests.helpers import SMALL_HEADS
    method = method_of(case)
    return ExperimentConfig.for_method(method).with_overrides([
        "data.source=shapes", "data.shapes_count=100", "data.image_size=32", "backbone.name=small_cnn",
        "train.epochs=2", f"train.batch_size={GLOBAL_BATCH}", "train.device=cpu", f"train.runs_dir={runs_dir}",
        f"train.run_name={case}", "train.log_every_steps=1", "train.eval_subset=16", "train.linear_probe=false",
        *SMALL_HEADS.get(method, []), *CASES[case]]).validate()


def worker(cases: list[str], out: Path, threads: int = 1) -> None:
    """Train each case in this process (one of torchrun's, or a plain one) and save its initial
    and final method state as `case-rank{R}.pt`; a failure is saved as its message."""
    from ssl_engine import distributed
    from ssl_engine.train import Trainer
    from ssl_engine.train.events import RunStarted

    torch.set_num_threads(threads)
    rank, world = distributed.setup_from_environment()
    out.mkdir(parents=True, exist_ok=True)
    for case in cases:
        result = {}
        try:
            trainer = Trainer(case_config(case, out / "runs"))

            def keep_initial(event, trainer=trainer):
                if isinstance(event, RunStarted):
                    result["initial"] = _state(trainer.method)

            trainer.subscribe(keep_initial)
            trainer.run()
            result["final"] = _state(trainer.method)
        except Exception as error:  # recorded, so that one method's failure does not hide the others
            result = {"error": f"{type(error).__name__}: {error}"}
        torch.save(result, out / f"{case}-rank{rank}.pt")
    if distributed.is_distributed():
        torch.distributed.destroy_process_group()


def _state(method: torch.nn.Module) -> dict:
    return {key: value.detach().cpu().clone() for key, value in method.state_dict().items()}


def launch(cases: list[str], out: Path, processes: int, timeout: float = 900, floor: bool = False) -> None:
    """Run the worker in one plain process (into out/1) and in `processes` torchrun processes
    (into out/N), one after the other; with `floor`, also in one process on 2 threads (into
    out/threads), whose sums run in yet another order. Raise with the output's tail on a failure."""
    out.mkdir(parents=True, exist_ok=True)
    script = str(Path(__file__).resolve())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = [sys.executable, script, "--worker", str(out / "1"), "--methods", ",".join(cases)]
    several = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               script, "--worker", str(out / str(processes)), "--methods", ",".join(cases)]
    commands = [single, several]
    if floor:
        commands.append([sys.executable, script, "--worker", str(out / "threads"), "--threads", "2",
                         "--methods", ",".join(cases)])
    for command in commands:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=out)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command[:6])}... exited {done.returncode}:\n{done.stderr[-4000:]}")


def differences(single: dict, other: dict, initial: dict) -> dict[str, tuple[float, float]]:
    """Per state tensor: ||other - single|| / ||single|| and ||other - single|| / ||single - initial||
    (floating tensors; integer ones, such as labels and pointers, count 0 when equal, inf if not)."""
    result = {}
    for key, value in single.items():
        if not value.is_floating_point():
            result[key] = (0.0, 0.0) if torch.equal(value, other[key]) else (float("inf"), float("inf"))
            continue
        gap = float((other[key].double() - value.double()).norm())
        moved = float((value.double() - initial[key].double()).norm()) if key in initial else 0.0
        size = float(value.double().norm())
        result[key] = (gap / size if size else gap, gap / moved if moved else (0.0 if gap == 0 else float("inf")))
    return result


def overall(single: dict, other: dict, initial: dict) -> float:
    """||other - single|| / ||single - initial|| over every floating tensor of the state at once:
    how far apart the two runs ended, against how far the two steps went."""
    keys = [k for k, v in single.items() if v.is_floating_point() and k in other]
    gap = sum(float((other[k].double() - single[k].double()).nan_to_num().square().sum()) for k in keys)
    moved = sum(float((single[k].double() - initial[k].double()).nan_to_num().square().sum()) for k in keys)
    return (gap / moved) ** 0.5 if moved else float("inf")


def load(out: Path, case: str, processes: int) -> tuple[dict, list[dict]]:
    """The single process's result and each of the N ranks' results for `case`."""
    return (torch.load(out / "1" / f"{case}-rank0.pt"),
            [torch.load(out / str(processes) / f"{case}-rank{r}.pt") for r in range(processes)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default=",".join(CASES), help="comma-separated cases (default: all)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # the launched processes' own entry
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--out", help="folder for the runs' states (default: a temporary one)")
    args = parser.parse_args()
    cases = [c for c in args.methods.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    if args.worker:
        worker(cases, Path(args.worker), args.threads)
        return
    import tempfile
    out = Path(args.out or tempfile.mkdtemp(prefix="ddp_equivalence_"))
    started = time.perf_counter()
    launch(cases, out, args.processes, floor=True)
    print(f"{len(cases)} cases, 1 process against {args.processes} (gloo, CPU), 2 steps at global batch "
          f"{GLOBAL_BATCH}, in {time.perf_counter() - started:.0f} s\n")
    print("The whole state's difference from one process, against how far the 2 steps moved it, for\n"
          f"{args.processes} processes and (the rounding floor) for one process on 2 threads instead of 1; then\n"
          f"the largest difference of one tensor between 1 and {args.processes} processes, against its norm and its change.\n")
    print("| method | all state, N processes | all state, 2 threads | largest per tensor / its norm | "
          "largest per tensor / its change | integer state |\n|---|---|---|---|---|---|")
    for case in cases:
        single, ranks = load(out, case, args.processes)
        errors = [r["error"] for r in (single, *ranks) if "error" in r]
        if errors:
            print(f"| {case} | failed: {errors[0][:150]} | | | | |")
            continue
        worst = max(overall(single["final"], r["final"], single["initial"]) for r in ranks)
        threaded = torch.load(out / "threads" / f"{case}-rank0.pt")
        floor = overall(single["final"], threaded["final"], single["initial"]) if "final" in threaded else float("nan")
        gaps = {}
        for rank_result in ranks:
            for key, gap in differences(single["final"], rank_result["final"], single["initial"]).items():
                gaps[key] = tuple(max(a, b) for a, b in zip(gaps.get(key, (0.0, 0.0)), gap))
        floats = {k: g for k, g in gaps.items() if single["final"][k].is_floating_point()}
        by_norm, by_change = (max(floats, key=lambda k: floats[k][i]) for i in (0, 1))
        integers = [k for k in gaps if k not in floats]
        unequal = [k for k in integers if gaps[k][0]]
        print(f"| {case} | {worst:.1e} | {floor:.1e} | {floats[by_norm][0]:.1e} ({by_norm}) | {floats[by_change][1]:.1e} "
              f"({by_change}) | {'equal' if not unequal else 'differ: ' + ', '.join(unequal)} |")

if __name__ == "__main__":
    main()
