"""The same Trainer under torchrun: two CPU processes (gloo) train one global batch together,
and only rank 0 writes the run folder."""

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import SMALL_HEADS

ROOT = Path(__file__).resolve().parents[1]


def test_two_processes_train_one_run(tmp_path):
    settings = ["data.shapes_count=400", "train.eval_subset=64", "train.linear_probe=false",
                "train.log_every_steps=1", "train.run_name=ddp", *SMALL_HEADS["simclr"]]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(ROOT / "main.py"), "train", "--method", "simclr", "--dataset", "shapes", "--epochs", "1",
               "--batch-size", "64", "--device", "cpu", "--runs-dir", str(tmp_path), "--quiet",
               *[a for s in settings for a in ("--set", s)]]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir()] == ["ddp"]  # one run folder, from rank 0
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["steps"] == 5 and summary["knn_top1"] is not None
    assert result.stdout.count('"method": "simclr"') == 1  # one summary printed, not one per rank
    steps = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in steps if m["kind"] == "step"] == [1, 2, 3, 4, 5]
