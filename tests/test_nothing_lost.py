"""Nothing lost: a run killed with kill -9 resumes from its last checkpoint with each step
logged once, long epochs are checkpointed every few minutes, and a checkpoint that cannot be
written leaves the previous one intact and says so."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ssl_engine.checkpoint import load_checkpoint, save_checkpoint
from ssl_engine.errors import UserError
from ssl_engine.run_store import read_run
from ssl_engine.runs import RunFolder, read_metrics
from ssl_engine.train import Trainer
from ssl_engine.train.events import CheckpointSaved
from tests.helpers import tiny_config

ROOT = Path(__file__).resolve().parents[1]


def test_a_run_killed_with_kill_9_resumes_from_its_checkpoint_with_every_step_logged_once(tmp_path):
    runs = tmp_path / "runs"
    train = [sys.executable, str(ROOT / "main.py"), "train", "--method", "simclr", "--dataset", "shapes",
             "--batch-size", "64", "--device", "cpu", "--runs-dir", str(runs), "--quiet",
             "--set", "data.shapes_count=400", "--set", "train.log_every_steps=1", "--set", "train.eval_subset=64",
             "--set", "train.linear_probe=false", "--set", "method.hidden_dim=64", "--set", "method.projection_dim=32"]
    process = subprocess.Popen([*train, "--epochs", "200", "--set", "train.run_name=killed"], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    run = runs / "killed"
    deadline = time.monotonic() + 240
    try:
        # kill it in its second epoch or later, after the first checkpoint (step 5) and steps past it
        while time.monotonic() < deadline and process.poll() is None:
            steps = [r["step"] for r in read_metrics(run) if r["kind"] == "step"] if run.is_dir() else []
            if (run / "checkpoints" / "last.pt").is_file() and steps and steps[-1] >= 7 and steps[-1] % 5:
                break
            time.sleep(0.02)
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
    assert read_run(run).status == "interrupted" and read_run(run).resumable
    logged = [r["step"] for r in read_metrics(run) if r["kind"] == "step"]
    checkpoint_step = load_checkpoint(run)["step"]
    assert logged[-1] > checkpoint_step  # steps after the checkpoint were logged, and are lost with the kill
    assert logged[-1] - checkpoint_step < 5  # at most one checkpoint interval (an epoch here) is lost

    resumed = subprocess.run([*train[:2], "train", "--resume", str(run), "--epochs", "4", "--quiet"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    rows = read_metrics(run)
    steps = [r["step"] for r in rows if r["kind"] == "step"]
    assert steps == list(range(1, 21))  # each step once, none missing
    assert [r["epoch"] for r in rows if r["kind"] == "epoch"] == [1, 2, 3, 4]
    assert f"resumed from the checkpoint at step {checkpoint_step}" in (run / "run.log").read_text()
    assert read_run(run).status == "finished"


class SteppedClock:
    """A training clock that advances one second each time it is read."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.mark.parametrize("minutes, mid_epoch", [(0.05, True), (0, False)])
def test_a_long_epoch_is_checkpointed_every_few_minutes(tmp_path, minutes, mid_epoch):
    trainer = Trainer(tiny_config(tmp_path, "simclr", "train.checkpoint_every_epochs=100",
                                  f"train.checkpoint_every_minutes={minutes}", epochs=2))
    trainer.clock = SteppedClock()  # 3 minutes of training = 180 readings of the clock
    saved = []
    trainer.subscribe(lambda event: saved.append(event.step) if isinstance(event, CheckpointSaved) else None)
    trainer.run()
    assert saved[-1] == 10  # the end of the run, always
    within = [step for step in saved[:-1] if step % trainer.steps_per_epoch]
    assert bool(within) is mid_epoch and within == saved[:-1]
    assert all(later > earlier for earlier, later in zip(saved, saved[1:]))


def test_a_checkpoint_that_cannot_be_written_leaves_the_previous_one_and_says_so(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"config": {}, "method": {"w": torch.ones(2)}, "step": 5})
    (tmp_path / "last.pt.tmp").mkdir()  # the write fails as on a failing disk: the temporary file cannot be made
    with pytest.raises(UserError, match=r"could not write the checkpoint .*last.pt: .*; the previous checkpoint is intact"):
        save_checkpoint(path, {"config": {}, "method": {"w": torch.zeros(2)}, "step": 10})
    assert load_checkpoint(path)["step"] == 5 and torch.equal(load_checkpoint(path)["method"]["w"], torch.ones(2))


def test_forgetting_after_a_step_drops_later_rows_and_recorded_probes(tmp_path):
    folder = RunFolder(tmp_path / "run")
    for record in ({"kind": "init", "step": 0}, {"kind": "step", "step": 5}, {"kind": "epoch", "epoch": 1, "step": 5},
                   {"kind": "step", "step": 6}, {"kind": "step", "step": 7}):
        folder.append_metrics(record)
    probes = folder.path / "probes"
    (probes / "map").mkdir(parents=True)
    for step in (5, 7):
        (probes / "map" / f"{step:09d}.npz").write_bytes(b"x")
        with open(probes / "index.jsonl", "a") as index:
            index.write(json.dumps({"name": "map", "step": step, "file": f"map/{step:09d}.npz"}) + "\n")
    assert folder.forget_after(5) == 2
    assert [r["step"] for r in read_metrics(folder.path)] == [0, 5, 5]
    assert [json.loads(line)["step"] for line in (probes / "index.jsonl").read_text().splitlines()] == [5]
    assert (probes / "map" / f"{5:09d}.npz").is_file() and not (probes / "map" / f"{7:09d}.npz").exists()
    assert folder.forget_after(5) == 0
