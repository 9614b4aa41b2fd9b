"""Self-contained pyqtgraph views of a training run: loss curves, matrices, embedding maps."""
