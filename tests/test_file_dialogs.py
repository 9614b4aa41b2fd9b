"""File dialogs start in the last folder the user chose, else the home folder, never in the
working directory; "Save model" and "Export backbone" say what the file holds and its size."""

import os
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

from app import file_dialogs  # noqa: E402


@pytest.fixture(autouse=True)
def no_remembered_folder(monkeypatch):
    monkeypatch.setattr(file_dialogs, "_last_folder", "")


def test_a_dialog_starts_at_home_not_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert file_dialogs.start_folder() == str(Path.home())
    assert file_dialogs.start_folder("duplicates.csv") == str(Path.home())  # a bare name is no folder


def test_a_dialog_starts_in_the_preferred_or_the_last_chosen_folder(tmp_path):
    runs, pictures = tmp_path / "runs", tmp_path / "pictures"
    runs.mkdir()
    pictures.mkdir()
    assert file_dialogs.start_folder(str(runs)) == str(runs.resolve())
    assert file_dialogs.start_folder(str(runs / "model.pt")) == str(runs.resolve())  # a file's folder
    file_dialogs.remember(str(pictures / "cat.png"))
    assert file_dialogs.start_folder() == str(pictures.resolve())
    assert file_dialogs.start_folder(str(tmp_path / "gone" / "x.toml")) == str(pictures.resolve())
    file_dialogs.remember("")  # a cancelled dialog changes nothing
    assert file_dialogs.start_folder() == str(pictures.resolve())


def test_save_model_and_export_backbone_say_what_the_file_holds_and_its_size(qtbot, tmp_path, monkeypatch):
    from tests.helpers import tiny_config
    from tests.test_app_window import finish, open_window

    window = open_window(qtbot, tmp_path, tiny_config(tmp_path, "simclr"))
    window.start()
    finish(qtbot, window)
    assert "whole training state" in window.save_model_action.toolTip()
    assert " MB" in window.save_model_action.toolTip()
    window.save_model(str(tmp_path / "model.pt"))
    message = window.statusBar().currentMessage()
    size = (tmp_path / "model.pt").stat().st_size / 1e6
    assert "whole training state" in message and f"{size:.1f} MB" in message
    # Export backbone, beside it: the file dialog's choice gets the backbone alone
    import torch
    from app import main_window

    chosen = tmp_path / "exported" / "backbone.pt"
    monkeypatch.setattr(main_window, "save_file", lambda *args: str(chosen))
    assert window.export_backbone_action.isEnabled() and "plain state dict" in window.export_backbone_action.toolTip()
    window.export_backbone_action.trigger()
    message = window.statusBar().currentMessage()
    assert f"backbone exported to {chosen} ({chosen.stat().st_size / 1e6:.1f} MB)" in message
    assert "ssl_engine.models.backbones.small_cnn" in message
    exported = torch.load(chosen, weights_only=True)
    assert exported["method"] == "simclr" and exported["run"] == Path(window.last_run_dir).name
    assert chosen.stat().st_size < (tmp_path / "model.pt").stat().st_size
