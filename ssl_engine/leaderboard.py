"""A race's leaderboard: one row per run, best kNN first, against each run's random-init floor.

The rows are read from the race's record (`run_store.read_race`), so from the run folders
themselves; they are written as `leaderboard.csv` (plain numbers, for a spreadsheet or pandas)
and `leaderboard.md` (percentages, a note per failed run and, where the race has several seeds,
each method's mean and standard deviation over its seeds), and shown as a terminal table.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from .run_store import RaceRecord, aligned_table, format_duration
from .runs import write_atomically

CSV_FILE = "leaderboard.csv"
MARKDOWN_FILE = "leaderboard.md"
HEADERS = ["method", "seed", "kNN", "random-init floor", "gain", "linear probe", "epochs", "images/s",
           "train time", "status", "run folder"]
CSV_HEADERS = ["method", "seed", "knn_top1", "knn_top1_init", "gain", "linear_probe_top1", "epochs",
               "images_per_second", "train_seconds", "status", "run_folder", "message"]


@dataclass
class LeaderboardRow:
    """One run of a race: what its folder says, or its race entry where it has none."""

    method: str
    seed: int
    status: str
    order: int = 0                  # its place in the race's plan
    run: str = ""                   # the run folder's name (in the runs folder)
    message: str = ""
    knn: float | None = None        # kNN top-1 after training
    floor: float | None = None      # kNN top-1 of the same network at random initialisation
    probe: float | None = None      # linear-probe top-1
    epochs: float | None = None
    images_per_second: float | None = None
    train_seconds: float | None = None

    @property
    def gain(self) -> float | None:
        """What training added to the floor (kNN − floor), or None where either is missing."""
        return None if self.knn is None or self.floor is None else self.knn - self.floor


def leaderboard_rows(race: RaceRecord) -> list[LeaderboardRow]:
    """The race's runs, best kNN first; runs without one (failed, stopped, not run yet) after
    them in the plan's order."""
    rows = []
    for order, entry in enumerate(race.entries):
        row = LeaderboardRow(method=entry.method, seed=entry.seed, status=entry.status, order=order,
                             run=entry.run if entry.record is not None else "", message=entry.message)
        record = entry.record
        if record is not None:
            row.knn, row.floor, row.probe = record.knn, record.knn_init, record.probe
            row.epochs, row.images_per_second, row.train_seconds = (record.epochs, record.images_per_second,
                                                                    record.train_seconds)
            if record.status == "running":  # a kNN so far is not a result yet
                row.knn = row.probe = None
        rows.append(row)
    return ranked(rows)


def ranked(rows: list[LeaderboardRow]) -> list[LeaderboardRow]:
    # ties in kNN keep the plan's order, so the order never depends on how a sort breaks them
    return sorted(rows, key=lambda r: (r.knn is None, -(r.knn or 0.0), r.order))


# -- cells --------------------------------------------------------------------------------
def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _points(value: float | None) -> str:
    """A difference of two accuracies, in percentage points."""
    return "–" if value is None else f"{value * 100:+.1f} pts"


