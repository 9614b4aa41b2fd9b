"""What the Trainer hands methods beyond the views: batch indices and per-epoch dataset features."""

import torch

from ssl_engine.methods import METHODS
from ssl_engine.methods.simclr import SimCLR
from ssl_engine.train import Trainer

from tests.helpers import tiny_config


class Recorder(SimCLR):
    """SimCLR that writes down what the Trainer gives it."""

    name = "recorder"
    epochs_seen: list = []
    feature_shapes: list = []
    indices_seen: list = []

    def before_epoch(self, epoch, dataset_features):
        Recorder.epochs_seen.append(epoch)
        Recorder.feature_shapes.append(tuple(dataset_features().shape))

    def forward(self, views, step, indices=None):
        Recorder.indices_seen.append(indices.clone())
        return super().forward(views, step, indices)


def test_methods_get_batch_indices_and_dataset_features_each_epoch(tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS, "recorder", Recorder)
    for record in (Recorder.epochs_seen, Recorder.feature_shapes, Recorder.indices_seen):
        record.clear()
    config = tiny_config(tmp_path, "recorder", "method.hidden_dim=64", "method.projection_dim=32", epochs=2)
    trainer = Trainer(config)
    trainer.run()
    train_size = len(trainer.data.train)
    steps_per_epoch = train_size // 64
    assert Recorder.epochs_seen == [0, 1]
    assert Recorder.feature_shapes == [(train_size, 256)] * 2  # small_cnn features of every training image
    first_epoch = torch.cat(Recorder.indices_seen[:steps_per_epoch])
    assert len(first_epoch.unique()) == len(first_epoch) == steps_per_epoch * 64  # distinct images
    assert first_epoch.max() < train_size
    # the indices are the positions of the batch's images: a batch of 64 from the shuffled order
    assert all(len(i) == 64 for i in Recorder.indices_seen)

    # a resumed run gets before_epoch at its first step, mid-epoch or not
    Recorder.epochs_seen.clear()
    longer = config.with_overrides(["train.epochs=3"])
    Trainer(longer, resume=trainer.run_dir).run()
    assert Recorder.epochs_seen == [2]
