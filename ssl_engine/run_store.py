"""The runs under a runs folder, as a table: each run's status, what it trained, how long, how
well, and the tags and note the user gave it; renaming, tagging and deleting them; and the
races of methods (`ssl_engine.race`) beside them, each read back from its folder.

Everything is read from the run folders themselves (`runs.RunFolder`): `status.json`, which
the trainer writes as a run starts, checkpoints and ends, `summary.json`, `config.toml`,
`metrics.jsonl` (for a run that never finished) and `meta.json` (tags and note). A run whose
status says running but whose process is gone on this machine was interrupted (killed, or
the machine stopped): it can be resumed from its last checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError
from .runs import META_FILE, STATUS_FILE, read_metrics, write_atomically

STATUSES = ("running", "finished", "stopped", "interrupted", "failed")
MAX_TAG = 40
RACE_FILE = "race.json"  # in a race's folder: its plan, and its runs with their status


@dataclass
class RunRecord:
    path: Path
    status: str                 # one of STATUSES
    method: str = ""
    data: str = ""
    backbone: str = ""
    recipe: str = ""
    started: float | None = None   # seconds since the epoch
    train_seconds: float | None = None
    epochs: float | None = None
    images_per_second: float | None = None
    knn_init: float | None = None  # the random-init floor
    knn: float | None = None
    probe: float | None = None
    tags: list[str] = field(default_factory=list)
    note: str = ""
    message: str = ""            # why it failed, or where it runs

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def resumable(self) -> bool:
        return self.status in ("interrupted", "stopped", "failed") and (self.path / "checkpoints" / "last.pt").is_file()


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _status(status: dict, summary: dict) -> tuple[str, str]:
    kind = status.get("status")
    if kind == "running":
        if status.get("host") != socket.gethostname():
            return "running", f"on {status.get('host')}"
        if not _process_alive(int(status.get("pid", -1))):
            return "interrupted", "its process ended without finishing"
        return "running", ""
    if kind in STATUSES:
        return kind, status.get("message", "")
    if summary:  # a run of an earlier version, which wrote no status
        return ("stopped" if summary.get("stopped_early") else "finished"), ""
    return "interrupted", ""


def read_run(folder: str | Path) -> RunRecord | None:
    """The record of one run folder, or None when `folder` is not a run (no config.toml)."""
    folder = Path(folder)
    config_path = folder / "config.toml"
    if not config_path.is_file():
        return None
    try:
        config = tomllib.loads(config_path.read_text())
    except (OSError, ValueError):
        config = {}
    status, summary, meta = (_read_json(folder / name) for name in (STATUS_FILE, "summary.json", META_FILE))
    kind, message = _status(status, summary)
    record = RunRecord(
        path=folder, status=kind, message=message,
        method=str(config.get("method", {}).get("name", "")), recipe=str(config.get("method", {}).get("recipe", "")),
        data=str(config.get("data", {}).get("source", "")), backbone=str(config.get("backbone", {}).get("name", "")),
        started=_number(status.get("started")) or config_path.stat().st_mtime,
        tags=[str(t) for t in meta.get("tags", []) if isinstance(t, str)], note=str(meta.get("note", "")))
    if summary and kind != "running":
        record.train_seconds = _number(summary.get("train_seconds"))
        record.epochs = _number(summary.get("epochs"))
        record.images_per_second = _number(summary.get("images_per_second"))
        record.knn_init = _number(summary.get("knn_top1_init"))
        record.knn = _number(summary.get("knn_top1"))
        record.probe = _number(summary.get("linear_probe_top1"))
    else:  # running or cut short: what its metrics say so far
        rows = read_metrics(folder)
        steps = [r for r in rows if r.get("kind") == "step"]
        epochs = [r for r in rows if r.get("kind") == "epoch"]
        floors = [r for r in rows if r.get("kind") == "init"]
        if steps:
            record.train_seconds = _number(steps[-1].get("time"))
            record.epochs = _number(steps[-1].get("epoch"))
            record.images_per_second = _number(steps[-1].get("images_per_second"))
        if epochs:
            record.knn = _number(epochs[-1].get("knn_top1"))
        if floors:
            record.knn_init = _number(floors[0].get("knn_top1"))
        if summary:
            record.knn_init = _number(summary.get("knn_top1_init")) or record.knn_init
    return record


def list_runs(runs_dir: str | Path) -> list[RunRecord]:
    """Every run under `runs_dir`, newest first; an empty list when the folder does not exist."""
    root = Path(runs_dir).expanduser()
    if not root.is_dir():
        return []
    records = [r for r in (read_run(p) for p in sorted(root.iterdir()) if p.is_dir()) if r is not None]
    return sorted(records, key=lambda r: (-(r.started or 0.0), r.name))


def _write_meta(folder: Path, meta: dict) -> None:
    try:
        write_atomically(folder / META_FILE, json.dumps(meta, indent=2) + "\n")
    except OSError as error:
        raise UserError(f"cannot write {folder / META_FILE}: {error.strerror or error}") from None


def set_tags(record: RunRecord, tags: list[str]) -> None:
    cleaned = []
    for tag in tags:
        tag = tag.strip()
        if not tag or len(tag) > MAX_TAG:
            raise UserError(f"a tag is 1 to {MAX_TAG} characters, got {tag!r}")
        if tag not in cleaned:
            cleaned.append(tag)
    _write_meta(record.path, {"tags": cleaned, "note": record.note})
    record.tags = cleaned


def set_note(record: RunRecord, note: str) -> None:
    _write_meta(record.path, {"tags": record.tags, "note": note})
    record.note = note


def _refuse_running(record: RunRecord, what: str) -> None:
    if record.status == "running":
        raise UserError(f"cannot {what} {record.name} while it is running: stop it first")


def rename_run(record: RunRecord, new_name: str) -> RunRecord:
    """Move the run's folder to `new_name` beside it; its record, read again."""
    _refuse_running(record, "rename")
    new_name = new_name.strip()
    if not new_name or new_name in (".", "..") or "/" in new_name or "\\" in new_name:
        raise UserError(f"{new_name!r} is not a folder name: use letters, digits, - _ and .")
    target = record.path.with_name(new_name)
    if target.exists():
        raise UserError(f"a run named {new_name} already exists in {record.path.parent}")
    try:
        record.path.rename(target)
    except OSError as error:
        raise UserError(f"cannot rename {record.name}: {error.strerror or error}") from None
    return read_run(target)


