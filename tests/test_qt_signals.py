"""Guard for the PySide6 pin: PySide6 6.12.0 on Python 3.11 aborts the interpreter
(`Fatal Python error: bool_dealloc`) after a few hundred cross-thread signal emits. A worker
thread emits thousands of signals to a slot of a QObject living in the UI thread, as the
training worker will."""

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
QtCore = pytest.importorskip("PySide6.QtCore")


class _Emitter(QtCore.QObject):
    metrics = QtCore.Signal(object)
    value = QtCore.Signal(float)
    flag = QtCore.Signal(bool)


class _Receiver(QtCore.QObject):
    def __init__(self):
        super().__init__()
        self.count = 0
        self.threads = set()

    @QtCore.Slot(object)
    def on_metrics(self, payload):
        self.count += 1
        self.threads.add(QtCore.QThread.currentThread())

    @QtCore.Slot(float)
    def on_value(self, value):
        self.count += 1

    @QtCore.Slot(bool)
    def on_flag(self, value):
        self.count += 1


def test_thousands_of_cross_thread_emits(qtbot):
    emits = 3000
    emitter, receiver = _Emitter(), _Receiver()
    worker = QtCore.QThread()
    emitter.moveToThread(worker)
    emitter.metrics.connect(receiver.on_metrics)
    emitter.value.connect(receiver.on_value)
    emitter.flag.connect(receiver.on_flag)

    def emit_all():
        for i in range(emits):
            emitter.metrics.emit({"step": i, "loss": 1.0 / (i + 1)})
            emitter.value.emit(float(i))
            emitter.flag.emit(i % 2 == 0)

    worker.started.connect(emit_all)
    worker.start()
    qtbot.waitUntil(lambda: receiver.count == 3 * emits, timeout=30000)
    worker.quit()
    worker.wait()
    assert receiver.threads == {QtCore.QThread.currentThread()}  # slots ran in the UI thread
