"""A run is a folder: config.toml, metrics.jsonl, run.log, checkpoints/, summary.json, probes/,
status.json and the user's meta.json.

Everything the app shows about a finished run can be rebuilt from that folder.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import time
from pathlib import Path

from .config import ExperimentConfig

PROBES_DIR = "probes"        # the recorded live views (ssl_engine.probes.record)
PROBE_INDEX = "index.jsonl"  # in PROBES_DIR, one line per recorded result
STATUS_FILE = "status.json"  # running, finished, stopped or failed, and the process that runs it
META_FILE = "meta.json"      # the user's tags and note (ssl_engine.run_store)
STARTED_FILE = "started.json"  # the run's shape as its start announced it (steps, data sizes, classes)


def default_run_name(config: ExperimentConfig, stamp: str | None = None) -> str:
    """date-method-data: the name of a run's folder when the config gives none (`stamp`: the
    date and time to name it by, by default now)."""
    source = config.data.source
    data = Path(source[7:]).name if source.startswith("folder:") else source
    stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{config.method.name}-{re.sub(r'[^A-Za-z0-9_.-]', '_', data)}"


def new_run_dir(config: ExperimentConfig) -> Path:
    """A fresh folder under `train.runs_dir`: the given run name, or date-method-data."""
    root = Path(config.train.runs_dir).expanduser()
    name = config.train.run_name or default_run_name(config)
    path, n = root / name, 1
    while path.exists():
        n += 1
        path = root / f"{name}-{n}"
    (path / "checkpoints").mkdir(parents=True)
    return path


def _clean(value):
    """JSON has no NaN or infinity: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


class RunFolder:
    """Writes a run's files; only the main process of a distributed run makes one."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.checkpoints.mkdir(parents=True, exist_ok=True)

    def save_config(self, config: ExperimentConfig) -> None:
        config.save(self.path / "config.toml")

    def append_metrics(self, record: dict) -> None:
        with open(self.path / "metrics.jsonl", "a") as file:
            file.write(json.dumps(_clean(record)) + "\n")

    def log(self, line: str) -> None:
        with open(self.path / "run.log", "a") as file:
            file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    def forget_after(self, step: int) -> int:
        """Drop what was logged after `step` (a resumed run goes on from its checkpoint there,
        so each step is logged once): metrics rows and recorded probes. Returns the count of
        metrics rows dropped."""
        dropped = keep_lines(self.path / "metrics.jsonl", lambda record: record.get("step", 0) <= step)
        probes, later = self.path / PROBES_DIR, []

        def earlier(entry: dict) -> bool:
            if entry["step"] <= step:
                return True
            later.append(entry["file"])
            return False
        keep_lines(probes / PROBE_INDEX, earlier)
        for relative in later:
            (probes / relative).unlink(missing_ok=True)
        return dropped

    def set_status(self, status: str, message: str = "") -> None:
        """Say what the run is doing (see ssl_engine.run_store): "running" names this process,
        so that a run whose process died can be told from one still training. The first start's
        time is kept across resumes."""
        path = self.path / STATUS_FILE
        try:
            started = json.loads(path.read_text()).get("started")
        except (OSError, ValueError, AttributeError):
            started = None
        record = {"status": status, "pid": os.getpid(), "host": socket.gethostname(),
                  "started": started or time.time(), "updated": time.time(), "message": message}
        write_atomically(path, json.dumps(record) + "\n")

    def write_started(self, started) -> None:
        """What the run's start told its listeners (a RunStarted, less its config, which is in
        config.toml): a reopened run tells its views the same."""
        fields = {k: v for k, v in vars(started).items() if k != "config"}
        write_atomically(self.path / STARTED_FILE, json.dumps(_clean(fields), indent=2) + "\n")

    def write_summary(self, summary: dict) -> None:
        write_atomically(self.path / "summary.json", json.dumps(_clean(summary), indent=2) + "\n")


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file beside it: a reader sees the old file or
    the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def keep_lines(path: Path, keep) -> int:
    """Rewrite the JSON-lines file `path` (atomically) with the records `keep(record)` accepts;
    returns how many it dropped. A missing file drops nothing."""
    if not path.is_file():
        return 0
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if keep(json.loads(line))]
    if len(kept) < len(lines):
        write_atomically(path, "".join(line + "\n" for line in kept))
    return len(lines) - len(kept)


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
