"""Checkpoints are written atomically and loaded safely: a file that would run code is refused."""


import pytest
import torch

from ssl_engine.errors import UserError
from ssl_engine.checkpoint import load_checkpoint, save_checkpoint


class _RunsCode:
    def __reduce__(self):
        return (print, ("this would have run",))


def test_round_trip_and_no_temporary_left(tmp_path):
    state = {"config": {"method": {"name": "simclr"}}, "method": {"w": torch.arange(3.0)}, "step": 7}
    path = save_checkpoint(tmp_path / "checkpoints" / "last.pt", state)
    loaded = load_checkpoint(tmp_path)  # a run folder works as well as the file
    assert loaded["step"] == 7 and torch.equal(loaded["method"]["w"], torch.arange(3.0))
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_a_file_that_would_run_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"config": {}, "method": {}, "payload": _RunsCode()}, path)
    with pytest.raises(UserError, match="not a safe SSL Explorer checkpoint"):
        load_checkpoint(path)
    assert "this would have run" not in capsys.readouterr().out


@pytest.mark.parametrize("content, message", [
    (b"", "not a readable checkpoint"),
    (b"garbage" * 10, "not a readable checkpoint"),
])
def test_broken_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "broken.pt"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        load_checkpoint(path)


def test_a_foreign_checkpoint_is_named(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, path)
    with pytest.raises(UserError, match="not an SSL Explorer checkpoint"):
        load_checkpoint(path)
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