def delete_run(record: RunRecord) -> None:
    """Delete the run's folder for good (the app moves it to the system trash instead when it can)."""
    _refuse_running(record, "delete")
    try:
        shutil.rmtree(record.path)
    except OSError as error:
        raise UserError(f"cannot delete {record.name}: {error.strerror or error}") from None


def format_duration(seconds: float | None) -> str:
    """h:mm:ss, or m:ss under an hour; "–" for None."""
    if seconds is None:
        return "–"
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def table_rows(records: list[RunRecord]) -> tuple[list[str], list[list[str]]]:
    """The table's headers and cells as text, one row per run (the CLI prints them, the app shows them)."""
    def percent(value):
        return "–" if value is None else f"{value:.1%}"

    headers = ["run", "status", "method", "recipe", "data", "backbone", "started", "time", "epochs", "img/s",
               "kNN", "random init", "probe", "tags"]
    rows = [[r.name, r.status, r.method, r.recipe, r.data, r.backbone,
             time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started)) if r.started else "–",
             format_duration(r.train_seconds), "–" if r.epochs is None else f"{r.epochs:.4g}",
             "–" if r.images_per_second is None else f"{r.images_per_second:,.0f}",
             percent(r.knn), percent(r.knn_init), percent(r.probe), ", ".join(r.tags)] for r in records]
    return headers, rows


def format_table(records: list[RunRecord]) -> str:
    return aligned_table(*table_rows(records))


def aligned_table(headers: list[str], rows: list[list[str]]) -> str:
    """Cells of text in columns two spaces apart, under their headers (a terminal's table)."""
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in [headers, *rows]]
    return "\n".join(lines)


def resume_config(run_dir: str | Path):
    """The config a run resumes with: its own, with a ViT built as its checkpoint's weights were
    (whatever the method's layout choices are today)."""
    from .checkpoint import load_checkpoint
    from .config import ExperimentConfig, with_vit_layout_of
    from .models.build import backbone_state

    run = Path(run_dir).expanduser()
    config = ExperimentConfig.load(run / "config.toml")
    if config.backbone.is_vit:  # the checkpoint is read only where the layout can differ
        config = with_vit_layout_of(config, backbone_state(load_checkpoint(run)))
    return config


# -- races ---------------------------------------------------------------------------------
@dataclass
class RaceEntry:
    """One run a race planned: its method and seed, the name of its run folder (beside the
    race's folder, in the runs folder) and its status: waiting, running, one of STATUSES, or
    "not run" (the race was stopped or ended before it). Where its folder exists, `record` is
    that folder's and its status and message are the folder's (the folder is the truth)."""

    method: str
    seed: int
    run: str = ""
    status: str = "waiting"
    message: str = ""
    record: RunRecord | None = None


@dataclass
class RaceRecord:
    path: Path
    status: str                  # running, finished, stopped or interrupted
    plan: dict                   # the race's plan as it was given (ssl_engine.race.Race)
    created: float | None = None
    entries: list[RaceEntry] = field(default_factory=list)
    message: str = ""

    @property
    def name(self) -> str:
        return self.path.name


def read_race(folder: str | Path) -> RaceRecord | None:
    """The record of a race's folder, or None when `folder` holds no race.json. A race whose
    process ended without finishing is interrupted, and its runs that never started were not run."""
    folder = Path(folder)
    stored = _read_json(folder / RACE_FILE)
    if not stored:
        return None
    status, message = _status(stored, {})
    entries = []
    for entry in stored.get("runs", []):
        if not isinstance(entry, dict):
            continue
        run = str(entry.get("run") or "")
        record = read_run(folder.parent / run) if run else None
        kind, why = str(entry.get("status", "waiting")), str(entry.get("message", ""))
        if record is not None:
            kind, why = record.status, record.message or why
        elif status != "running" and kind in ("waiting", "running"):
            kind = "not run"
        seed = entry.get("seed")
        entries.append(RaceEntry(method=str(entry.get("method", "")), seed=seed if isinstance(seed, int) else 0,
                                 run=run, status=kind, message=why, record=record))
    plan = stored.get("plan")
    return RaceRecord(path=folder, status=status, message=message, plan=plan if isinstance(plan, dict) else {},
                      created=_number(stored.get("created")), entries=entries)


def list_races(runs_dir: str | Path) -> list[RaceRecord]:
    """Every race under `runs_dir`, newest first; an empty list when the folder does not exist."""
    root = Path(runs_dir).expanduser()
    if not root.is_dir():
        return []
    races = [r for r in (read_race(p) for p in sorted(root.iterdir()) if p.is_dir()) if r is not None]
    return sorted(races, key=lambda r: (-(r.created or 0.0), r.name))
