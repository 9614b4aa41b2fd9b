"""Races of methods, for real: `main.py compare` on digits, the race folder and its leaderboard
against each run's own summary.json, the runs in the run store, seeds, a run that fails at run
time, a stop, mistakes refused before anything is made, and two processes sharing the CPU."""

import contextlib
import csv
import io
import json

import pytest
import torch

from ssl_engine.cli import main
from ssl_engine.errors import ConfigError
from ssl_engine.leaderboard import CSV_FILE, MARKDOWN_FILE
from ssl_engine.race import Race, RaceFinished, RaceRunEnded, RaceRunner, RaceRunStarted, RaceStarted, RunProgress
from ssl_engine.run_store import RACE_FILE, list_races, list_runs, read_race
from ssl_engine.train.events import Finished, RunStarted

# narrow heads and small batches keep each run to a few seconds on a busy CPU (the same keys
# for SimCLR and BYOL, so one --set reaches both)
FAST = ["train.batch_size=32", "method.hidden_dim=64", "method.projection_dim=32"]
MINUTES = "0.02"  # 1.2 s of training; the floor's and the final evaluations come on top


def compare(runs_dir, *flags, sets=FAST):
    argv = ["compare", "--dataset", "digits", "--minutes", MINUTES, "--runs-dir", str(runs_dir), *flags]
    for assignment in sets:
        argv += ["--set", assignment]
    return main(argv)


def read_csv(race_folder):
    with open(race_folder / CSV_FILE, newline="") as file:
        return list(csv.DictReader(file))


def race_folder_of(runs_dir):
    [race] = [p for p in runs_dir.iterdir() if p.name.startswith("race-")]
    return race


def assert_rows_match_their_runs(rows, runs_dir):
    """Each leaderboard row says what its run folder's summary.json says."""
    for row in rows:
        summary = json.loads((runs_dir / row["run_folder"] / "summary.json").read_text())
        assert row["method"] == summary["method"]
        knn, floor = float(row["knn_top1"]), float(row["knn_top1_init"])
        assert knn == pytest.approx(summary["knn_top1"], abs=1e-5)
        assert floor == pytest.approx(summary["knn_top1_init"], abs=1e-5)
        assert float(row["gain"]) == pytest.approx(knn - floor, abs=1e-5)
        assert float(row["linear_probe_top1"]) == pytest.approx(summary["linear_probe_top1"], abs=1e-5)
        assert float(row["epochs"]) == pytest.approx(summary["epochs"], rel=1e-4)
        assert float(row["images_per_second"]) == pytest.approx(summary["images_per_second"], rel=1e-4)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The runs in this process on one thread: on a CPU that other work shares, small ops on
    two threads wait for each other (a run takes 5x as long)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits_race(tmp_path_factory):
    """The acceptance race: simclr and byol on digits, one after another, from the command line."""
    runs_dir = tmp_path_factory.mktemp("race") / "runs"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = compare(runs_dir, "--methods", "simclr,byol")
    return code, out.getvalue(), runs_dir


def test_compare_writes_a_leaderboard_of_both_methods_against_their_floors(digits_race):
    code, out, runs_dir = digits_race
    assert code == 0
    race = race_folder_of(runs_dir)
    assert not (race / "config.toml").exists()
    rows = read_csv(race)
    assert sorted(row["method"] for row in rows) == ["byol", "simclr"]
    assert all(row["status"] == "finished" and row["seed"] == "0" for row in rows)
    assert_rows_match_their_runs(rows, runs_dir)
    knns = [float(row["knn_top1"]) for row in rows]
    assert knns == sorted(knns, reverse=True)  # best first
    markdown = (race / MARKDOWN_FILE).read_text()
    for row in rows:  # each run's line in the markdown table, its floor as a percentage
        line = next(line for line in markdown.splitlines() if row["run_folder"] in line)
        assert f"| {row['method']} |" in line and f"{float(row['knn_top1_init']):.1%}" in line
    assert "mean ± standard deviation" not in markdown  # one seed: no means
    # a line as each run starts and ends, the table, and where it is
    assert out.count(": started (") == 2 and out.count(": finished, kNN ") == 2
    assert str(race / MARKDOWN_FILE) in out and "random-init floor" in out


