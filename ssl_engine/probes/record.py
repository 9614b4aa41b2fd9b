"""Probe results in a run folder, and read back: what a reopened run rebuilds its views from.

Each result that is not a curve (curves go in metrics.jsonl's rows) is one `.npz` file under
`probes/<name>/`, listed in `probes/index.jsonl` with its step, epoch and payload type. An
array equal to the one the same probe last wrote (the evaluation images of every map, the
sample images of every view) is written once and referred to after. Floating-point arrays are
stored in float16 when they fit (3 significant digits: these are pictures, not weights).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
from pathlib import Path

import numpy as np

from ..runs import PROBE_INDEX as INDEX
from .base import ProbeResult
FLOAT16_LIMIT = 60000.0


def _flatten(value) -> tuple[dict[str, np.ndarray], dict, dict[str, str]]:
    """A payload dataclass -> (arrays by key, plain fields, the layout of each array field:
    "array", ["list", count] (keys field#i) or ["dict", names in order] (keys field:name))."""
    arrays, plain, layout = {}, {}, {}
    for f in dataclasses.fields(value):
        v = getattr(value, f.name)
        if isinstance(v, np.ndarray):
            arrays[f.name], layout[f.name] = v, "array"
        elif isinstance(v, list) and v and all(isinstance(x, np.ndarray) for x in v):
            arrays.update({f"{f.name}#{i}": x for i, x in enumerate(v)})
            layout[f.name] = ["list", len(v)]
        elif isinstance(v, dict) and v and all(isinstance(x, np.ndarray) for x in v.values()):
            arrays.update({f"{f.name}:{k}": x for k, x in v.items()})
            layout[f.name] = ["dict", list(v)]
        else:
            plain[f.name] = v
    return arrays, plain, layout


def _stored(array: np.ndarray) -> np.ndarray:
    if array.dtype in (np.float32, np.float64) and array.size and np.isfinite(array).all() \
            and np.abs(array).max() < FLOAT16_LIMIT:
        return array.astype(np.float16)
    return array


def _digest(array: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(array).view(np.uint8).reshape(-1)).hexdigest() + str(array.shape)


class ProbeRecorder:
    """A listener that writes every probe result it receives (curves excepted) to `folder`."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._last: dict[tuple[str, str], tuple[str, str]] = {}  # (probe, key) -> (digest, file)

    def __call__(self, event) -> None:
        if not isinstance(event, ProbeResult) or not dataclasses.is_dataclass(event.value):
            return
        arrays, plain, layout = _flatten(event.value)
        relative = f"{event.name}/{event.step:09d}.npz"
        new, same = {}, {}
        for key, array in arrays.items():
            digest = _digest(array)
            earlier = self._last.get((event.name, key))
            if earlier is not None and earlier[0] == digest:
                same[key] = earlier[1]
            else:
                new[key] = _stored(array)
                self._last[(event.name, key)] = (digest, relative)
        path = self.folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **new)
        kind = type(event.value)
        entry = {"name": event.name, "step": event.step, "epoch": event.epoch, "file": relative,
                 "type": f"{kind.__module__}:{kind.__qualname__}", "layout": layout, "plain": plain, "same": same}
        with open(self.folder / INDEX, "a") as index:
            index.write(json.dumps(entry) + "\n")


def _payload_type(name: str):
    module, _, qualname = name.partition(":")
    if not module.startswith("ssl_engine."):
        raise ValueError(f"not a payload of this engine: {name}")
    return getattr(importlib.import_module(module), qualname)


def _entries(folder: Path) -> list[dict]:
    index = folder / INDEX
    if not index.is_file():
        return []
    return [json.loads(line) for line in index.read_text().splitlines() if line.strip()]


def recorded(folder: str | Path) -> dict[str, list[tuple[int, int]]]:
    """What `folder` holds, without loading it: probe name -> its (step, epoch) pairs in order."""
    steps: dict[str, list[tuple[int, int]]] = {}
    for entry in _entries(Path(folder)):
        steps.setdefault(entry["name"], []).append((entry["step"], entry["epoch"]))
    return steps


def read_probe_results(folder: str | Path, name: str | None = None, step: int | None = None) -> list[ProbeResult]:
    """The recorded results (of probe `name`, or all; at `step`, or all) in the order they were
    written, with float arrays as float32. Only the files these need are read."""
    folder = Path(folder)
    results, files = [], {}

    def load(relative: str):
        if relative not in files:
            with np.load(folder / relative) as stored:
                files[relative] = {k: stored[k] for k in stored.files}
        return files[relative]

    for entry in _entries(folder):
        if (name is not None and entry["name"] != name) or (step is not None and entry["step"] != step):
            continue
        arrays = dict(load(entry["file"]))
        for key, other in entry["same"].items():
            arrays[key] = load(other)[key]
        arrays = {k: a.astype(np.float32) if a.dtype == np.float16 else a for k, a in arrays.items()}
        fields = dict(entry["plain"])
        for field_name, layout in entry["layout"].items():
            if layout == "array":
                fields[field_name] = arrays[field_name]
            elif layout[0] == "list":
                fields[field_name] = [arrays[f"{field_name}#{i}"] for i in range(layout[1])]
            else:
                fields[field_name] = {key: arrays[f"{field_name}:{key}"] for key in layout[1]}
        value = _payload_type(entry["type"])(**fields)
        results.append(ProbeResult(name=entry["name"], step=entry["step"], epoch=entry["epoch"], value=value))
    return results
