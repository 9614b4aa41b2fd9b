"""TensorBoard event files of a real run (train.tensorboard, --tensorboard), read back with
TensorBoard's own reader; the map picture; the one message when tensorboard is missing."""

import math
import os
import sys

import numpy as np
import pytest

from ssl_engine.cli import main
from ssl_engine.config import ExperimentConfig
from ssl_engine.data import load_data
from ssl_engine.data.image_set import DataSplits
from ssl_engine.errors import ConfigError
from ssl_engine.map_image import UNLABELLED_COLOUR, class_colours, draw_map
from ssl_engine.probes.base import ProbeResult
from ssl_engine.runs import PROBES_DIR
from ssl_engine.probes.images import MethodPictures
from ssl_engine.tensorboard_log import SPRITE_LIMIT, THUMBNAIL_SIDE, TensorBoardLog, thumbnail_side, thumbnails
from ssl_engine.train.events import Finished, StepMetrics
from ssl_engine.train import Trainer
from tests.helpers import SMALL_HEADS

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # the set-up form's test

STEPS_PER_EPOCH, EPOCHS, LOG_EVERY, EVAL_SUBSET, BATCH = 4, 2, 2, 64, 32


def digits_config(tmp_path, *extra):
    return ExperimentConfig.for_method("vicreg", 16, "imagenet").with_overrides([
        "data.source=digits", "data.image_size=16", "backbone.name=small_cnn", f"train.epochs={EPOCHS}",
        f"train.batch_size={BATCH}", "train.device=cpu", f"train.runs_dir={tmp_path / 'runs'}",
        f"train.log_every_steps={LOG_EVERY}", f"train.eval_subset={EVAL_SUBSET}", "train.linear_probe=false",
        "train.run_name=digits", *SMALL_HEADS["vicreg"], *extra]).validate()


