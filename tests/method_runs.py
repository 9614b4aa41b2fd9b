"""Tiny training runs of every method, each trained once a session and watched step by step: what
the method contract (test_method_contract.py) and the per-method files check real runs against.

For each method, on one tiny config (`run_config`): an uninterrupted run; the same run stopped
inside its second epoch (Stop, as the app's button) and resumed from that checkpoint; and, for a
method that takes any backbone, one epoch on a ViT. A listener writes down each step's loss and
terms, the masks the step drew, the matrices the UI was sent and which parameters got a gradient,
and whether the epoch work embedded the training set and the ViT's mask token stood in for patches.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ssl_engine.checkpoint import load_checkpoint
from ssl_engine.methods.masked import MaskedMethod
from ssl_engine.train import EventRates, Trainer, TrainingControl
from ssl_engine.train.events import ProbeResult, RunStarted, StepMetrics
from tests.helpers import tiny_config

# 20 training images in batches of 10: 2 steps an epoch, 2 epochs; the stopped run stops one step
# before the end, inside the second epoch, so that its resume re-enters an epoch in progress
EPOCHS, STEPS_PER_EPOCH, STOP_AT = 2, 2, 3


def run_config(folder: Path, method: str, *extra: str):
    """`tests.helpers.tiny_config` made smaller for runs of every method: 20 training images of
    100 (2 steps an epoch, 2 epochs) at 16 px, a ViT of 2 blocks with 4 px patches where the method
    is on one, and at most two global and two local views."""
    config = tiny_config(folder, method, "data.test_fraction=0.8", "train.eval_subset=16", "data.image_size=16",
                         "backbone.patch_size=4", "backbone.vit_depth=2", *extra, epochs=EPOCHS, count=100, batch=10)
    config.augment.views = config.augment.views[:4]
    return config


@dataclass(frozen=True)
class Gradient:
    """What one parameter held after a step's backward pass."""

    trainable: bool  # requires_grad
    present: bool    # .grad is not None
    nonzero: bool    # .grad holds a value other than 0


@dataclass
class Watched:
    """What a listener saw of one run: its summary; the names of the parameters the optimiser
    trains and of the momentum targets' parameters; how often the method's epoch work embedded
    the training set; whether a ViT's mask token stood in for patches; and per step (1-based, as
    StepMetrics counts) the loss, its terms, the step masks the method drew (masked methods) and
    each parameter's gradient."""

    summary: dict = field(default_factory=dict)
    train_size: int = 0
    mask_seed: int | None = None
    dataset_passes: int = 0  # times the method's epoch work embedded the training set (`before_epoch`)
    mask_token_used: bool = False  # whether a step put the ViT's mask token in place of patches
    trained: set[str] = field(default_factory=set)
    targets: set[str] = field(default_factory=set)
    losses: dict[int, float] = field(default_factory=dict)
    terms: dict[int, dict[str, float]] = field(default_factory=dict)
    masks: dict[int, object] = field(default_factory=dict)
    gradients: dict[int, dict[str, Gradient]] = field(default_factory=dict)
    matrix_names: set[str] = field(default_factory=set)


