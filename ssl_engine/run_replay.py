"""A finished (or cut-short) run read back from its folder as the events it sent: its start,
every logged step's metrics, its curve probes (the kNN and its floor, the diagnostics: from
metrics.jsonl) and its recorded probes (views, matrices, maps, ...), so a window rebuilds every
live view.

Recorded results are loaded on demand: a 100-epoch run has a map per epoch, and a slider over
them loads only the one shown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .config import ExperimentConfig
from .errors import UserError
from .probes import PROBES
from .probes.base import ProbeResult
from .probes.record import read_probe_results, recorded
from .runs import PROBES_DIR, STARTED_FILE, read_metrics
from .train.events import RunStarted, StepMetrics

STEP_COLUMNS = {"kind", "step", "epoch", "loss", "lr", "images_per_second", "time"}


@dataclass
class Replay:
    run_dir: Path
    started: RunStarted
    metrics: list[StepMetrics]
    curves: list[ProbeResult]                      # every point of every curve probe, in order
    recorded: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # probe -> (step, epoch) recorded
    last_step: int = 0  # where the run ended (its summary), or its last logged step when cut short

    def load(self, probe: str, step: int | None = None) -> ProbeResult | None:
        """The recorded result of `probe` at `step` (None: its last), or None when none was recorded."""
        steps = self.recorded.get(probe)
        if not steps:
            return None
        step = steps[-1][0] if step is None else step
        return next(iter(read_probe_results(self.run_dir / PROBES_DIR, probe, step=step)), None)


def _step_metrics(row: dict, steps_per_epoch: int, total_steps: int) -> StepMetrics:
    epoch_position = float(row.get("epoch", 0.0))  # the epoch (from 0) and the share of it done
    epoch = (row["step"] - 1) // max(steps_per_epoch, 1)
    terms = {k: float(v) for k, v in row.items() if k not in STEP_COLUMNS and isinstance(v, (int, float))}
    return StepMetrics(step=row["step"], epoch=epoch, epoch_progress=epoch_position - epoch,
                       loss=float(row["loss"]) if row.get("loss") is not None else float("nan"), terms=terms,
                       lr=float(row.get("lr") or 0.0), images_per_second=float(row.get("images_per_second") or 0.0),
                       elapsed_seconds=float(row.get("time") or 0.0), eta_seconds=0.0, total_steps=total_steps)


def replay_run(run_dir: str | Path) -> Replay:
    """Read `run_dir` back as its events (see the module's docstring)."""
    run_dir = Path(run_dir).expanduser()
    started_path = run_dir / STARTED_FILE
    if not (run_dir / "config.toml").is_file() or not started_path.is_file():
        raise UserError(f"{run_dir} is not a run folder this version can reopen (no config.toml or {STARTED_FILE})")
    try:
        fields = json.loads(started_path.read_text())
        config = ExperimentConfig.load(run_dir / "config.toml")
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {run_dir}: {error}") from None
    started = RunStarted(config=config.to_dict(), **{**fields, "start_step": 0, "run_dir": str(run_dir)})
    rows = read_metrics(run_dir)
    metrics = [_step_metrics(r, started.steps_per_epoch, started.total_steps) for r in rows if r.get("kind") == "step"]
    curves = []
    curve_probes = [probe for probe in PROBES.values() if probe.display == "curve"]
    for row in rows:
        if row.get("kind") not in ("init", "epoch"):
            continue
        epoch = 0 if row["kind"] == "init" else int(row["epoch"])
        for probe in curve_probes:
            if probe.columns:  # a dict of numbers, one column per key
                value = {column: float(row[column]) for column in probe.columns if row.get(column) is not None}
                if value:
                    curves.append(ProbeResult(name=probe.name, step=int(row["step"]), epoch=epoch, value=value))
            elif row.get(probe.name) is not None:
                curves.append(ProbeResult(name=probe.name, step=int(row["step"]), epoch=epoch,
                                          value=float(row[probe.name])))
    try:
        last_step = int(json.loads((run_dir / "summary.json").read_text())["steps"])
    except (OSError, ValueError, KeyError, TypeError):
        last_step = metrics[-1].step if metrics else 0
    return Replay(run_dir=run_dir, started=started, metrics=metrics, curves=curves,
                  recorded=recorded(run_dir / PROBES_DIR), last_step=last_step)
