"""Safeguards: what keeps a method from collapsing, declared as the settings that switch it off.

Every joint-embedding objective has trivial solutions: map every image to one point, or onto a
few dimensions, and two views of an image agree perfectly. Each method is kept from them by a
device of its own: SimSiam's stop-gradient, BYOL's predictor and slow target, Barlow Twins'
redundancy term, VICReg's variance term, DINO's centring and sharpening, SwAV's balanced codes,
the contrastive methods' negatives. A method names its device as a `Safeguard`:

    safeguard = Safeguard(
        name="the stop-gradient",
        keeps="one sentence: how it keeps the method from collapsing",
        removed=(Setting("method.stop_gradient", False, "why this value switches it off"),),
    )

`removed` is a recipe's kind of settings (`ssl_engine.recipes.Setting`): a collapse demo is the
method's config with them on top (`ExperimentConfig.without_safeguard`), recorded in the run's
config.toml like every other value, not a code path of its own. `watch` names the live measures
that show the collapse when the safeguard is off. A method without one declares none.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UserError
from .recipes import Setting

# a collapse is a representation that loses its dimensions (its effective rank falls) and its
# spread (the per-dimension standard deviation of the normalised embeddings falls to 0)
WATCH = ("rankme", "embedding_std")


@dataclass(frozen=True)
class Safeguard:
    """What keeps a method from collapsing: its name ("the stop-gradient"), one sentence on how
    it does, the settings that switch it off, and the probes that show the collapse then."""

    name: str
    keeps: str
    removed: tuple[Setting, ...]
    watch: tuple[str, ...] = WATCH


def safeguard_of(method_name: str) -> Safeguard:
    """The safeguard method `method_name` declares; a UserError naming the methods that declare
    one when it declares none (an unknown name is get_method's ConfigError)."""
    from .methods import METHODS, get_method

    safeguard = get_method(method_name).safeguard
    if safeguard is None:
        with_one = sorted(name for name, method in METHODS.items() if method.safeguard is not None)
        raise UserError(f"{method_name} declares no safeguard to switch off (methods with one: {', '.join(with_one)})")
    return safeguard


# the contrastive methods' safeguard: SimCLR, MoCo v2 and MoCo v3 switch it off alike
NEGATIVES = Safeguard(
    name="the negatives",
    keeps="Each view must pick out its positive among other images' embeddings, which pushes different images "
          "apart; with the positive pair's term alone, every image mapped to one point aligns every pair perfectly.",
    removed=(Setting("method.negatives", False, "no negatives: the positive pair's alignment term alone, losses.positive_alignment"),),
)
NEGATIVES_HELP = ("contrast each positive against other images, what keeps the method from collapsing; false: the "
                  "positive pair's alignment term alone (losses.positive_alignment), and nothing keeps images apart")
