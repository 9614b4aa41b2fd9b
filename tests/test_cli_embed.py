"""The command line on the user's folders: `embed` writes features with their paths, `eval`
reports kNN, linear probe and per-class accuracy (cross-validated, or train -> test), and every
mistake is one `error:` line with exit code 2."""

import csv
import json
import os
import shutil

import numpy as np
import pytest
import torch

from ssl_engine.cli import main
from ssl_engine.data import generate_shapes, load_digits
from ssl_engine.eval.folder_embedding import embed_folder
from ssl_engine.eval.model_source import open_model, random_init_model
from tests.helpers import save_image_set, write_shapes_folder

CLASSES = ["circle", "crescent", "cross", "ellipse", "heart", "ring", "semicircle", "square", "star", "triangle"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_shapes_folder(root / "train", count=60)
    save_image_set(generate_shapes(30, 40, seed=5), root / "test")
    save_image_set(load_digits(16).subset(list(range(10))), root / "flat", labelled=False)
    (root / "empty").mkdir()
    return root


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_EXPLORER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_embed_writes_the_folder_features_with_their_paths(trained_run, folders, tmp_path, capsys, cache):
    out = tmp_path / "features.npz"
    assert main(["embed", "--checkpoint", str(trained_run), "--data", f"folder:{folders / 'train'}", "--out", str(out),
                 "--device", "cpu", "--batch-size", "16"]) == 0
    line = capsys.readouterr().out
    expected = embed_folder(open_model(trained_run), str(folders / "train"), cache_dir="", device="cpu")
    count = len(expected.paths)
    assert line.count("\n") == 1 and line.startswith(f"{count} images embedded (0 reused from cache, 2 skipped)")
    assert "images/s" in line and str(out) in line
    with np.load(out) as saved:
        np.testing.assert_allclose(saved["features"], expected.features, rtol=1e-4, atol=1e-5)
        assert saved["paths"].tolist() == expected.paths and saved["class_names"].tolist() == CLASSES
        np.testing.assert_array_equal(saved["labels"], expected.labels)
        assert str(saved["model_key"]) == open_model(trained_run).key

    assert main(["embed", "--checkpoint", str(trained_run), "--data", f"folder:{folders / 'train'}", "--out",
                 str(tmp_path / "features.csv"), "--device", "cpu"]) == 0
    assert f"({count} reused from cache" in capsys.readouterr().out
    with open(tmp_path / "features.csv", newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0][:4] == ["path", "label", "class", "f0"] and len(rows) == count + 1
    assert rows[1][0] == expected.paths[0] and rows[1][2] == CLASSES[int(rows[1][1])]


def test_embed_a_random_init_baseline_without_the_cache(folders, tmp_path, capsys, cache):
    out = tmp_path / "random.npz"
    assert main(["embed", "--baseline", "random", "--backbone", "small_cnn", "--image-size", "24", "--seed", "2",
                 "--data", f"folder:{folders / 'flat'}", "--out", str(out), "--device", "cpu", "--no-cache"]) == 0
    assert capsys.readouterr().out.startswith("10 images embedded (0 reused from cache, 0 skipped)")
    assert not cache.exists()
    model = random_init_model(backbone="small_cnn", image_size=24, seed=2)
    expected = embed_folder(model, str(folders / "flat"), cache_dir="", device="cpu")
    with np.load(out) as saved:
        np.testing.assert_allclose(saved["features"], expected.features, rtol=1e-4, atol=1e-5)
        assert saved["labels"].tolist() == [-1] * 10 and saved["class_names"].tolist() == []


def test_eval_cross_validates_a_labelled_folder(trained_run, folders, tmp_path, capsys):
    table = tmp_path / "accuracy.csv"
    assert main(["eval", "--checkpoint", str(trained_run), "--data", f"folder:{folders / 'train'}", "--k", "5",
                 "--device", "cpu", "--json", "--csv", str(table)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["protocol"].startswith("5-fold cross-validation") and result["k"] == 5
    assert result["test_count"] == result["train_count"] == 64
    assert 0 <= result["knn_top1"] <= result["knn_top5"] <= 1 and 0 <= result["linear_probe_top1"] <= 1
    assert list(result["per_class"]) == CLASSES
    with open(table, newline="") as file:
        rows = list(csv.DictReader(file))
    overall = {(r["classifier"], r["metric"]): float(r["value"]) for r in rows if r["class"] == "all"}
    assert overall[("knn", "top1")] == pytest.approx(result["knn_top1"], abs=1e-6)
    assert {r["class"] for r in rows} == {"all", *CLASSES}


def test_eval_trains_on_one_folder_and_tests_on_another(trained_run, folders, capsys):
    assert main(["eval", "--checkpoint", str(trained_run), "--data", f"folder:{folders / 'train'}",
                 "--test", f"folder:{folders / 'test'}", "--device", "cpu", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["protocol"] == "train -> test"
    assert result["train_count"] == 64 and result["test_count"] == 30
    assert "--test" in captured.err and "30 images" in captured.err

    assert main(["eval", "--baseline", "pixels", "--data", f"folder:{folders / 'train'}",
                 "--test", f"folder:{folders / 'test'}"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("raw pixels: train -> test (30 test images)")
    for label in ("kNN top-1 (k=20):", "kNN top-5 (k=20):", "linear-probe top-1:", "  triangle  "):
        assert label in text


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, folders):
    root = tmp_path_factory.mktemp("bad")

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(root / "code-ran"),))

    torch.save({"config": {}, "method": Payload()}, root / "evil.pt")
    shutil.copytree(folders / "test", root / "extra-class")
    shutil.copytree(folders / "test" / "star", root / "extra-class" / "hexagon")
    return root


@pytest.mark.parametrize("argv, message", [
    (["embed", "--checkpoint", "{run}", "--data", "folder:{data}/missing", "--out", "{tmp}/x.npz"], "does not exist"),
    (["embed", "--checkpoint", "{run}", "--data", "folder:{data}/empty", "--out", "{tmp}/x.npz"], "no images in"),
    (["embed", "--checkpoint", "{run}", "--data", "digits", "--out", "{tmp}/x.npz"], "--data must be folder:PATH"),
    (["embed", "--checkpoint", "{run}", "--data", "folder:{data}/flat", "--out", "{tmp}/x.txt"], ".npz or .csv"),
    (["embed", "--checkpoint", "{bad}/evil.pt", "--data", "folder:{data}/flat", "--out", "{tmp}/x.npz"],
     "would run code"),
    (["embed", "--baseline", "random", "--data", "folder:{data}/flat", "--out", "{tmp}/no/such/dir/x.npz"],
     "cannot write"),
    (["eval", "--checkpoint", "{run}", "--data", "folder:{data}/flat"], "has no labels"),
    (["eval", "--checkpoint", "{bad}/evil.pt", "--data", "folder:{data}/train"], "would run code"),
    (["eval", "--checkpoint", "{run}", "--data", "folder:{data}/train", "--test", "folder:{bad}/extra-class"],
     "hexagon"),
    (["eval", "--checkpoint", "{run}", "--data", "folder:{data}/train", "--test", "digits"], "--test must be folder"),
    (["eval", "--checkpoint", "{run}", "--data", "digits", "--test", "folder:{data}/test"], "--test needs --data"),
    (["eval", "--data", "folder:{data}/train"], "give --checkpoint PATH or --baseline"),
    (["eval", "--checkpoint", "{run}", "--baseline", "pixels", "--data", "folder:{data}/train"], "leave out --checkpoint"),
    (["embed", "--data", "folder:{data}/flat", "--out", "{tmp}/x.npz"], "give --checkpoint PATH or --baseline"),
])
def test_bad_input_is_one_error_line_and_exit_2(argv, message, trained_run, folders, bad_inputs, tmp_path, capsys):
    argv = [a.format(run=trained_run, data=folders, bad=bad_inputs, tmp=tmp_path) for a in argv]
    assert main([*argv, "--device", "cpu"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
    assert message in captured.err and captured.out == ""
    assert not (bad_inputs / "code-ran").exists()


def test_the_random_floor_of_a_checkpoint_is_its_own_network_at_initialisation(trained_run, folders, capsys):
    """--baseline random --checkpoint: same architecture and normalisation, fresh weights."""
    argv = ["eval", "--data", f"folder:{folders / 'train'}", "--device", "cpu", "--json", "--seed", "3"]
    assert main([*argv, "--checkpoint", str(trained_run), "--baseline", "random"]) == 0
    floor = json.loads(capsys.readouterr().out)
    trained = open_model(trained_run)
    expected = random_init_model(like=trained, seed=3)
    assert floor["model"] == expected.name
    # on the CPU, as the command did: a GPU's kernels round differently, and a kNN near-tie could flip
    embedding = embed_folder(expected, str(folders / "train"), cache_dir="", device="cpu")
    from ssl_engine.eval.accuracy import accuracy_report
    report = accuracy_report(embedding.features, embedding.labels, embedding.class_names, seed=3)
    assert floor["knn_top1"] == pytest.approx(report.knn_top1)
