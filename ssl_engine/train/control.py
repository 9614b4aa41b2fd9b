"""Pause, resume and stop, asked from any thread and honoured by the Trainer between steps."""

from __future__ import annotations

import threading


class TrainingControl:
    """Thread-safe switches the training loop checks between steps."""

    def __init__(self):
        self._running = threading.Event()
        self._running.set()
        self._stop = threading.Event()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        """Ask the loop to end; it saves a checkpoint first. Also wakes a paused loop."""
        self._stop.set()
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def wait_while_paused(self) -> None:
        """Block while paused; return at once when running or asked to stop."""
        while not self._running.wait(timeout=0.1):
            pass
