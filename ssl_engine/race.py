"""A race of methods: several methods (and seeds) on one data set, each for the same minutes of
training, ranked on a leaderboard by kNN against each run's random-init floor.

A `Race` is the plan; it is checked whole (`Race.configs`) before anything is created or
trained. `RaceRunner.run()` then makes the race's folder inside the runs folder,
`race-DATE-TIME-METHODS/` (no config.toml: the run store does not take it for a run), holding
`race.json` (the plan, and each run's folder name and status, rewritten as runs start and
end) and the leaderboard (`ssl_engine.leaderboard`), rewritten after each run from the run
folders. Each run is an ordinary run folder beside it, so `main.py runs` and the Runs tab list
it. A run that fails is recorded with its message and the race goes on.

The runs go one after another in this process, or, with `parallel` N, N at a time, each in a
process of its own (`python main.py train --config ...`): on N CUDA GPUs, one each
(CUDA_VISIBLE_DEVICES), or on the CPU, which they share. In this process the trainer's events
reach the listeners (as `RunProgress`); a run in a process of its own tells only when it starts
and ends (its progress is in its folder's metrics.jsonl). The runner never blocks on a UI and
is stopped through its `TrainingControl`, so a window drives it from a worker thread:
`control.stop()` stops the current runs with their checkpoints, and the runs not started are
marked not run (pause and resume reach a run in this process only).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .config import ExperimentConfig, assigned_image_size, parse_assignments
from .errors import ConfigError, Problem, UserError
from .leaderboard import LeaderboardRow, write_leaderboard
from .run_store import RACE_FILE, RaceRecord, read_race
from .runs import default_run_name, write_atomically
from .train.control import TrainingControl
from .train.events import EventRates

RACE_PREFIX = "race-"
RACE_FORMAT = "ssl_explorer/race/1"
# settings the race sets itself, with the flag (or field) that sets them
RACE_SETTINGS = {"method.name": "the methods", "method.recipe": "the recipe", "data.source": "the data set",
                 "backbone.name": "the backbone", "train.minutes": "the minutes", "train.epochs": "the minutes",
                 "train.seed": "the seeds", "train.device": "the device", "train.runs_dir": "the runs folder",
                 "train.run_name": "the race, which names its runs"}
POLL_SECONDS = 0.2
WITHOUT_SAFEGUARD = " without safeguard"  # an entrant's suffix: the method with its safeguard switched off  # how often a parallel race looks at its processes and its control


@dataclass(frozen=True)
class Race:
    """The plan of a race. `recipe` None: the image size's choice (as `for_method`);
    `backbone` None: each method's recipe's; `assignments`: `--set` strings (KEY=VALUE)
    applied to every run."""

    methods: tuple[str, ...]
    dataset: str
    minutes: float
    seeds: tuple[int, ...] = (0,)
    recipe: str | None = None
    backbone: str | None = None
    device: str = "auto"
    runs_dir: str = "runs"
    assignments: tuple[str, ...] = ()
    parallel: int = 1
    also_without_safeguard: bool = False  # each method with a safeguard also runs with it switched off

    def entrants(self) -> list[str]:
        """What races: each method, followed, with `also_without_safeguard`, by the same method
        with its safeguard switched off ("simsiam without safeguard"), a collapse demo beside it."""
        from .methods import METHODS

        entrants = []
        for method in self.methods:
            entrants.append(method)
            if self.also_without_safeguard and method in METHODS and METHODS[method].safeguard is not None:
                entrants.append(method + WITHOUT_SAFEGUARD)
        return entrants

    def order(self) -> list[tuple[str, int]]:
        """(entrant, seed) of each run, in the order they start: every entrant once per seed, so
        that a race stopped early has compared each method on the first seeds."""
        return [(entrant, seed) for seed in self.seeds for entrant in self.entrants()]

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "methods": list(self.methods), "seeds": list(self.seeds),
                "assignments": list(self.assignments)}

    def configs(self) -> list[ExperimentConfig]:
        """The validated config of each run, in `order()`; a ConfigError holding every problem of
        the plan (each once, naming the methods it concerns when not all) otherwise."""
        from .methods import METHODS

        known = [m for m in self.methods if m in METHODS]
        unknown = [m for m in self.methods if m not in METHODS]
        problems = []
        if unknown:
            problems.append(Problem("methods", f"has unknown method{'s' if len(unknown) > 1 else ''} "
                                               f"{', '.join(map(repr, unknown))} "
                                               f"(known: {', '.join(sorted(METHODS))})"))
        problems += self._plan_problems()
        try:
            assigned = parse_assignments(list(self.assignments))
        except ConfigError as error:
            raise ConfigError(problems + error.problems) from None
        for address, _ in assigned:
            if address in RACE_SETTINGS:
                problems.append(Problem(address, f"is set by {RACE_SETTINGS[address]} of the race, not by --set"))
        if problems:
            raise ConfigError(problems)

        by_method, problems = self._method_configs(known, assigned)
        problems = problems or self._device_problems()
        if problems:
            raise ConfigError(problems)
        configs = []
        for entrant, seed in self.order():
            config = by_method[entrant.removesuffix(WITHOUT_SAFEGUARD)]
            if entrant.endswith(WITHOUT_SAFEGUARD):
                config = config.without_safeguard()
            configs.append(config.with_values([("train.seed", seed)]).validate())
        return configs

    def _method_configs(self, methods: list[str], assigned: list) -> tuple[dict, list[Problem]]:
        """Each method's validated config (seed 0), and the problems of those that have some:
        each problem once, with the methods it concerns where that is not all of them."""
        configs, found = {}, []  # found: (problem, the methods it concerns)
        for method in methods:
            try:
                configs[method] = self._config(method, assigned).validate()
            except ConfigError as error:
                for problem in error.problems:
                    concerned = next((names for seen, names in found if seen == problem), None)
                    if concerned is None:
                        concerned = []
                        found.append((problem, concerned))
                    concerned.append(method)
        problems = []
        for problem, concerned in found:
            # "must be vit_tiny for msn" names its method already
            named = len(concerned) == 1 and re.search(rf"\b{concerned[0]}\b", problem.message)
            if len(concerned) < len(methods) and not named:
                problem = Problem(problem.address, f"{problem.message} (for {', '.join(concerned)})")
            problems.append(problem)
        return configs, problems

    def _plan_problems(self) -> list[Problem]:
        from .data import FOLDER_PREFIX
        from .data.folder import list_folder

        problems = []
        if not self.methods:
            problems.append(Problem("methods", "must name at least one method"))
        repeated = sorted({m for m in self.methods if self.methods.count(m) > 1})
        if repeated:
            problems.append(Problem("methods", f"names {', '.join(repeated)} more than once (use seeds for repeats)"))
        if not self.seeds:
            problems.append(Problem("seeds", "must hold at least one seed"))
        bad_seeds = [s for s in self.seeds if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < 2 ** 31]
        if bad_seeds:
            problems.append(Problem("seeds", f"must be whole numbers from 0 to 2^31 - 1, got {bad_seeds}"))
        elif len(set(self.seeds)) < len(self.seeds):
            problems.append(Problem("seeds", f"names a seed more than once: {list(self.seeds)}"))
        if not isinstance(self.minutes, (int, float)) or not self.minutes > 0:
            problems.append(Problem("minutes", f"must be > 0, got {self.minutes}"))
        if isinstance(self.parallel, bool) or not isinstance(self.parallel, int) or self.parallel < 1:
            problems.append(Problem("parallel", f"must be a whole number >= 1, got {self.parallel}"))
        if self.dataset.startswith(FOLDER_PREFIX) and self.dataset[len(FOLDER_PREFIX):].strip():
            # a missing folder would fail every run in turn: say it once, before any starts
            path = self.dataset[len(FOLDER_PREFIX):].strip()
            try:
                if not list_folder(path).files:
                    problems.append(Problem("", f"folder {path} holds no images"))
            except UserError as error:
                problems.append(Problem("", str(error)))
        return problems

    def _config(self, method: str, assigned: list) -> ExperimentConfig:
        """Method `method`'s recipe with the race's settings, then the assignments (the linear
        probe is on unless they turn it off); seed 0."""
        base = ExperimentConfig.for_method(method, assigned_image_size(list(self.assignments)), self.recipe)
        values = [("data.source", self.dataset), ("train.minutes", float(self.minutes)), ("train.seed", 0),
                  ("train.device", self.device), ("train.runs_dir", self.runs_dir), ("train.linear_probe", True)]
        if self.backbone is not None:
            values.append(("backbone.name", self.backbone))
        return base.with_values(values + assigned)

    def _device_problems(self) -> list[Problem]:
        """A parallel race runs one process per CUDA GPU, or shares the CPU: the device must say which."""
        if self.parallel == 1:
            return []
        import torch

        from .devices import resolve_device

        try:
            device = resolve_device(self.device)
        except ConfigError as error:
            return error.problems
        if device.type == "cpu":
            return []
        if device.type != "cuda" or self.device.startswith("cuda:"):
            return [Problem("parallel", f"runs one process per CUDA GPU or shares the CPU: use --device cuda, auto "
                                        f"or cpu, not {self.device}")]
        count = torch.cuda.device_count()
        if count < self.parallel:
            return [Problem("parallel", f"({self.parallel}) runs one process per CUDA GPU, and this machine has "
                                        f"{count}: use --parallel {count} or less, or --device cpu")]
        return []

    def folder_name(self, stamp: str) -> str:
        methods = "-".join(self.methods)
        if len(methods) > 60:
            methods = f"{len(self.methods)}-methods"
        return f"{RACE_PREFIX}{stamp}-{re.sub(r'[^A-Za-z0-9_.-]', '_', methods)}"


# -- events -----------------------------------------------------------------------------------
@dataclass
class RaceStarted:
    folder: str
    runs: list[tuple[str, int, str]]  # (method, seed, run folder name) in the order they start
    parallel: int


@dataclass
class RaceRunStarted:
    index: int                        # in RaceStarted.runs
    method: str
    seed: int
    run_dir: str


@dataclass
class RunProgress:
    """An event of the trainer of run `index` (a run in this process only)."""

    index: int
    event: object


@dataclass
class RaceRunEnded:
    index: int
    row: LeaderboardRow               # the run's leaderboard row, read from its folder


@dataclass
class RaceFinished:
    folder: str
    rows: list[LeaderboardRow]        # the final leaderboard, best first
    stopped: bool


@dataclass
class _Listener:
    callback: object
    rates: EventRates   # of the trainers' events


# -- running ------------------------------------------------------------------------------------
class RaceRunner:
    """Runs a race. Its plan is checked when the runner is made (a ConfigError, nothing
    created); `run()` blocks until the race ends and returns the leaderboard's rows."""

    def __init__(self, race: Race, control: TrainingControl | None = None):
        self.configs = race.configs()
        self.race = race
        self.control = control or TrainingControl()
        self.listeners: list[_Listener] = []
        self.folder: Path | None = None   # the race's folder, once run() has made it
        self.entries: list[dict] = []     # race.json's runs: method, seed, run folder, status, message
        self.created: float | None = None
        self._status = "running"

    def subscribe(self, callback, rates: EventRates | None = None) -> None:
        """Call `callback(event)` with the race's events and, at `rates`, the events of each
        trainer in this process, as RunProgress (default: the trainers' start, end and failure only)."""
        self.listeners.append(_Listener(callback, rates or EventRates(metrics_every_steps=0)))

    def _emit(self, event) -> None:
        for listener in self.listeners:
            listener.callback(event)

    # -- the folder --------------------------------------------------------------------------
    def _create_folder(self) -> None:
        root = Path(self.race.runs_dir).expanduser()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        name, n = self.race.folder_name(stamp), 1
        while (root / (name if n == 1 else f"{name}-{n}")).exists():
            n += 1
        self.folder = root / (name if n == 1 else f"{name}-{n}")
        try:
            self.folder.mkdir(parents=True)
        except OSError as error:
            raise UserError(f"cannot make the race's folder {self.folder}: {error.strerror or error}") from None
        taken: set[str] = set()
        for index, ((method, seed), config) in enumerate(zip(self.race.order(), self.configs)):
            demo = "-without-safeguard" if method.endswith(WITHOUT_SAFEGUARD) else ""
            run = f"{default_run_name(config, stamp)}{demo}-seed{seed}"
            unique, n = run, 1
            while unique in taken or (root / unique).exists():
                n += 1
                unique = f"{run}-{n}"
            taken.add(unique)
            self.configs[index] = config.with_values([("train.run_name", unique)])
            self.entries.append({"method": method, "seed": seed, "run": unique, "status": "waiting", "message": ""})
        self.created = time.time()
        self._save()

    def _save(self) -> None:
        record = {"format": RACE_FORMAT, "status": self._status, "pid": os.getpid(), "host": socket.gethostname(),
                  "created": self.created, "updated": time.time(), "plan": self.race.to_dict(), "runs": self.entries}
        write_atomically(self.folder / RACE_FILE, json.dumps(record, indent=2) + "\n")

    def _record(self) -> RaceRecord:
        return read_race(self.folder)

    def _run_dir(self, index: int) -> Path:
        return self.folder.parent / self.entries[index]["run"]

    def _started(self, index: int) -> None:
        self.entries[index]["status"] = "running"
        self._save()
        method, seed = self.race.order()[index]
        self._emit(RaceRunStarted(index=index, method=method, seed=seed, run_dir=str(self._run_dir(index))))

    def _ended(self, index: int, status: str, message: str = "") -> None:
        """Record how run `index` ended (its folder, where it has one, says it again and wins),
        rewrite the leaderboard and tell the listeners, with the run's row."""
        self.entries[index].update(status=status, message=message)
        self._save()
        rows = write_leaderboard(self._record())
        self._emit(RaceRunEnded(index=index, row=next(row for row in rows if row.order == index)))

    def _finish(self) -> list[LeaderboardRow]:
        stopped = self.control.stop_requested
        for entry in self.entries:
            if entry["status"] in ("waiting", "running"):
                entry["status"] = "not run"
        self._status = "stopped" if stopped else "finished"
        self._save()
        rows = write_leaderboard(self._record())
        self._emit(RaceFinished(folder=str(self.folder), rows=rows, stopped=stopped))
        return rows

    # -- the race --------------------------------------------------------------------------------
    def run(self) -> list[LeaderboardRow]:
        self._create_folder()
        self._emit(RaceStarted(folder=str(self.folder), parallel=self.race.parallel,
                               runs=[(e["method"], e["seed"], e["run"]) for e in self.entries]))
        write_leaderboard(self._record())
        try:
            if self.race.parallel > 1:
                self._run_in_processes()
            else:
                self._run_here()
        finally:  # also after an error of the race itself (not of a run): the rest are not run
            rows = self._finish()
        return rows

    def _run_here(self) -> None:
        from .train import Trainer

        for index, config in enumerate(self.configs):
            if self.control.stop_requested:
                return
            self._started(index)
            status, message = "finished", ""
            trainer = Trainer(config, control=self.control)
            for listener in self.listeners:
                trainer.subscribe(lambda event, callback=listener.callback, index=index:
                                  callback(RunProgress(index=index, event=event)), listener.rates)
            try:
                summary = trainer.run()
                status = "stopped" if summary.get("stopped_early") else "finished"
            except UserError as error:  # out of memory, a diverging loss, unreadable data...
                status, message = "failed", str(error)
            if trainer.run_dir is not None and trainer.run_dir.name != self.entries[index]["run"]:
                self.entries[index]["run"] = trainer.run_dir.name  # someone took the planned name meanwhile
            del trainer
            _release_memory(config.train.device)
            self._ended(index, status, message)

    # -- several processes -----------------------------------------------------------------
    def _run_in_processes(self) -> None:
        from .devices import resolve_device

        on_gpus = resolve_device(self.race.device).type == "cuda"
        slots = min(self.race.parallel, len(self.configs))
        # slot k runs on the k-th GPU this process sees (of those CUDA_VISIBLE_DEVICES names, if it does)
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
        gpus = [g.strip() for g in visible.split(",")] if visible else [str(k) for k in range(slots)]
        configs_dir, logs_dir = self.folder / "configs", self.folder / "logs"
        configs_dir.mkdir()
        logs_dir.mkdir()
        waiting = list(range(len(self.configs)))
        running: dict[int, tuple[subprocess.Popen, int, object]] = {}  # slot -> (process, index, log file)
        interrupted = False
        threads = max(1, (os.cpu_count() or 1) // slots)
        try:
            while waiting or running:
                if self.control.stop_requested:
                    waiting.clear()
                    if not interrupted:
                        for process, _, _ in running.values():
                            _interrupt(process)
                        interrupted = True
                for slot in [s for s in range(slots) if s not in running]:
                    if not waiting:
                        break
                    index = waiting.pop(0)
                    config = self.configs[index].with_values([("train.device", "cuda" if on_gpus else "cpu")])
                    path = configs_dir / f"{self.entries[index]['run']}.toml"
                    config.save(path)
                    env = dict(os.environ)
                    if on_gpus:
                        env["CUDA_VISIBLE_DEVICES"] = gpus[slot]
                    else:  # the processes share the cores: each takes its part, not all of them
                        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
                    log = open(logs_dir / f"{self.entries[index]['run']}.log", "w")
                    # a session of its own: a Ctrl-C in the terminal reaches the race, which stops
                    # each process once (a second interrupt would abort it without a checkpoint)
                    process = subprocess.Popen(
                        [sys.executable, str(MAIN_SCRIPT), "train", "--config", str(path), "--quiet"],
                        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                        start_new_session=True)
                    running[slot] = (process, index, log)
                    self._started(index)
                for slot, (process, index, log) in list(running.items()):
                    if process.poll() is None:
                        continue
                    log.close()
                    del running[slot]
                    self._ended(index, *_process_outcome(process.returncode, Path(log.name), interrupted))
                if running:
                    time.sleep(POLL_SECONDS)
        finally:
            for process, _, log in running.values():  # the race itself failed: leave no run behind
                _interrupt(process)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                log.close()


MAIN_SCRIPT = Path(__file__).resolve().parent.parent / "main.py"


def _interrupt(process: subprocess.Popen) -> None:
    """Ask a training process to stop with a checkpoint (its first Ctrl-C)."""
    if process.poll() is not None:
        return
    if os.name == "posix":
        process.send_signal(signal.SIGINT)
    else:  # no Ctrl-C to send to a process of its own: it keeps its last checkpoint
        process.terminate()


def _process_outcome(returncode: int, log: Path, interrupted: bool) -> tuple[str, str]:
    """(status, message) of a training process that ended: what its error line says when it
    failed (its run folder, where it made one, says the same)."""
    if returncode == 0:
        return ("stopped" if interrupted else "finished"), ""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    errors = [line[len("error: "):] for line in lines if line.startswith("error: ")]
    if interrupted and not errors:
        return "stopped", "stopped before it had started training"
    message = errors[-1] if errors else f"the training process ended with exit code {returncode}" + (
        f": {lines[-1]}" if lines else "")
    return "failed", message


def _release_memory(device: str) -> None:
    """Give the GPU's cached memory back between runs, so the next method starts with all of it."""
    import torch

    if device != "cpu" and torch.cuda.is_available():
        torch.cuda.empty_cache()
