"""The engine's seams, read from the source: which packages import which.

The engine never imports Qt; evaluation and the probes (the live views) reach backbones,
devices and checkpoints through their own modules and never through training (the trainer
imports both, so the reverse would be a cycle); only the command line and the app import the
trainer module, and then only for `Trainer` and its error.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imports_of(path: Path) -> list[tuple[str, list[str]]]:
    """(absolute module, names) for every import statement in a file of the repository."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.append((base, [alias.name for alias in node.names]))
    return found


def python_files(*folders: str) -> list[Path]:
    return [path for folder in folders for path in sorted((ROOT / folder).rglob("*.py"))]


def test_the_engine_never_imports_qt():
    offenders = [(path.name, module) for path in python_files("ssl_engine") for module, _ in imports_of(path)
                 if module.split(".")[0] in ("PySide6", "pyqtgraph", "app")]
    assert offenders == []


@pytest.mark.parametrize("package", ["eval", "probes"])
def test_evaluation_and_the_probes_do_not_import_training(package):
    # the trainer imports both (its live views are probes, which evaluate), so the reverse would be a cycle
    offenders = [(path.name, module) for path in python_files(f"ssl_engine/{package}") for module, _ in imports_of(path)
                 if module == "ssl_engine.train" or module.startswith("ssl_engine.train.")]
    assert offenders == []


def test_only_the_cli_and_the_app_import_the_trainer_and_only_for_trainer():
    allowed_names = {"Trainer", "TrainingDiverged", "LIVE_KNN_MEMORY"}
    users, wrong_names = set(), []
    for path in python_files("ssl_engine", "app", "benchmarks", "tests"):
        for module, names in imports_of(path):
            if module == "ssl_engine.train.trainer":
                users.add(str(path.relative_to(ROOT)))
                wrong_names += [(path.name, name) for name in names if name not in allowed_names]
    assert wrong_names == []
    assert all(user.startswith(("ssl_engine/train/", "ssl_engine/cli.py", "app/")) for user in users), users


def test_the_reader_finds_imports_of_every_form():
    # the reader itself, on the trainer: a relative import two levels up and one level up
    modules = {module for module, _ in imports_of(ROOT / "ssl_engine" / "train" / "trainer.py")}
    assert {"ssl_engine.models.build", "ssl_engine.train.events", "torch"} <= modules
