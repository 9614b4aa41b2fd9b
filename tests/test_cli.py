"""The command line: train writes a run folder, eval reads it back, methods lists the
catalogue, and every user mistake is one line on stderr with exit code 2."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ssl_engine.cli import main
from ssl_engine.methods import FAMILIES, METHODS
from tests.helpers import SMALL_HEADS

ROOT = Path(__file__).resolve().parents[1]


def _train(tmp_path, *extra):
    return main(["train", "--method", "simclr", "--dataset", "shapes", "--epochs", "1", "--batch-size", "64",
                 "--device", "cpu", "--runs-dir", str(tmp_path / "runs"), "--quiet",
                 "--set", "data.shapes_count=400", "--set", "train.eval_subset=64",
                 *[a for s in SMALL_HEADS["simclr"] for a in ("--set", s)], *extra])


def test_methods_lists_every_method_by_family_with_ranges(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name, method in METHODS.items():
        assert f"  {name} " in out
        assert f"{method.family}: {FAMILIES[method.family]}" in out
    assert "temperature" in out and "= 0.5" in out and "[> 0, <= 10]" in out
    assert "lambd" in out and "sim_coeff" in out
    # each recipe says what its weight decay reaches and how it clips (DINO: parameter by parameter)
    def optimiser_line(name):
        return next(line for line in out[out.index(f"  {name} "):].splitlines() if "optimiser:" in line)

    assert "except on biases and norm layers" in optimiser_line("dino")
    assert "each parameter's gradient norm clipped at 3.0" in optimiser_line("dino")
    assert "on every parameter" in optimiser_line("swav") and "clipped" not in optimiser_line("swav")


def test_train_then_eval_the_checkpoint(tmp_path, capsys):
    assert _train(tmp_path) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["method"] == "simclr" and 0 <= summary["knn_top1"] <= 1
    run = next((tmp_path / "runs").iterdir())
    assert {p.name for p in run.iterdir()} >= {"config.toml", "metrics.jsonl", "checkpoints", "summary.json"}

    assert main(["eval", "--checkpoint", str(run / "checkpoints" / "last.pt"), "--data", "digits",
                 "--k", "5", "--device", "cpu", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["k"] == 5 and 0.1 < result["knn_top1"] <= 1 and 0.1 < result["linear_probe_top1"] <= 1

    assert main(["eval", "--checkpoint", str(run), "--data", "digits", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "kNN top-1 (k=20):" in text and "linear-probe top-1:" in text


def test_quiet_training_still_measures_the_knn_it_is_asked_for(tmp_path, capsys):
    assert _train(tmp_path, "--epochs", "2", "--knn-every", "1") == 0
    err = capsys.readouterr().err
    run = next((tmp_path / "runs").iterdir())
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    knn = [record["knn_top1"] for record in epochs if record["kind"] == "epoch"]
    assert len(knn) == 2 and all(0 <= value <= 1 for value in knn)
    assert "epoch 2: loss" in err and f"kNN top-1 {knn[1]:.3f}" in err


def test_baselines(capsys):
    assert main(["eval", "--baseline", "pixels", "--data", "digits", "--json"]) == 0
    pixels = json.loads(capsys.readouterr().out)
    assert pixels["knn_top1"] > 0.9  # raw pixels already separate handwritten digits
    assert main(["eval", "--baseline", "random", "--backbone", "small_cnn", "--data", "digits", "--json",
                 "--device", "cpu"]) == 0
    assert 0.1 < json.loads(capsys.readouterr().out)["knn_top1"] <= 1


def test_train_resumes_a_run(tmp_path, capsys):
    assert _train(tmp_path) == 0
    run = next((tmp_path / "runs").iterdir())
    capsys.readouterr()
    first = json.loads((run / "summary.json").read_text())
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["steps"] == 10 and resumed["knn_top1_init"] == first["knn_top1_init"]


def test_a_run_saved_with_another_vit_layout_resumes(tmp_path, capsys):
    """A SimMIM run from before its "auto" positions became a relative bias with LayerScale
    (absolute embeddings, no LayerScale) resumes as it was built."""
    sets = ["data.shapes_count=100", "train.eval_subset=16", "backbone.name=vit_tiny", "backbone.vit_depth=1",
            "backbone.patch_size=8", "backbone.position_embedding=sincos", "backbone.layer_scale=off"]
    assert main(["train", "--method", "simmim", "--dataset", "shapes", "--epochs", "1", "--batch-size", "32",
                 "--device", "cpu", "--runs-dir", str(tmp_path / "runs"), "--quiet",
                 *[a for s in sets for a in ("--set", s)]]) == 0
    run = next((tmp_path / "runs").iterdir())
    saved = (run / "config.toml").read_text()
    assert 'position_embedding = "sincos"' in saved and 'layer_scale = "off"' in saved
    older = saved.replace('position_embedding = "sincos"', 'position_embedding = "auto"')
    (run / "config.toml").write_text("\n".join(line for line in older.splitlines() if not line.startswith("layer_scale")))
    steps = json.loads(capsys.readouterr().out)["steps"]
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 2 * steps


def test_a_checkpoint_of_another_head_layout_is_one_line_not_a_traceback(tmp_path, capsys):
    """A run saved by a version whose heads differ (here: a projector layer removed from the
    checkpoint) is refused with one line that says what to do; the run folder is untouched."""
    import torch
    assert _train(tmp_path) == 0
    run = next((tmp_path / "runs").iterdir())
    checkpoint = run / "checkpoints" / "last.pt"
    state = torch.load(checkpoint, weights_only=True)
    dropped = next(k for k in state["method"] if k.startswith("projector."))
    del state["method"][dropped]
    torch.save(state, checkpoint)
    before = checkpoint.read_bytes()
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: cannot resume {run}")
    assert dropped in err[0] and "start a new run" in err[0]
    assert checkpoint.read_bytes() == before


@pytest.mark.parametrize("argv, message", [
    (["train", "--set", "optim.lr=-1"], "error: optim.lr must be > 0, got -1"),
    (["train", "--method", "simclrr"], "error: method.name must be one of"),
    (["train", "--config", "missing.toml"], "error: config file missing.toml does not exist"),
    (["train", "--set", "optimlr"], "error: --set expects section.key=value"),
    (["train", "--epochs", "many"], "error: argument --epochs: invalid int value"),
    (["eval", "--checkpoint", "nowhere.pt", "--data", "digits"], "error: checkpoint nowhere.pt does not exist"),
    (["eval", "--baseline", "pixels", "--data", "imagenet"], "error: "),
])
def test_user_errors_are_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err


def test_the_flags_set_their_typed_values_and_only_set_values_are_read_as_text(monkeypatch):
    from ssl_engine import params
    from ssl_engine.cli import build_parser, experiment_config

    read = []
    real = params.value_from_text
    monkeypatch.setattr(params, "value_from_text", lambda text: read.append(text) or real(text))
    args = build_parser().parse_args(["train", "--method", "vicreg", "--epochs", "3", "--minutes", "1.5",
                                      "--batch-size", "64", "--dataset", 'folder:/tmp/my "best" images',
                                      "--device", "cpu", "--set", "method.sim_coeff=10"])
    config = experiment_config(args)
    assert (config.train.epochs, config.train.minutes, config.train.batch_size) == (3, pytest.approx(1.5), 64)
    assert type(config.train.epochs) is int and type(config.train.minutes) is float
    assert config.data.source == 'folder:/tmp/my "best" images' and config.train.device == "cpu"
    assert config.method.params.sim_coeff == pytest.approx(10.0)
    assert read and set(read) == {"10"}  # the --set text alone: the flags' values never went through text


@pytest.mark.parametrize("value, message", [("2.5", "error: train.epochs must be an integer, got 2.5"),
                                            ("abc", "error: train.epochs must be an integer, got 'abc'"),
                                            ("0", "error: train.epochs must be >= 1, got 0")])
def test_a_bad_set_value_is_the_same_line_as_in_a_file(value, message, capsys):
    assert main(["train", "--set", f"train.epochs={value}"]) == 2
    assert capsys.readouterr().err == message + "\n"


def test_missing_and_empty_folders(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for folder in ("missing", "empty"):
        code = main(["train", "--dataset", f"folder:{tmp_path / folder}", "--runs-dir", str(tmp_path / "runs"),
                     "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and str(tmp_path / folder) in err


def test_a_real_process_prints_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "main.py"), "train", "--dataset", f"folder:{tmp_path}/none"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.startswith("error: ")
