"""The devices a run can use, as the set-up form lists them: only what is actually there."""

from __future__ import annotations

import torch


def device_choices() -> list[tuple[str, str]]:
    """(value for train.device, text for the user) pairs: auto, cpu, each CUDA GPU with its
    name and memory, and Apple's MPS where present."""
    gpus = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            gpus.append((f"cuda:{index}", f"cuda:{index}: {props.name}, {props.total_memory / 2**30:.0f} GiB"))
    mps = torch.backends.mps.is_available() if hasattr(torch.backends, "mps") else False
    best = gpus[0][0] if gpus else "mps" if mps else "cpu"
    return ([("auto", f"auto (uses {best})")] + gpus + ([("mps", "mps: Apple GPU")] if mps else [])
            + [("cpu", "cpu" + ("" if gpus or mps else " (no GPU found)"))])
