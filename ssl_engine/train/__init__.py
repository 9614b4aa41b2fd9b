"""The training loop, its events, its control switches, schedules, optimisers and checkpoints."""

from .control import TrainingControl
from .events import EventRates
from .trainer import Trainer, TrainingDiverged

__all__ = ["EventRates", "Trainer", "TrainingControl", "TrainingDiverged"]
