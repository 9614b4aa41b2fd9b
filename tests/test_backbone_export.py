"""`main.py export`: a real run's backbone alone, loaded into torchvision's ResNet-18 (with the
small stem's changes) or the project's own constructors, gives the app's features; the printed
snippet does the same; mistakes are one line and exit code 2."""

import pytest
import torch
import torchvision
from torch import nn

from ssl_engine.cli import main
from ssl_engine.data import generate_shapes
from ssl_engine.eval.embed import embed
from ssl_engine.eval.model_source import open_model
from ssl_engine.models.backbones import small_cnn
from ssl_engine.models.vit import VisionTransformer
from ssl_engine.train import Trainer
from tests.helpers import tiny_config

SMALL_STEM = ["model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)", "model.maxpool = nn.Identity()",
              "model.fc = nn.Identity()"]


def trained_run(folder, method, *extra, image_size=32, batch=64):
    """The run folder of one real epoch of `method` on 100 shapes images (80 to train on)."""
    config = tiny_config(folder, method, f"data.image_size={image_size}", *extra, count=100, batch=batch)
    trainer = Trainer(config)
    trainer.run()
    return trainer.run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Real runs, trained once for the module: ResNet-18 (16 px images keep its CPU steps short;
    the stem is the small one at any size up to 64 px), two ViTs of different layouts (SimCLR:
    learnt positions, class token; SimMIM: a relative position bias, LayerScale, mean patch
    token) and the small CNN."""
    folder = tmp_path_factory.mktemp("runs")
    vit = ["backbone.name=vit_tiny", "backbone.patch_size=8", "backbone.vit_depth=1"]
    return {"resnet18": trained_run(folder, "simclr", "backbone.name=resnet18", image_size=16, batch=40),
            "vit_simclr": trained_run(folder, "simclr", *vit),
            "vit_simmim": trained_run(folder, "simmim", "backbone.vit_depth=1"),
            "small_cnn": trained_run(folder, "simclr")}


def exported(run, out, capsys) -> dict:
    """Export `run` through the command line; the file, read as a user would."""
    assert main(["export", "--checkpoint", str(run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"wrote {out} (") and " MB)" in printed.splitlines()[0]
    contents = torch.load(out, weights_only=True)
    assert contents["snippet"] in "\n".join(line.removeprefix("    ") for line in printed.splitlines())
    return contents


def unseen_images(size: int) -> torch.Tensor:
    return generate_shapes(12, size, seed=5).images  # images the runs never trained on (another seed)


def app_features(run, images) -> torch.Tensor:
    """The features the app computes: the run's backbone as the Evaluate tab opens it, through embed."""
    model = open_model(run)
    return embed(model.backbone, images, mean=model.mean, std=model.std)