def _speed(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def _epochs(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def row_cells(row: LeaderboardRow) -> list[str]:
    """The row as text, one cell per HEADERS."""
    return [row.method, str(row.seed), _percent(row.knn), _percent(row.floor), _points(row.gain),
            _percent(row.probe), _epochs(row.epochs), _speed(row.images_per_second),
            format_duration(row.train_seconds), row.status, row.run or "–"]


def format_leaderboard(rows: list[LeaderboardRow]) -> str:
    """The leaderboard as a terminal table."""
    return aligned_table(HEADERS, [row_cells(row) for row in rows])


# -- per method, over its seeds -------------------------------------------------------------
MEAN_HEADERS = ["method", "runs", "kNN", "random-init floor", "gain", "linear probe", "epochs", "images/s",
                "train time"]


def _values(rows: list[LeaderboardRow], name: str) -> list[float]:
    return [v for v in (getattr(row, name) for row in rows) if v is not None and math.isfinite(v)]


def _mean_std(values: list[float], cell) -> str:
    """mean ± sample standard deviation (n − 1), as `cell` writes a value; one value alone."""
    if not values:
        return "–"
    if len(values) == 1:
        return cell(values[0])
    return f"{cell(statistics.fmean(values))} ± {cell(statistics.stdev(values)).lstrip('+')}"


def method_means(rows: list[LeaderboardRow]) -> list[list[str]]:
    """One row of cells per method: the mean ± standard deviation of each measure over the
    runs that have it (the finished ones for kNN, gain and probe), best mean kNN first."""
    by_method: dict[str, list[LeaderboardRow]] = {}
    for row in sorted(rows, key=lambda r: r.order):
        by_method.setdefault(row.method, []).append(row)
    first = {method: group[0].order for method, group in by_method.items()}

    def key(method):
        knn = _values(by_method[method], "knn")
        return (not knn, -(statistics.fmean(knn) if knn else 0.0), first[method])

    table = []
    for method in sorted(by_method, key=key):
        group = by_method[method]
        finished = [row for row in group if row.knn is not None]
        gains = [row.gain for row in finished if row.gain is not None]
        table.append([method, f"{len(finished)} of {len(group)}", _mean_std(_values(group, "knn"), _percent),
                      _mean_std(_values(group, "floor"), _percent), _mean_std(gains, _points),
                      _mean_std(_values(group, "probe"), _percent), _mean_std(_values(finished, "epochs"), _epochs),
                      _mean_std(_values(finished, "images_per_second"), _speed),
                      _mean_std(_values(finished, "train_seconds"), format_duration)])
    return table


# -- files ----------------------------------------------------------------------------------
def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def leaderboard_csv(rows: list[LeaderboardRow]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_HEADERS)
    for row in rows:
        writer.writerow([row.method, row.seed, _number(row.knn), _number(row.floor), _number(row.gain),
                         _number(row.probe), _number(row.epochs), _number(row.images_per_second),
                         _number(row.train_seconds), row.status, row.run, row.message])
    return buffer.getvalue()


def _markdown_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells):
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"
    return [line(headers), "|" + "|".join("---" for _ in headers) + "|", *(line(cells) for cells in rows)]


def plan_line(plan: dict) -> str:
    seeds = plan.get("seeds", [])
    parts = [f"{', '.join(plan.get('methods', []))} on {plan.get('dataset', '?')}",
             f"{plan.get('minutes', '?')} min of training each",
             f"seed{'s' if len(seeds) != 1 else ''} {', '.join(str(s) for s in seeds)}",
             f"recipe {plan.get('recipe') or 'by image size'}",
             "backbone " + (plan.get("backbone") or "as each recipe gives"),
             f"device {plan.get('device', 'auto')}"]
    if plan.get("assignments"):
        parts.append("set " + ", ".join(f"`{a}`" for a in plan["assignments"]))
    return "; ".join(parts)


def leaderboard_markdown(race: RaceRecord, rows: list[LeaderboardRow]) -> str:
    lines = [f"# Race {race.name}", "", plan_line(race.plan) + ".", "",
             f"Status: {race.status}, updated {time.strftime('%Y-%m-%d %H:%M:%S')}. Gain: kNN minus the "
             f"random-init floor (the same network before training), in percentage points.", ""]
    lines += _markdown_table(HEADERS, [row_cells(row) for row in rows])
    if len(race.plan.get("seeds", [])) > 1:
        lines += ["", "## Per method, mean ± standard deviation over its seeds", ""]
        lines += _markdown_table(MEAN_HEADERS, method_means(rows))
    notes = [row for row in sorted(rows, key=lambda r: r.order) if row.message]
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {row.method}, seed {row.seed}, {row.status}: {row.message}" for row in notes]
    return "\n".join(lines) + "\n"


def write_leaderboard(race: RaceRecord) -> list[LeaderboardRow]:
    """Rewrite the race folder's leaderboard.csv and leaderboard.md from its runs; the rows."""
    rows = leaderboard_rows(race)
    write_atomically(Path(race.path) / CSV_FILE, leaderboard_csv(rows))
    write_atomically(Path(race.path) / MARKDOWN_FILE, leaderboard_markdown(race, rows))
    return rows
