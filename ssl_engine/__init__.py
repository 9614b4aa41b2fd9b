"""SSL Explorer's training engine: self-supervised learning on images, with no Qt import.

The command line, the tests, torchrun and the desktop app all drive the same `Trainer`.
"""

__version__ = "0.1.0"