def watched_run(config, resume: Path | None = None, stop_at: int | None = None) -> tuple[Watched, Path]:
    """Train `config` (from `resume`'s checkpoint when given), pressing Stop after step `stop_at`;
    what was seen, and the run folder."""
    control = TrainingControl()
    trainer = Trainer(config, control=control, resume=resume)
    seen = Watched()

    def record_step_masks(method):
        draw = method.step_masks

        def recorded(images, step, views=1):
            masks = draw(images, step, views)
            seen.masks[step + 1] = masks  # step k (0-based) is StepMetrics' step k + 1
            return masks

        method.step_masks = recorded

    def record_mask_token_use(vit):
        embed = vit.embed

        def recorded(images, mask=None, keep=None):
            seen.mask_token_used |= mask is not None
            return embed(images, mask, keep)

        vit.embed = recorded

    def on_start(method):
        names = {id(p): name for name, p in method.named_parameters()}
        seen.trained = {names[id(p)] for group in method.parameter_groups() for p in group["params"]}
        ema = getattr(method, "ema", None)  # models.ema.MomentumTargets, where the method has targets
        seen.targets = {names[id(p)] for _, target in (ema.pairs if ema else []) for p in target.parameters()}
        if isinstance(method, MaskedMethod):
            seen.mask_seed = method.mask_seed
            record_step_masks(method)
        if hasattr(method.backbone, "mask_token"):
            record_mask_token_use(method.backbone)

    def count_dataset_passes():
        embed = trainer._dataset_features

        def counted(*args, **kwargs):
            seen.dataset_passes += 1
            return embed(*args, **kwargs)

        trainer._dataset_features = counted

    def listen(event):
        if isinstance(event, RunStarted):  # the method is built (and loaded), no step has run yet
            seen.train_size = event.train_size
            on_start(trainer.method)
            count_dataset_passes()
        elif isinstance(event, StepMetrics):
            seen.losses[event.step], seen.terms[event.step] = event.loss, event.terms
            # the step's gradients are still in place: the next step clears them
            seen.gradients[event.step] = {
                name: Gradient(p.requires_grad, p.grad is not None, p.grad is not None and bool(p.grad.any()))
                for name, p in trainer.method.named_parameters()}
            if event.step == stop_at:
                control.stop()
        elif isinstance(event, ProbeResult) and event.name == "matrices":
            seen.matrix_names |= set(event.value.matrices)

    trainer.subscribe(listen, EventRates(metrics_every_steps=1, probes={"matrices": 1}))
    seen.summary = trainer.run()
    return seen, trainer.run_dir


@dataclass
class ResumedRun:
    """A method trained on `run_config` straight through, and again stopped after STOP_AT steps
    and resumed: what each part saw, and their checkpoints."""

    straight: Watched
    stopped: Watched
    resumed: Watched
    straight_dir: Path
    resumed_dir: Path            # the stopped run's folder, which the resumed run went on in
    stopped_checkpoint: Path     # the stop's checkpoint, kept aside before the resumed run replaced it

    def straight_state(self) -> dict:
        return load_checkpoint(self.straight_dir)

    def stopped_state(self) -> dict:
        return load_checkpoint(self.stopped_checkpoint)

    def resumed_state(self) -> dict:
        return load_checkpoint(self.resumed_dir)


class MethodRuns:
    """The runs above, trained when first asked for and kept for the session."""

    def __init__(self, root: Path):
        self.root = root
        self._resumed: dict[str, ResumedRun] = {}
        self._on_vit: dict[str, tuple[Watched, Path]] = {}

    def resumed(self, method: str) -> ResumedRun:
        """`method` trained straight through, and stopped then resumed (see ResumedRun)."""
        if method not in self._resumed:
            folder = self.root / method
            straight, straight_dir = watched_run(run_config(folder / "straight", method))
            stopped, stopped_dir = watched_run(run_config(folder / "stopped", method), stop_at=STOP_AT)
            kept = Path(shutil.copy(stopped_dir / "checkpoints" / "last.pt", folder / "stopped.pt"))
            resumed, resumed_dir = watched_run(run_config(folder / "stopped", method), resume=stopped_dir)
            self._resumed[method] = ResumedRun(straight, stopped, resumed, straight_dir, resumed_dir, kept)
        return self._resumed[method]

    def on_vit(self, method: str) -> tuple[Watched, Path]:
        """One epoch (2 steps) of `method` on `run_config`'s ViT-Tiny: what was seen, and the run folder."""
        if method not in self._on_vit:
            config = run_config(self.root / method / "vit", method, "backbone.name=vit_tiny", "train.epochs=1")
            self._on_vit[method] = watched_run(config)
        return self._on_vit[method]
