"""The run store: every run under the runs folder with its status, what it trained and how
well, read from real run folders; tags, notes, renaming and deleting; `main.py runs`."""

import json
import shutil
import subprocess
import sys

import pytest

from ssl_engine.cli import main
from ssl_engine.errors import UserError
from ssl_engine.run_store import (delete_run, format_table, list_runs, read_run, rename_run, set_note, set_tags,
                                  table_rows)
from ssl_engine.runs import STATUS_FILE
from tests.helpers import stopped_run, tiny_config


@pytest.fixture
def runs(tmp_path, trained_run):
    """A runs folder with a copy of the session's finished run and a run stopped after step 3."""
    root = tmp_path / "runs"
    shutil.copytree(trained_run, root / "finished")
    trainer, _ = stopped_run(tiny_config(tmp_path / "stopped", "byol", "train.run_name=stopped",
                                         f"train.runs_dir={root}"), at_step=3)
    return root


def test_each_run_has_its_status_method_data_and_results(runs, trained_run):
    records = {r.name: r for r in list_runs(runs)}
    assert set(records) == {"finished", "stopped"}
    finished, stopped = records["finished"], records["stopped"]
    summary = json.loads((trained_run / "summary.json").read_text())
    assert finished.status == "finished" and finished.method == "simclr" and finished.data == "shapes"
    assert finished.backbone == "small_cnn" and finished.recipe
    assert finished.knn == pytest.approx(summary["knn_top1"]) and finished.knn_init == pytest.approx(summary["knn_top1_init"])
    assert finished.epochs == pytest.approx(summary["epochs"]) and finished.train_seconds > 0
    assert stopped.status == "stopped" and stopped.method == "byol" and stopped.epochs == pytest.approx(3 / 5)
    assert stopped.resumable and not finished.resumable
    # newest first: the stopped run was made after the copy of the session's run
    assert [r.name for r in list_runs(runs)] == ["stopped", "finished"]


def test_a_run_whose_process_died_is_interrupted_and_one_alive_is_running(runs):
    folder = runs / "stopped"
    status = json.loads((folder / STATUS_FILE).read_text())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / STATUS_FILE).write_text(json.dumps({**status, "status": "running", "pid": dead.pid}))
    record = read_run(folder)
    assert record.status == "interrupted" and record.resumable
    assert record.epochs == pytest.approx(3 / 5)  # from its metrics, as it has no summary of the end
    (folder / STATUS_FILE).write_text(json.dumps({**status, "status": "running"}))  # this process: alive
    assert read_run(folder).status == "running"
    with pytest.raises(UserError, match="cannot delete stopped while it is running"):
        delete_run(read_run(folder))


def test_tags_notes_renaming_and_deleting(runs):
    record = read_run(runs / "finished")
    set_tags(record, ["baseline", " cifar-like ", "baseline"])
    set_note(record, "the first try")
    again = read_run(runs / "finished")
    assert again.tags == ["baseline", "cifar-like"] and again.note == "the first try"
    with pytest.raises(UserError, match="a tag is 1 to 40 characters"):
        set_tags(again, ["x" * 41])
    with pytest.raises(UserError, match="a run named stopped already exists"):
        rename_run(again, "stopped")
    with pytest.raises(UserError, match="is not a folder name"):
        rename_run(again, "../elsewhere")
    renamed = rename_run(again, "simclr-baseline")
    assert renamed.path == runs / "simclr-baseline" and renamed.tags == ["baseline", "cifar-like"]
    delete_run(renamed)
    assert [r.name for r in list_runs(runs)] == ["stopped"]


def test_the_table_and_the_command_line_list_the_same_runs(runs, capsys):
    headers, rows = table_rows(list_runs(runs))
    assert headers[:3] == ["run", "status", "method"] and [row[:3] for row in rows] == [
        ["stopped", "stopped", "byol"], ["finished", "finished", "simclr"]]
    assert main(["runs", "--runs-dir", str(runs)]) == 0
    printed = capsys.readouterr().out
    assert printed.strip() == format_table(list_runs(runs))
    assert main(["runs", "--runs-dir", str(runs), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["run"], line["status"]) for line in lines] == [("stopped", "stopped"), ("finished", "finished")]
    assert main(["runs", "--runs-dir", str(runs / "none")]) == 0
    assert "no runs in" in capsys.readouterr().err