def few_digits():
    """A share of the digits (STEPS_PER_EPOCH steps of BATCH an epoch), labelled, with a test split for the kNN."""
    digits = load_data("digits", 16, seed=0)
    return DataSplits(train=digits.train.subset(range(STEPS_PER_EPOCH * BATCH)), test=digits.test.subset(range(100)),
                      skipped=[], name="digits")


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    """A real two-epoch VICReg run on digits with TensorBoard on, and its event files read back."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tmp_path = tmp_path_factory.mktemp("tensorboard")
    trainer = Trainer(digits_config(tmp_path, f"train.tensorboard={tmp_path / 'tb'}"), data=few_digits())
    trainer.run()
    log_dir = tmp_path / "tb" / trainer.run_dir.name
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return log_dir, events, trainer.run_dir


def scalar(events, tag):
    return {e.step: e.value for e in events.Scalars(tag)}


def test_the_scalars_of_every_logged_step_and_epoch(logged_run):
    _, events, _ = logged_run
    total = STEPS_PER_EPOCH * EPOCHS
    logged_steps = set(range(LOG_EVERY, total + 1, LOG_EVERY))
    for tag in ("train/loss", "terms/invariance", "terms/variance", "terms/covariance", "train/lr",
                "train/images_per_second"):
        values = scalar(events, tag)
        assert set(values) == logged_steps, tag
        assert all(math.isfinite(v) for v in values.values()), tag
    assert all(v > 0 for v in scalar(events, "train/images_per_second").values())
    # the kNN at each epoch's end, and its random-init floor before the first step
    knn = scalar(events, "eval/knn_top1")
    assert set(knn) == {0, STEPS_PER_EPOCH, total}
    assert all(0.0 <= v <= 1.0 for v in knn.values())
    assert set(scalar(events, "train/epoch_loss")) == {STEPS_PER_EPOCH, total}


def test_views_and_the_map_are_images(logged_run):
    _, events, _ = logged_run
    tags = events.Tags()["images"]
    assert {"views/originals", "views/view_1", "views/view_2", "map/pca"} <= set(tags)
    # views after the first step and at each epoch's end; the map at each epoch's end
    assert sorted(e.step for e in events.Images("views/view_1")) == [1, STEPS_PER_EPOCH, STEPS_PER_EPOCH * EPOCHS]
    assert sorted(e.step for e in events.Images("map/pca")) == [STEPS_PER_EPOCH, STEPS_PER_EPOCH * EPOCHS]
    picture = events.Images("map/pca")[-1]
    assert picture.width > picture.height >= 256 and picture.encoded_image_string.startswith(b"\x89PNG")


def test_the_projector_has_the_last_maps_points_labels_and_thumbnails(logged_run):
    log_dir, _, _ = logged_run
    config = (log_dir / "projector_config.pbtxt").read_text()
    folder = log_dir / f"{STEPS_PER_EPOCH * EPOCHS:05d}" / "features"
    assert f"{folder.parent.name}/features/tensors.tsv" in config and "sprite" in config
    rows = (folder / "tensors.tsv").read_text().splitlines()
    assert len(rows) == EVAL_SUBSET
    assert all(np.isfinite(np.array(row.split("\t"), dtype=float)).all() for row in rows)
    labels = (folder / "metadata.tsv").read_text().splitlines()
    assert len(labels) == EVAL_SUBSET and set(labels) <= {str(d) for d in range(10)} and len(set(labels)) > 3
    assert (folder / "sprite.png").is_file()
    assert len(list(log_dir.glob("0*"))) == 1  # one snapshot, not one per epoch


def test_the_run_folder_does_not_record_what_tensorboard_asked_for(logged_run):
    _, _, run_dir = logged_run
    assert not (run_dir / PROBES_DIR).exists()  # the views and maps went to TensorBoard alone
    assert (run_dir / "summary.json").is_file()


def test_a_missing_tensorboard_package_is_one_message_before_any_run_folder(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    trainer = Trainer(digits_config(tmp_path, f"train.tensorboard={tmp_path / 'tb'}"))
    with pytest.raises(ConfigError) as raised:
        trainer.run()
    assert str(raised.value).startswith("train.tensorboard needs the tensorboard package: pip install tensorboard")
    assert raised.value.problems[0].address == "train.tensorboard"
    assert trainer.data is None  # stopped before loading the data
    assert not (tmp_path / "runs").exists() and not (tmp_path / "tb").exists()


def test_the_command_line_says_so_in_one_line_before_timing_steps(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    assert main(["train", "--dataset", "digits", "--backbone", "small_cnn", "--device", "cpu",
                 "--runs-dir", str(tmp_path / "runs"), "--tensorboard", str(tmp_path / "tb")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: train.tensorboard needs the tensorboard package") and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "tb").exists()


def test_the_flag_sets_the_setting():
    from ssl_engine.cli import build_parser, experiment_config

    args = build_parser().parse_args(["train", "--device", "cpu", "--tensorboard", "logs/tb"])
    assert experiment_config(args).train.tensorboard == "logs/tb"
    assert experiment_config(build_parser().parse_args(["train"])).train.tensorboard == ""


def test_the_setup_forms_training_box_sets_the_folder(qtbot):
    from app.experiment_model import ExperimentModel
    from app.widgets.setup_panel import SetupPanel

    setup = SetupPanel(ExperimentModel())
    qtbot.addWidget(setup)
    editor = setup.train_form.editors["tensorboard"]
    assert editor.text() == "" and setup.model.config.train.tensorboard == ""
    qtbot.keyClicks(editor, "logs/tb")
    assert setup.model.config.train.tensorboard == "logs/tb"


def test_a_resumed_run_replaces_what_was_logged_after_its_checkpoint(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def metrics(step, loss):
        return StepMetrics(step=step, epoch=0, epoch_progress=0.0, loss=loss, terms={}, lr=0.1,
                           images_per_second=100.0, elapsed_seconds=1.0, eta_seconds=1.0)

    first = TensorBoardLog(tmp_path)
    for step in range(1, 7):  # logged up to step 6, then it crashed; its checkpoint is at step 4
        first(metrics(step, 1.0))
    first(Finished(run_dir="", summary={}, stopped_early=True))
    resumed = TensorBoardLog(tmp_path, start_step=4)
    for step in (5, 6):
        resumed(metrics(step, 2.0))
    resumed(Finished(run_dir="", summary={}, stopped_early=False))
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    losses = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert [step for step, _ in losses] == [1, 2, 3, 4, 5, 6]
    assert [loss for _, loss in losses] == pytest.approx([1.0] * 4 + [2.0] * 2)


def test_the_methods_pictures_are_images_masks_too(tmp_path):
    """Pictures as a masked method gives them: a reconstruction (3 channels) and a mask (1)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rng = np.random.default_rng(0)
    pictures = {"reconstruction": rng.random((4, 16, 16, 3), dtype=np.float32),
                "mask": (rng.random((4, 16, 16, 1)) > 0.5).astype(np.float32)}
    log = TensorBoardLog(tmp_path)
    log(ProbeResult("pictures", 7, 1, MethodPictures(originals=np.zeros((4, 16, 16, 3), np.uint8), pictures=pictures)))
    log(Finished(run_dir="", summary={}, stopped_early=False))
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    for name in pictures:
        (image,) = events.Images(f"pictures/{name}")
        assert image.step == 7 and image.width > 16 and image.encoded_image_string.startswith(b"\x89PNG")
    assert not (tmp_path / "projector_config.pbtxt").exists()  # no map, no projector


def test_the_map_picture_puts_each_point_in_its_class_colour():
    # x spans 2, which fills the 200 px plot between its 12 px margins: 88 px per unit, centred, y up
    points = np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [np.nan, 0.5]])
    picture = draw_map(points, np.array([0, 1, -1, 0]), ["zero", "one"], side=200)
    assert picture.shape[0] == 200 and picture.shape[1] > 200 and picture.dtype == np.uint8  # the legend beside
    colours = class_colours(2)
    assert tuple(picture[144, 12]) == tuple(colours[0]) and tuple(picture[144, 188]) == tuple(colours[1])
    assert tuple(picture[56, 100]) == UNLABELLED_COLOUR
    assert tuple(picture[100, 100]) == (255, 255, 255)  # the NaN point (at the centre) is left out


def test_thumbnails_fit_the_projectors_sprite():
    small = thumbnails(np.zeros((10, 16, 16, 3), dtype=np.uint8))
    assert tuple(small.shape) == (10, 3, 16, 16)  # never enlarged
    large = thumbnails(np.full((20, 64, 64, 3), 255, dtype=np.uint8))
    assert tuple(large.shape) == (20, 3, THUMBNAIL_SIDE, THUMBNAIL_SIDE)
    assert float(large.min()) == pytest.approx(1.0, abs=1e-6)
    side = thumbnail_side(100_000, 96)
    assert side < THUMBNAIL_SIDE and math.ceil(math.sqrt(100_000)) * side <= SPRITE_LIMIT
