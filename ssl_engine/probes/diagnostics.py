"""The diagnostics probe: the field's measures of the network (`ssl_engine.diagnostics`) at each
epoch's end and at random initialisation, on two fixed augmented views of the fixed evaluation
images, in every run's metrics.jsonl (the run folder always records it, headless runs too).

The views are drawn from fixed generators (`ProbeContext.fixed_view_pair`): the same pixels at
every epoch, so that a curve follows the network, not the draw. Both views go through the
method's own embedding (`Method.embedding`: its projector's output, what its loss compares and
what collapses first when a safeguard is off; a masked method's encoder features), and
`feature_rankme` is the backbone's evaluation features' effective rank (what a downstream task
sees). A masked method that can measure its own loss without changing its state
(`Method.held_out_loss`) adds it, on the un-augmented images under fixed masks.
"""

from __future__ import annotations

import torch

from .. import diagnostics
from ..augment.ops import normalize
from .base import ProbeContext, probe

# At most this many evaluation images (pairs of views). The InfoNCE bound cannot exceed log N
# (6.2 nats at 512), and N x N similarities, two passes of the backbone over N images and a
# D x D eigendecomposition stay a small part of an epoch (the report's measure: about a second
# on two CPU cores for small_cnn); the Gaussian MI keeps N / 16 = 32 principal directions.
DIAGNOSTIC_PAIRS = 512
# The InfoNCE bound's fixed temperature: at 0.1 cosine similarities span logits of +-10, enough
# for well-separated pairs to come within 0.01 nats of log N; at SimCLR's 0.5 even perfect pairs
# would stay far below it.
INFONCE_TEMPERATURE = 0.1

COLUMNS = ("infonce_bound", "infonce_ceiling", "gaussian_mi", "rankme", "embedding_dim", "feature_rankme",
           "embedding_std", "embedding_std_reference", "alignment", "uniformity", "held_out_loss")

HELP = (
    f"measures of the method's embedding (its projector's output; DINO's and iBOT's normalised bottleneck; a "
    f"masked method's encoder features) of two "
    f"fixed augmented views of up to {DIAGNOSTIC_PAIRS} fixed "
    f"evaluation images, the same views at every epoch: infonce_bound, log N minus the InfoNCE loss at "
    f"temperature {INFONCE_TEMPERATURE} (Oord et al. 2018), a lower bound on the views' mutual information in "
    f"nats, under its ceiling log N (infonce_ceiling); gaussian_mi, -1/2 log det(I - S12 S21) of the whitened "
    f"views were they Gaussian, on their leading N/16 principal directions (fewer samples per direction "
    f"inflate it) with a small ridge; rankme, the embedding's effective rank (Garrido et al. 2023) against "
    f"embedding_dim, and feature_rankme the backbone features'; embedding_std, the mean per-dimension std of the L2-normalised features (0: collapse) "
    f"against 1/sqrt(d) (embedding_std_reference); alignment and uniformity (Wang and Isola 2020); for a "
    f"masked method, held_out_loss, its own loss on the un-augmented images under fixed masks")


@probe("diagnostics", per="epoch", every=1, display="curve", at_start=True, always_recorded=True,
       columns=COLUMNS, help=HELP)
@torch.no_grad()
def measure(context: ProbeContext) -> dict[str, float] | None:
    images = context.eval_set.images[:DIAGNOSTIC_PAIRS]
    if len(images) < 2:  # no pair to compare
        return None
    first, second = context.fixed_view_pair(images)
    z1, z2 = context.embed_as_trained(first), context.embed_as_trained(second)
    both = torch.cat([z1, z2])
    bound, ceiling = diagnostics.infonce_bound(z1, z2, INFONCE_TEMPERATURE)
    spread, reference = diagnostics.embedding_std(both)
    values = {
        "infonce_bound": bound, "infonce_ceiling": ceiling,
        "gaussian_mi": diagnostics.gaussian_mi(z1, z2),
        "rankme": diagnostics.rankme(both), "embedding_dim": float(both.shape[1]),
        "embedding_std": spread, "embedding_std_reference": reference,
        "feature_rankme": diagnostics.rankme(torch.cat([context.embed(first), context.embed(second)])),
        "alignment": diagnostics.alignment(z1, z2),
        "uniformity": (diagnostics.uniformity(z1) + diagnostics.uniformity(z2)) / 2,
    }
    originals = normalize(images.to(context.device).float() / 255.0, *context.mean_std)
    held_out = context.method.held_out_loss(originals)
    if held_out is not None:
        values["held_out_loss"] = held_out
    return values
