"""Checkpoints: written atomically (temp file, then rename) and read back safely.

A checkpoint holds tensors and plain values only (model, optimiser, scaler, step, config as a
dict), so it loads with `torch.load(weights_only=True)`: a file that would run code is refused.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from .errors import UserError


def first_line(error: Exception) -> str:
    """The line of a torch error that says what is wrong: its first, or the one after a heading
    such as "Error(s) in loading state_dict for SimCLR:"."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        lines = lines[1:]
    return lines[0] if lines else type(error).__name__


def save_checkpoint(path: str | Path, state: dict, what: str = "checkpoint") -> Path:
    """Write `state` to `path` through a temporary file: a write that fails (a full or failing
    disk) leaves the previous file as it was and says so in one line, naming the file `what`
    (a checkpoint, an exported backbone)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, tmp)
        with open(tmp, "rb+") as file:  # make the bytes durable before the rename exposes them
            os.fsync(file.fileno())
        tmp.replace(path)
    except (OSError, RuntimeError) as error:  # torch.save words a failed write as a RuntimeError
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # the failing disk may refuse this too; the temporary file is never read
            pass
        kept = f"the previous {what} is intact" if path.is_file() else f"no earlier {what} exists"
        raise UserError(f"could not write the {what} {path}: {first_line(error)}; {kept}") from None
    return path


def checkpoint_file(path: str | Path) -> Path:
    """The file a checkpoint path names: itself, or for a run folder its checkpoints/last.pt
    (or a last.pt beside it)."""
    path = Path(path).expanduser()
    if path.is_dir():
        candidate = path / "checkpoints" / "last.pt"
        return candidate if candidate.is_file() else path / "last.pt"
    return path


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    path = checkpoint_file(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        # torch words both cases "Weights only load failed"; only a file that names a Python
        # global (a class or function to call) would run code, anything else is just damaged.
        globals_named = [line.strip() for line in str(error).splitlines() if "GLOBAL" in line]
        if globals_named:
            raise UserError(f"{path} is not a safe SSL Explorer checkpoint (it would run code to load): "
                            f"{globals_named[0]}") from None
        raise UserError(f"{path} is not a readable checkpoint (damaged or not a PyTorch file)") from None
    except (RuntimeError, EOFError, OSError, IndexError, ValueError) as error:  # torch's parser fails in many ways
        raise UserError(f"{path} is not a readable checkpoint: {first_line(error)}") from None
    if not isinstance(state, dict) or "config" not in state or "method" not in state:
        raise UserError(f"{path} is not an SSL Explorer checkpoint (no config or model weights)")
    return state
