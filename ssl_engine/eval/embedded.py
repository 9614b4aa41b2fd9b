"""The models an evaluation opens and the folders it embeds with each of them.

A `ModelChoice` is a model as a person picks it (a checkpoint, or the random-init floor with
the architecture of the model beside it); `open_models` turns choices into `EvalModel`s and
`embed_models` embeds every folder with every model, in that order, through the embedding
cache of `folder_embedding`. `EmbeddedFolders` is one model's embeddings of the folders, and
all of them joined as one set. `LoadedModels` keeps the models a session has opened, so that
an unchanged checkpoint is not read twice.

Nothing here blocks on anyone: progress, each finished folder and the cancel flag are
callbacks, which the app's embedding thread and the command line's progress bar provide.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..checkpoint import checkpoint_file
from .folder_embedding import EmbeddingCancelled, FolderEmbedding, combine_embeddings, embed_folder
from .model_source import EvalModel, open_model, random_init_model


@dataclass(frozen=True)
class ModelChoice:
    """A model as the user picked it: a checkpoint (file or run folder), or a random-init floor
    with the architecture of the other model chosen beside it."""

    label: str                 # for people, as the model list shows it
    checkpoint: str = ""       # "" for the random-init floor

    @property
    def is_random(self) -> bool:
        return not self.checkpoint


RANDOM_INIT = ModelChoice("Random init (floor)")


@dataclass
class EmbeddedFolders:
    """One model's embeddings of the opened folders, and all of them as one set for the map."""

    model: EvalModel
    folders: list[FolderEmbedding]

    @cached_property
    def _joined(self) -> tuple[FolderEmbedding, np.ndarray]:
        # made when first asked for: the compared model's folders are only read one by one
        return combine_embeddings(self.folders)

    @property
    def combined(self) -> FolderEmbedding:
        """The folders one after the other; classes merged by name."""
        return self._joined[0]

    @property
    def folder_of(self) -> np.ndarray:
        """int64 (N,): the folder each row of `combined` comes from."""
        return self._joined[1]

    @property
    def folder_names(self) -> list[str]:
        return [os.path.basename(folder.root) or folder.root for folder in self.folders]


def same_path(first: str | os.PathLike, second: str | os.PathLike) -> bool:
    return bool(first) and bool(second) and os.path.abspath(first) == os.path.abspath(second)


def open_models(choices: list[ModelChoice], loaded: dict[str, EvalModel] | None = None) -> list[EvalModel]:
    """The models of `choices`, in order. Checkpoints first, so that a random-init floor takes
    the architecture of the model beside it; `loaded` maps a checkpoint to a model already
    opened (it is not read again)."""
    loaded = loaded or {}
    models: list[EvalModel | None] = [None] * len(choices)
    for index, choice in enumerate(choices):
        if not choice.is_random:
            models[index] = loaded.get(choice.checkpoint) or open_model(choice.checkpoint)
    like = next((model for model in models if model is not None), None)
    for index, choice in enumerate(choices):
        if choice.is_random:
            models[index] = random_init_model(like)
    return models


def embed_models(models: list[EvalModel], folders: list[str], *, cache_dir: str | None = None,
                 device: str = "auto", batch_size: int = 128,
                 starting: Callable[[int, int], None] | None = None,
                 progress: Callable[[int, int, int, int, float], None] | None = None,
                 finished: Callable[[int, int, FolderEmbedding], None] | None = None,
                 cancelled: Callable[[], bool] | None = None) -> list[EmbeddedFolders]:
    """Every folder embedded with every model, model by model, so that the first model's
    embeddings can be shown while the next one embeds.

    `starting(model_index, folder_index)` is called before each folder,
    `progress(model_index, folder_index, done, total, images_per_second)` after each chunk and
    `finished(model_index, folder_index, embedding)` after each folder; `cancelled()` is polled
    before each folder and between chunks (EmbeddingCancelled; the rows so far stay cached).
    """
    embedded = []
    for model_index, model in enumerate(models):
        embeddings = []
        for folder_index, folder in enumerate(folders):
            if cancelled is not None and cancelled():  # cancelled while a model opened, or between folders
                raise EmbeddingCancelled("embedding cancelled")
            if starting is not None:
                starting(model_index, folder_index)

            def folder_progress(done: int, total: int, images_per_second: float,
                                model_index=model_index, folder_index=folder_index) -> None:
                if progress is not None:
                    progress(model_index, folder_index, done, total, images_per_second)

            embedding = embed_folder(model, folder, cache_dir=cache_dir, batch_size=batch_size, device=device,
                                     progress=folder_progress, cancelled=cancelled)
            if finished is not None:
                finished(model_index, folder_index, embedding)
            embeddings.append(embedding)
        embedded.append(EmbeddedFolders(model, embeddings))
    return embedded


class LoadedModels:
    """The checkpoints a session has opened, each with its model, reused while the file is
    unchanged; and the checkpoints opened by hand, which the model list offers beside the runs."""

    def __init__(self):
        self._loaded: dict[str, tuple[float, EvalModel]] = {}   # checkpoint file -> (mtime, model)
        self.opened: list[ModelChoice] = []

    def remember(self, model: EvalModel) -> None:
        """Keep `model` (a random-init floor has no file and is not kept)."""
        if os.path.exists(model.source):
            self._loaded[model.source] = (os.path.getmtime(model.source), model)

    def opened_by_hand(self, model: EvalModel) -> ModelChoice:
        """Keep a model the user opened from a file, listed from now on; its choice."""
        choice = ModelChoice(model.name, model.source)
        self.remember(model)
        if choice not in self.opened:
            self.opened.append(choice)
        return choice

    def for_choices(self, choices: Iterable[ModelChoice]) -> dict[str, EvalModel]:
        """Models already opened for these choices (by checkpoint) whose file has not changed since."""
        loaded = {}
        for choice in choices:
            for source, (mtime, model) in self._loaded.items():
                if same_path(choice.checkpoint, source) or same_path(checkpoint_file(choice.checkpoint), source):
                    if os.path.exists(source) and os.path.getmtime(source) == mtime:
                        loaded[choice.checkpoint] = model
        return loaded

    def keep_only(self, models: Iterable[EvalModel]) -> None:
        """Forget every other model: a ViT-B is hundreds of MB."""
        self._loaded = {model.source: self._loaded[model.source] for model in models if model.source in self._loaded}
