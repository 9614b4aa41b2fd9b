"""One function run off the UI thread, its result or its error handed back to the UI thread.

`BackgroundCall(fn, *args)` is a QThread: connect its `finished` signal (emitted by Qt, received
in the thread that owns the receiver) to a slot of a UI object, then read `result` or `error`.

A started call stays referenced (in `_STARTED`, pruned of finished calls at each start), so a window that is
deleted while its data loads cannot take the QThread object down with it: Qt aborts the whole
process when a QThread is destroyed while it still runs.
"""

from __future__ import annotations

import traceback

from PySide6.QtCore import QThread

from ssl_engine.errors import UserError

from .compute_threads import use_all_cores_in_this_thread

_STARTED: set["BackgroundCall"] = set()


class BackgroundCall(QThread):
    def __init__(self, fn, *args, **kwargs):
        super().__init__()
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.result = None
        self.error: str | None = None   # one line for the user
        self.details: str = ""          # the traceback, for the log

    def start(self) -> None:
        _STARTED.difference_update([call for call in _STARTED if call.isFinished()])
        _STARTED.add(self)
        super().start()

    def run(self) -> None:
        use_all_cores_in_this_thread()
        try:
            self.result = self.fn(*self.args, **self.kwargs)
        except UserError as error:
            self.error = str(error)
        except Exception as error:  # a bug or an unexpected file: one line, the rest in details
            self.error = f"{type(error).__name__}: {error}"
            self.details = traceback.format_exc()
