"""The Evaluate tab's work off the UI thread: embedding folders, and one-shot jobs (projections,
clusters, duplicates, accuracy, exports).

`EmbeddingThread` opens one or two models and embeds every opened folder with each, with the
engine's `open_models` and `embed_models`. It never signals per batch: it writes its progress
and each finished (model, folder) embedding into a lock-protected `EmbeddingState`, which a
QTimer in the UI thread polls (as app/worker.py's Mailbox); its own `finished` signal,
delivered to the UI thread, is the one signal it uses. Cancel is a flag that `embed_folder`
polls between batches; rows embedded so far stay cached.

`LatestCall` runs one-shot jobs (a t-SNE, k-means, near-duplicates, an accuracy report) in a
BackgroundCall, one at a time per kind: a request made while one runs waits, and only the latest
request's result is delivered, so a slider dragged across many thresholds computes two, not twenty.
What the jobs compute is the engine's (ssl_engine.eval.results, ssl_engine.eval.session_exports);
the UI thread hands their results to the evaluation session.
"""

from __future__ import annotations

import threading
import traceback
from dataclasses import dataclass, field, replace

from PySide6.QtCore import QObject, QThread, Signal, Slot

from ssl_engine.errors import UserError
from ssl_engine.eval.embedded import ModelChoice, embed_models, open_models
from ssl_engine.eval.folder_embedding import EmbeddingCancelled, FolderEmbedding
from ssl_engine.eval.model_source import EvalModel

from .background import BackgroundCall
from .compute_threads import use_all_cores_in_this_thread

# -- embedding folders ---------------------------------------------------------------------

@dataclass
class EmbeddingState:
    """What the UI polls: progress of the folder being embedded and what is finished."""

    model_index: int = 0
    folder_index: int = 0
    done: int = 0
    total: int = 0
    images_per_second: float = 0.0
    models: list[EvalModel | None] = field(default_factory=list)
    finished: dict[tuple[int, int], FolderEmbedding] = field(default_factory=dict)

    def ready(self, model_index: int, folder_count: int) -> bool:
        """Whether every folder has been embedded with this model."""
        return all((model_index, f) in self.finished for f in range(folder_count))


class EmbeddingThread(QThread):
    """Opens `choices` (one or two models) and embeds each of `folders` with each, in that order,
    so that the first model's map can be drawn while the second one embeds.

    `loaded` maps a checkpoint path to an EvalModel already opened (it is not opened again).
    After `finished`: `error` is one line for the user (None when all went well), `cancelled` says
    whether Cancel ended it and `cancel_message` how far it got."""

    def __init__(self, choices: list[ModelChoice], folders: list[str], *, loaded: dict[str, EvalModel] | None = None,
                 cache_dir: str | None = None, device: str = "auto", parent=None):
        super().__init__(parent)
        self.choices, self.folders = list(choices), list(folders)
        self.loaded = dict(loaded or {})
        self.cache_dir, self.device = cache_dir, device
        self.error: str | None = None
        self.details = ""
        self.cancelled = False
        self.cancel_message = ""
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._state = EmbeddingState(models=[None] * len(self.choices))

    def cancel(self) -> None:
        self._cancel.set()

    def state(self) -> EmbeddingState:
        """A copy of the state now, safe to read in the UI thread."""
        with self._lock:
            return replace(self._state, models=list(self._state.models), finished=dict(self._state.finished))

    def run(self) -> None:
        use_all_cores_in_this_thread()
        try:
            models = open_models(self.choices, self.loaded)
            with self._lock:
                self._state.models = list(models)
            embed_models(models, self.folders, cache_dir=self.cache_dir, device=self.device, starting=self._starting,
                         progress=self._progress, finished=self._finished, cancelled=self._cancel.is_set)
        except EmbeddingCancelled as cancelled:
            self.cancelled = True
            self.cancel_message = str(cancelled)
        except UserError as error:
            self.error = str(error)
        except Exception as error:  # a bug or an unexpected file: one line, the rest in details
            self.error = f"{type(error).__name__}: {error}"
            self.details = traceback.format_exc()

    # the engine's callbacks, in this thread
    def _starting(self, model_index: int, folder_index: int) -> None:
        with self._lock:
            self._state.model_index, self._state.folder_index = model_index, folder_index
            self._state.done, self._state.total, self._state.images_per_second = 0, 0, 0.0

    def _progress(self, model_index: int, folder_index: int, done: int, total: int, images_per_second: float) -> None:
        with self._lock:
            self._state.done, self._state.total = done, total
            self._state.images_per_second = images_per_second

    def _finished(self, model_index: int, folder_index: int, embedding: FolderEmbedding) -> None:
        with self._lock:
            self._state.finished[(model_index, folder_index)] = embedding


# -- one-shot jobs, latest request wins ----------------------------------------------------

class LatestCall(QObject):
    """Runs `request(fn, *args)` in a BackgroundCall, one at a time, delivering only the newest
    request's outcome through `done(result)` or `failed(message)` (both in the UI thread).

    `cancel_event` is set when a newer request or `shutdown()` supersedes the running one; jobs
    that can stop early (the accuracy report) poll it."""

    done = Signal(object)
    failed = Signal(str)
    idle = Signal()  # nothing runs or waits any more (also after a dropped job ends)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._running: BackgroundCall | None = None
        self._running_cancel: threading.Event | None = None
        self._pending: tuple | None = None

    def busy(self) -> bool:
        return self._running is not None or self._pending is not None

    def request(self, fn, *args, **kwargs) -> None:
        self._pending = (fn, args, kwargs)
        if self._running is None:
            self._start_pending()
        elif self._running_cancel is not None:
            self._running_cancel.set()

    def request_cancellable(self, fn, *args, **kwargs) -> None:
        """As `request`, passing the job a `cancelled` callable that turns true when it is superseded."""
        self.request(fn, *args, _cancellable=True, **kwargs)

    def drop(self) -> None:
        """Forget a pending request and ignore the running one's outcome."""
        self._pending = None
        if self._running_cancel is not None:
            self._running_cancel.set()
        if self._running is not None:
            self._running.superseded = True

    def shutdown(self) -> None:
        """Drop what is pending and wait for the running job: no thread outlives the panel."""
        self.drop()
        if self._running is not None:
            self._running.wait()

    def _start_pending(self) -> None:
        fn, args, kwargs = self._pending
        self._pending = None
        self._running_cancel = threading.Event()
        if kwargs.pop("_cancellable", False):
            kwargs["cancelled"] = self._running_cancel.is_set
        self._running = BackgroundCall(fn, *args, **kwargs)
        self._running.superseded = False
        self._running.finished.connect(self._finished)
        self._running.start()

    @Slot()
    def _finished(self) -> None:
        call, self._running, self._running_cancel = self._running, None, None
        if call is None:
            return
        call.wait()
        if self._pending is not None:
            self._start_pending()
            return
        if not call.superseded:
            if call.error:
                self.failed.emit(call.error)
            else:
                self.done.emit(call.result)
        if self._running is None:
            self.idle.emit()