def test_the_race_runs_are_ordinary_runs_and_the_race_reads_back(digits_race, capsys):
    _, _, runs_dir = digits_race
    race = race_folder_of(runs_dir)
    stored = json.loads((race / RACE_FILE).read_text())
    planned = {entry["run"] for entry in stored["runs"]}
    assert {record.name for record in list_runs(runs_dir)} == planned  # both runs, not the race folder
    assert main(["runs", "--runs-dir", str(runs_dir)]) == 0
    table = capsys.readouterr().out
    assert all(name in table for name in planned) and race.name not in table
    [record] = list_races(runs_dir)
    assert record.path == race and record.status == "finished"
    assert [(e.method, e.seed, e.status) for e in record.entries] == [("simclr", 0, "finished"),
                                                                      ("byol", 0, "finished")]
    assert all(e.record is not None and e.record.knn is not None for e in record.entries)


def test_seeds_give_a_row_per_method_and_seed_and_a_mean_per_method(tmp_path):
    race = Race(methods=("simclr", "byol"), dataset="shapes", minutes=0.01, seeds=(0, 1), device="cpu",
                runs_dir=str(tmp_path / "runs"), assignments=("data.shapes_count=100", *FAST))
    runner = RaceRunner(race)
    events = []
    runner.subscribe(events.append)
    rows = runner.run()
    assert sorted((row.method, row.seed) for row in rows) == [("byol", 0), ("byol", 1), ("simclr", 0), ("simclr", 1)]
    assert all(row.status == "finished" and row.knn is not None and row.floor is not None for row in rows)
    assert_rows_match_their_runs(read_csv(runner.folder), tmp_path / "runs")
    # every method once per seed: a race stopped early has compared them all on the first seeds
    starts = [e for e in events if isinstance(e, RaceRunStarted)]
    assert [(e.method, e.seed) for e in starts] == [("simclr", 0), ("byol", 0), ("simclr", 1), ("byol", 1)]
    assert isinstance(events[0], RaceStarted) and isinstance(events[-1], RaceFinished)
    assert [e.index for e in events if isinstance(e, RaceRunEnded)] == [0, 1, 2, 3]
    # each trainer's events come through, tagged with their run
    finished = [e for e in events if isinstance(e, RunProgress) and isinstance(e.event, Finished)]
    assert [e.index for e in finished] == [0, 1, 2, 3]
    assert {e.event.run_dir for e in finished} == {s.run_dir for s in starts}
    markdown = (runner.folder / MARKDOWN_FILE).read_text()
    means = markdown.split("mean ± standard deviation over its seeds")[1]
    for method in ("simclr", "byol"):
        knns = [row.knn for row in rows if row.method == method]
        mean = sum(knns) / 2
        assert f"| {method} | 2 of 2 | {mean:.1%} ± " in means


def test_a_run_that_fails_is_recorded_and_the_race_goes_on(tmp_path):
    # 100 shapes leave 80 training images, fewer than DeepCluster's 100 clusters: it fails when
    # it first clusters, at run time; SimCLR, after it, trains
    race = Race(methods=("deepcluster", "simclr"), dataset="shapes", minutes=0.01, device="cpu",
                runs_dir=str(tmp_path / "runs"), assignments=("data.shapes_count=100", "train.batch_size=32"))
    runner = RaceRunner(race)
    rows = {row.method: row for row in runner.run()}
    assert rows["deepcluster"].status == "failed" and "num_clusters" in rows["deepcluster"].message
    assert rows["deepcluster"].knn is None and rows["deepcluster"].run  # its folder holds the failure
    assert rows["simclr"].status == "finished" and rows["simclr"].knn is not None
    by_method = {row["method"]: row for row in read_csv(runner.folder)}
    assert by_method["deepcluster"]["status"] == "failed" and by_method["deepcluster"]["knn_top1"] == ""
    assert "num_clusters" in by_method["deepcluster"]["message"]
    assert list(by_method) == ["simclr", "deepcluster"]  # a run without a kNN comes last
    assert "deepcluster, seed 0, failed: method.num_clusters" in (runner.folder / MARKDOWN_FILE).read_text()
    assert read_race(runner.folder).status == "finished"


