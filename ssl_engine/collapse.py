"""The collapse alarm: whether the network's embedding of the fixed evaluation images has
collapsed, read from the diagnostics of an epoch (`ssl_engine.probes.diagnostics`) against the
highest the same run has measured so far (its random-init values included), and what to tell
the user.

Two kinds (Jing et al. 2022, "Understanding dimensional collapse in contrastive self-supervised
learning"; Garrido et al. 2023 for the rank):
- complete collapse: every image gets nearly the same embedding; the spread of the normalised
  embeddings falls to a small share of the run's highest, or a single direction is left;
- dimensional collapse: the embedding still varies, but along a few directions only; its
  effective rank (RankMe) falls to a small share of the run's highest.

The references are the run's own values, not 1/sqrt(d) or the dimension: a randomly initialised
network's embeddings already share one large mean direction (their spread a fraction of
1/sqrt(d), their rank a small share of their dimension); a healthy run keeps or raises both, a
collapsing one loses them, often after a first rise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# a share of the random-init value under which the alarm fires (see the module's docstring for
# why the reference is the network's own; the measured values are in the closing note of the
# theory issue and in tests/test_collapse.py)
STD_SHARE = 0.2
RANK_SHARE = 0.2
# -uniformity is 0 when every embedding is the same point and about 2t = 4 when they cover the
# sphere evenly (Wang and Isola 2020): a fall to a tenth of the run's highest is images merging
UNIFORMITY_SHARE = 0.1
ONE_DIRECTION = 1.5  # RankMe at or under this: a single direction is left, whatever it started at

CAUSES = {
    "learning rate": "a learning rate too high for the batch (optim.lr)",
    "temperature": "a temperature too low or too high (method.temperature)",
    "batch size": "a batch too small for the batch statistics the loss relies on (train.batch_size)",
}


@dataclass(frozen=True)
class CollapseAlarm:
    kind: str         # "complete" or "dimensional"
    epoch: int
    rank: float
    rank_reference: float    # the run's highest rank before this epoch
    spread: float
    spread_reference: float
    message: str      # for the user: what happened, the method's safeguard, what usually causes it


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def collapse_kind(values: dict, reference: dict) -> str | None:
    """"complete", "dimensional" or None for one epoch's diagnostics against `reference` (the
    run's highest rank and spread, and its lowest uniformity, so far)."""
    rank, spread = values.get("rankme"), values.get("embedding_std")
    rank_0, spread_0 = reference.get("rankme"), reference.get("embedding_std")
    if not all(_finite(v) for v in (rank, spread, rank_0, spread_0)):
        return None
    uniformity, uniformity_0 = values.get("uniformity"), reference.get("uniformity")
    merged = _finite(uniformity) and _finite(uniformity_0) and -uniformity <= UNIFORMITY_SHARE * -uniformity_0
    if spread <= STD_SHARE * spread_0 or rank <= ONE_DIRECTION < rank_0 or merged:
        return "complete"
    if rank <= RANK_SHARE * rank_0:
        return "dimensional"
    return None


def collapse_alarm(values: dict, reference: dict, *, epoch: int, method: str,
                   removed: list[str] | None = None) -> CollapseAlarm | None:
    """The alarm for one epoch's diagnostics (`values`) of a run of `method`, against
    `reference`, the run's highest rank and spread so far; None when the embedding has not
    collapsed. `removed`: the method's safeguard settings this run switched off, if any."""
    from .methods import get_method

    kind = collapse_kind(values, reference)
    if kind is None:
        return None
    rank, spread = values["rankme"], values["embedding_std"]
    rank_0, spread_0 = reference["rankme"], reference["embedding_std"]
    if kind == "complete":
        what = (f"complete collapse at epoch {epoch}: the images' embeddings have nearly merged into one "
                f"(spread {spread:.3g}, {spread / spread_0:.0%} of this run's highest; uniformity "
                f"{values.get('uniformity', float('nan')):.3g}; effective rank {rank:.1f})")
    else:
        what = (f"dimensional collapse at epoch {epoch}: the embeddings vary along a few directions only "
                f"(effective rank {rank:.1f}, {rank / rank_0:.0%} of this run's highest, {rank_0:.1f})")
    safeguard = get_method(method).safeguard
    if removed:
        why = (f"This run switched off {method}'s safeguard, {safeguard.name if safeguard else 'its safeguard'} "
               f"({', '.join(removed)}): this is the collapse it prevents.")
    elif safeguard is not None:
        why = (f"{method} is kept from collapsing by {safeguard.name}. What usually causes a collapse despite it: "
               f"{'; '.join(CAUSES.values())}.")
    else:
        why = f"What usually causes a collapse: {'; '.join(CAUSES.values())}."
    return CollapseAlarm(kind=kind, epoch=epoch, rank=rank, rank_reference=rank_0, spread=spread,
                         spread_reference=spread_0, message=f"{what}. {why}")


def removed_safeguard(table: dict) -> list[str]:
    """The method's safeguard settings (as "address=value") that the config table `table` holds
    at their off value: what a collapse demo switched off."""
    from .addresses import value_at
    from .methods import get_method

    safeguard = get_method(table["method"]["name"]).safeguard
    if safeguard is None:
        return []
    off = []
    for setting in safeguard.removed:
        try:
            current = value_at(table, setting.key)
        except (KeyError, IndexError, TypeError):
            continue
        if current == setting.value:  # a declared value, written back as it was: no arithmetic in between
            off.append(f"{setting.key}={setting.value}")
    return off


class CollapseWatch:
    """Follows one run's diagnostics probe results (`ProbeResult`s of "diagnostics", in order,
    the first the random-init network's): `feed` returns the alarm of an epoch whose rank or
    spread fell under its share of the run's highest so far, or None. The window and the command
    line both watch a run through it."""

    def __init__(self, table: dict):
        self.method = table["method"]["name"]
        self.removed = removed_safeguard(table)
        self.highest: dict = {}   # the highest rank and spread, and the lowest uniformity, measured so far
        self.alarm: CollapseAlarm | None = None  # the latest alarm raised

    def feed(self, result) -> CollapseAlarm | None:
        values = result.value if isinstance(result.value, dict) else {}
        alarm = None
        if self.highest:
            alarm = collapse_alarm(values, self.highest, epoch=result.epoch, method=self.method, removed=self.removed)
        for key in ("rankme", "embedding_std"):
            if _finite(values.get(key)) and not values[key] <= self.highest.get(key, -math.inf):
                self.highest[key] = values[key]
        if _finite(values.get("uniformity")) and not values["uniformity"] >= self.highest.get("uniformity", math.inf):
            self.highest["uniformity"] = values["uniformity"]  # lower is more spread
        if alarm is not None:
            self.alarm = alarm
        return alarm