def normalised(images: torch.Tensor, contents: dict) -> torch.Tensor:
    mean = torch.tensor(contents["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(contents["std"]).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


def assert_plain(value) -> None:
    """Plain values only besides the weights: strings, numbers, booleans, lists and dicts of them."""
    if isinstance(value, dict):
        for item in value.values():
            assert_plain(item)
    elif isinstance(value, list):
        for item in value:
            assert_plain(item)
    else:
        assert isinstance(value, (str, int, float, bool)), type(value)


def test_the_resnet18_backbone_loads_into_torchvision_with_the_small_stem_and_gives_the_apps_features(
        runs, tmp_path, capsys):
    run = runs["resnet18"]
    out = tmp_path / "backbone.pt"
    contents = exported(run, out, capsys)
    assert contents["architecture"] == "torchvision.models.resnet18" and contents["stem_changes"] == SMALL_STEM
    model = torchvision.models.resnet18()
    model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    model.fc = nn.Identity()
    model.load_state_dict(contents["state_dict"])  # strict: every key of the network, no other
    model.eval()
    images = unseen_images(16)
    with torch.no_grad():
        features = model(normalised(images, contents))
    expected = app_features(run, images)
    assert features.shape == expected.shape == (12, 512)
    assert torch.allclose(features, expected, rtol=1e-4, atol=1e-5)
    # the trained weights, not torchvision's initialisation, and far smaller than the checkpoint
    trained = open_model(run).backbone.net.state_dict()
    assert torch.allclose(contents["state_dict"]["layer4.1.conv2.weight"], trained["layer4.1.conv2.weight"])
    assert out.stat().st_size < 0.7 * (run / "checkpoints" / "last.pt").stat().st_size
    assert_plain({key: value for key, value in contents.items() if key != "state_dict"})
    assert contents["image_size"] == 16 and contents["feature_dim"] == 512 and contents["method"] == "simclr"
    assert contents["run"] == run.name and contents["small_stem"] is True
    assert contents["mean"] == pytest.approx(list(open_model(run).mean))
    assert contents["std"] == pytest.approx(list(open_model(run).std))


@pytest.mark.parametrize("name, position, layer_scale, pooling", [
    ("vit_simclr", "learnt", 0.0, "class_token"),
    ("vit_simmim", "relative", 0.1, "mean_patch"),
])
def test_a_vit_backbone_loads_through_the_projects_constructor_and_gives_the_apps_features(
        runs, tmp_path, capsys, name, position, layer_scale, pooling):
    run = runs[name]
    contents = exported(run, tmp_path / "vit.pt", capsys)
    assert contents["architecture"] == "ssl_engine.models.vit.VisionTransformer"
    constructor = contents["constructor"]
    assert constructor == {"image_size": 32, "patch_size": 8, "dim": 192, "depth": 1, "heads": 3, "name": "vit_tiny",
                           "position": position, "layer_scale": pytest.approx(layer_scale),
                           "evaluation_pooling": pooling}
    model = VisionTransformer(**constructor)
    model.load_state_dict(contents["state_dict"])
    model.eval()
    images = unseen_images(32)
    with torch.no_grad():
        features = model.evaluation_features(normalised(images, contents))
    expected = app_features(run, images)
    assert features.shape == expected.shape == (12, 192)
    assert torch.allclose(features, expected, rtol=1e-4, atol=1e-5)
    assert_plain({key: value for key, value in contents.items() if key != "state_dict"})


def test_the_small_cnn_loads_through_its_builder(runs, tmp_path, capsys):
    run = runs["small_cnn"]
    contents = exported(run, tmp_path / "cnn.pt", capsys)
    assert contents["architecture"] == "ssl_engine.models.backbones.small_cnn"
    assert contents["constructor"] == {"small_stem": True}
    model = small_cnn(**contents["constructor"])
    model.load_state_dict(contents["state_dict"])
    model.eval()
    images = unseen_images(32)
    with torch.no_grad():
        features = model(normalised(images, contents))
    assert torch.allclose(features, app_features(run, images), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name, size", [("resnet18", 16), ("vit_simmim", 32), ("small_cnn", 32)])
def test_the_printed_snippet_runs_as_written_and_gives_the_apps_features(runs, tmp_path, capsys, name, size):
    contents = exported(runs[name], tmp_path / "backbone.pt", capsys)
    images = unseen_images(size)
    namespace = {"images": images.float() / 255.0}
    with torch.no_grad():
        exec(contents["snippet"], namespace)
    assert torch.allclose(namespace["features"], app_features(runs[name], images), rtol=1e-4, atol=1e-5)


def one_error_line(argv, capsys) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: "), captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    return captured.err


def test_mistakes_are_one_line_and_exit_2(runs, tmp_path, capsys):
    out = tmp_path / "backbone.pt"
    missing = tmp_path / "nowhere.pt"
    assert f"checkpoint {missing} does not exist" in one_error_line(
        ["export", "--checkpoint", str(missing), "--out", str(out)], capsys)
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(b"not a checkpoint at all")
    assert "is not a readable checkpoint" in one_error_line(
        ["export", "--checkpoint", str(damaged), "--out", str(out)], capsys)
    a_file = tmp_path / "a_file"
    a_file.write_text("a file, where a folder would have to be")
    unwritable = a_file / "backbone.pt"
    assert f"could not write the exported backbone {unwritable}" in one_error_line(
        ["export", "--checkpoint", str(runs["small_cnn"]), "--out", str(unwritable)], capsys)
    checkpoint = runs["small_cnn"] / "checkpoints" / "last.pt"
    before = checkpoint.read_bytes()
    assert "is the checkpoint being exported" in one_error_line(
        ["export", "--checkpoint", str(runs["small_cnn"]), "--out", str(checkpoint)], capsys)
    assert checkpoint.read_bytes() == before
    assert "the following arguments are required: --out" in one_error_line(
        ["export", "--checkpoint", str(runs["small_cnn"])], capsys)
    assert not out.exists()