def test_a_stop_ends_the_current_run_with_its_checkpoint_and_the_rest_are_not_run(tmp_path):
    race = Race(methods=("simclr", "byol"), dataset="shapes", minutes=5, device="cpu", runs_dir=str(tmp_path / "runs"),
                assignments=("data.shapes_count=100", *FAST))
    runner = RaceRunner(race)

    def stop_once_training(event):  # as a window's Stop button would, from another thread
        if isinstance(event, RunProgress) and isinstance(event.event, RunStarted):
            runner.control.stop()
    runner.subscribe(stop_once_training)
    rows = {row.method: row for row in runner.run()}
    assert rows["simclr"].status == "stopped" and rows["byol"].status == "not run"
    assert (tmp_path / "runs" / rows["simclr"].run / "checkpoints" / "last.pt").is_file()
    assert rows["byol"].run == "" and len(list_runs(tmp_path / "runs")) == 1
    assert read_race(runner.folder).status == "stopped"


@pytest.mark.parametrize("flags, sets, message", [
    (["--methods", "simclr,nosuch"], FAST, "--methods has unknown method 'nosuch'"),
    (["--methods", "msn,simclr", "--backbone", "resnet18"], FAST,
     "backbone.name must be vit_tiny or vit_small for msn, got 'resnet18'"),
    (["--methods", "simclr", "--minutes", "0"], FAST, "--minutes must be > 0, got 0"),
    (["--methods", " , "], FAST, "--methods must name at least one method"),
    (["--methods", "simclr", "--seeds", "0,x"], FAST, "--seeds must be whole numbers"),
    (["--methods", "simclr,byol"], ["method.temperature=0.2"], "method.temperature is not a known setting (known: "
                                                               "projection_dim, hidden_dim, base_momentum, predictor, "
                                                               "ema_target) (for byol)"),
    (["--methods", "simclr"], ["train.seed=3"], "train.seed is set by the seeds of the race"),
])
def test_a_bad_plan_is_one_line_before_anything_is_made(flags, sets, message, tmp_path, capsys):
    argv = ["compare", "--dataset", "digits", "--runs-dir", str(tmp_path / "runs"), *flags]
    for assignment in sets:
        argv += ["--set", assignment]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_the_plan_names_every_problem_at_once():
    with pytest.raises(ConfigError) as caught:
        Race(methods=("simclr", "simclr", "nosuch"), dataset="digits", minutes=-1, seeds=()).configs()
    addresses = [problem.address for problem in caught.value.problems]
    assert sorted(addresses) == ["methods", "methods", "minutes", "seeds"]


def test_parallel_processes_on_the_cpu_give_the_same_leaderboard(tmp_path, capsys):
    runs_dir = tmp_path / "runs"
    assert compare(runs_dir, "--methods", "simclr,byol", "--parallel", "2", "--device", "cpu") == 0
    assert "2 at a time" in capsys.readouterr().out
    race = race_folder_of(runs_dir)
    rows = read_csv(race)
    assert sorted(row["method"] for row in rows) == ["byol", "simclr"]
    assert all(row["status"] == "finished" for row in rows)
    assert_rows_match_their_runs(rows, runs_dir)
    assert {record.name for record in list_runs(runs_dir)} == {row["run_folder"] for row in rows}
    # each ran in a process of its own, from the config the race wrote
    assert sorted(p.stem for p in (race / "configs").iterdir()) == sorted(row["run_folder"] for row in rows)


def test_a_race_can_run_each_method_also_without_its_safeguard(tmp_path):
    race = Race(methods=("simsiam", "mae"), dataset="digits", minutes=0.05, runs_dir=str(tmp_path / "runs"),
                also_without_safeguard=True)
    assert race.entrants() == ["simsiam", "simsiam without safeguard", "mae"]  # mae declares none
    configs = race.configs()
    assert [c.method.name for c in configs] == ["simsiam", "simsiam", "mae"]
    assert configs[0].method.params.stop_gradient and not configs[1].method.params.stop_gradient
