"""Opening models to evaluate: a real run's checkpoint, the random-init floor, the cache key,
refusing a checkpoint that would run code, and the list of runs."""

import json
import os
import shutil

import pytest
import torch

from ssl_engine.errors import UserError
from ssl_engine.eval.model_source import at_image_size, list_runs, model_key, open_model, random_init_model
from ssl_engine.models.build import backbone_state


def test_a_run_folder_and_its_checkpoint_open_the_same_trained_backbone(trained_run):
    from_folder, from_file = open_model(trained_run), open_model(trained_run / "checkpoints" / "last.pt")
    assert from_folder.key == from_file.key and len(from_folder.key) == 40
    assert from_folder.source == from_file.source == str(trained_run / "checkpoints" / "last.pt")
    assert from_folder.name == f"simclr · shapes · {trained_run.name}"
    assert from_folder.image_size == 32 and from_folder.feature_dim == 256 == from_folder.backbone.feature_dim
    assert not from_folder.backbone.training
    assert all(p.device.type == "cpu" for p in from_folder.backbone.parameters())
    state = torch.load(trained_run / "checkpoints" / "last.pt", weights_only=True)
    assert list(from_folder.mean) == pytest.approx(state["normalization"]["mean"])
    assert list(from_folder.std) == pytest.approx(state["normalization"]["std"])
    for name, tensor in backbone_state(state).items():
        assert torch.equal(from_folder.backbone.state_dict()[name], tensor), name
    features = from_folder.backbone(torch.rand(2, 3, 32, 32))
    assert features.shape == (2, 256)


def test_a_copy_of_a_checkpoint_shares_the_key_and_a_changed_model_does_not(trained_run, tmp_path):
    copy = tmp_path / "elsewhere.pt"
    shutil.copy(trained_run / "checkpoints" / "last.pt", copy)
    model = open_model(copy)
    assert model.key == open_model(trained_run).key and model.name == "simclr · shapes · elsewhere"

    with torch.no_grad():
        next(model.backbone.parameters()).add_(1e-3)
    assert model_key(model.backbone, model.image_size, model.mean, model.std) != model.key
    original = open_model(trained_run)
    assert at_image_size(original, 48).key != original.key and at_image_size(original, 48).image_size == 48
    assert model_key(original.backbone, 32, original.mean, (1.0, 1.0, 1.0)) != original.key


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    torch.save({"config": {}, "method": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(UserError, match="would run code") as error:
        open_model(tmp_path / "evil.pt")
    assert "\n" not in str(error.value) and not marker.exists()
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="garbage.pt"):
        open_model(tmp_path / "garbage.pt")
    with pytest.raises(UserError, match="does not exist"):
        open_model(tmp_path / "nowhere.pt")


def test_random_init_is_the_same_architecture_with_other_weights(trained_run):
    trained = open_model(trained_run)
    floor = random_init_model(like=trained, seed=3)
    assert (floor.feature_dim, floor.image_size, floor.mean, floor.std) == \
        (trained.feature_dim, trained.image_size, trained.mean, trained.std)
    assert floor.name == "small_cnn at random init" and floor.source == "random:small_cnn:3"
    trained_state, floor_state = trained.backbone.state_dict(), floor.backbone.state_dict()
    assert {k: v.shape for k, v in trained_state.items()} == {k: v.shape for k, v in floor_state.items()}
    assert not torch.equal(trained_state["net.0.0.weight"], floor_state["net.0.0.weight"])
    assert floor.key != trained.key and not floor.backbone.training
    assert random_init_model(like=trained, seed=3).key == floor.key  # seeded
    assert random_init_model(like=trained, seed=4).key != floor.key

    generator_state = torch.get_rng_state()
    plain = random_init_model(backbone="resnet18", image_size=48)
    assert torch.equal(torch.get_rng_state(), generator_state)  # the caller's random stream is untouched
    assert plain.feature_dim == 512 and plain.image_size == 48 and plain.mean == plain.std == (0.5, 0.5, 0.5)
    assert plain.backbone(torch.rand(1, 3, 48, 48)).shape == (1, 512)


def test_list_runs_reads_the_run_folders_newest_first(trained_run, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(trained_run, runs / "older")
    shutil.copytree(trained_run, runs / "newer")
    (runs / "older" / "summary.json").unlink()
    os.utime(runs / "older" / "checkpoints" / "last.pt", (1_000_000, 1_000_000))
    (runs / "no-checkpoint").mkdir()
    shutil.copy(trained_run / "config.toml", runs / "no-checkpoint" / "config.toml")
    shutil.copytree(trained_run, runs / "bad-config")
    (runs / "bad-config" / "config.toml").write_text("this = is [not toml")
    (runs / "a-file.txt").write_text("not a trained_run")

    listed = list_runs(runs)
    assert [os.path.basename(r.path) for r in listed] == ["newer", "older"]
    newer, older = listed
    summary = json.loads((trained_run / "summary.json").read_text())
    assert (newer.method, newer.data, newer.backbone) == ("simclr", "shapes", "small_cnn")
    assert newer.epochs_done == 1.0 and newer.knn_top1 == pytest.approx(summary["knn_top1"])
    assert older.epochs_done is None and older.knn_top1 is None and older.modified == 1_000_000
    assert list_runs(tmp_path / "nothing-here") == []


def test_a_vit_run_opens_with_the_layout_its_weights_were_saved_with(tmp_path):
    """SimMIM's "auto" positions and LayerScale changed (to a relative position bias and LayerScale
    on): a trained_run saved before, with absolute embeddings and no LayerScale, still opens as it was built."""
    from ssl_engine.train import Trainer
    from tests.helpers import tiny_config
    common = ["backbone.name=vit_tiny", "backbone.vit_depth=1", "backbone.patch_size=8", "train.eval_subset=16"]
    new = Trainer(tiny_config(tmp_path / "new", "simmim", *common, count=100, batch=32))
    new.run()
    model = open_model(new.run_dir)
    assert model.backbone.relative_position is not None and model.backbone.blocks[0].gamma1 is not None

    old = Trainer(tiny_config(tmp_path / "old", "simmim", *common, "backbone.position_embedding=sincos",
                              "backbone.layer_scale=off", count=100, batch=32))
    old.run()
    state = torch.load(old.run_dir / "checkpoints" / "last.pt", weights_only=True)
    state["config"]["backbone"]["position_embedding"] = "auto"   # as the older version wrote it
    del state["config"]["backbone"]["layer_scale"]               # which it did not have
    torch.save(state, tmp_path / "older.pt")
    model = open_model(tmp_path / "older.pt")
    assert model.backbone.relative_position is None and model.backbone.blocks[0].gamma1 is None
    for name, tensor in backbone_state(state).items():
        assert torch.equal(model.backbone.state_dict()[name], tensor), name
