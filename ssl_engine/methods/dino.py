"""DINO (Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021).

Self-distillation with no labels. A student (backbone + DINO head) is trained to match the
output distribution of a teacher, an EMA of the student whose momentum rises from
`base_momentum` to 1 on a cosine. The teacher sees only the global views; the student sees
every view (global, then the smaller local ones), and each student view is matched to every
teacher view but its own (multi-crop: "local-to-global" correspondences):

    P_t = softmax((g_t(x) - center) / teacher_temp),   P_s = softmax(g_s(x') / student_temp)
    loss = mean over pairs of  -sum_k P_t[k] log P_s[k]                   (losses.dino_loss)

Collapse is avoided by centring and sharpening the teacher: the center is an EMA of the
teacher's mean output over the global batch, center <- m center + (1 - m) mean(g_t), and the
teacher's low temperature sharpens its target. Centring keeps one prototype from taking every
image, sharpening keeps the target from going uniform; together they are the method's safeguard
(the paper's figure 7: with neither, the student copies a teacher that says the same of every
image). `centering` false leaves the center out (not subtracted, never updated: it stays 0);
`sharpening` false gives the teacher the student's temperature. The head is a 3-layer MLP (GELU), a
bottleneck that is L2-normalised, and a weight-normalised last layer whose K outputs act as
prototypes; that last layer is frozen for the first epoch(s), which the paper found steadies
the start of training. The teacher temperature and the frozen layer go by epochs, as in the
code: the method learns the epoch from `before_epoch` (a resumed run gets it too).

The optimiser is the code's (main_dino.py, utils.py): AdamW with a cosine to min_lr 1e-6, no
weight decay on biases and norm layers, and each parameter's gradient clipped at a norm of 3 on
its own (`optim.grad_clip_mode` per_parameter, its clip_gradients), not the global norm.

Reported: the teacher targets' mean entropy, the center's norm (after this step's update), the
teacher temperature, and how many global views each prototype's target peaks at. Evaluation
uses the student's backbone; the paper evaluates the teacher, which is often slightly better.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import losses
from ..distributed import all_reduce_mean, gather_no_grad
from ..models.ema import MomentumTargets
from ..params import hyper
from .base import Method, StepOutput, features_by_resolution, register
from ..recipes import QUICK_COLOUR, QUICK_LARS, QUICK_MOMENTUM, SOLO_ASYMMETRIC, SOLO_LEARN, Setting, solo_learn_lars
from ..safeguards import Safeguard


class DINOHead(nn.Module):
    """MLP (Linear-GELU x 2, Linear to the bottleneck), L2 normalisation, then a weight-normalised
    Linear without bias to `out_dim` (its weight's norm fixed at 1 when `norm_last_layer`)."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 norm_last_layer: bool = True):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, hidden_dim),
                                 nn.GELU(), nn.Linear(hidden_dim, bottleneck_dim))
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        self.last_layer = weight_normalised_layer(bottleneck_dim, out_dim, norm_last_layer)

    def bottleneck(self, features: Tensor) -> Tensor:
        """The L2-normalised bottleneck: the embedding whose similarity to each prototype (a row of
        the last layer) gives the logits."""
        return F.normalize(self.mlp(features), dim=-1)

    def forward(self, features: Tensor) -> Tensor:
        return self.last_layer(self.bottleneck(features))


def weight_normalised_layer(in_dim: int, out_dim: int, norm_last_layer: bool) -> nn.Module:
    """The heads' last layer: a weight-normalised Linear without bias, its weight's norm g
    starting at 1 and fixed there when `norm_last_layer`."""
    layer = nn.utils.parametrizations.weight_norm(nn.Linear(in_dim, out_dim, bias=False))
    weight_norm = layer.parametrizations.weight.original0
    weight_norm.data.fill_(1.0)
    weight_norm.requires_grad_(not norm_last_layer)
    return layer


@dataclass
class DINOParams:
    # 65536 in the paper (for ImageNet); 4096 suits small data sets and keeps CPU steps quick.
    out_dim: int = hyper(4096, ge=2, le=262144, help="outputs (prototypes) of the DINO head (paper: 65536)")
    hidden_dim: int = hyper(2048, ge=2, le=65536, help="hidden size of the head's MLP")
    bottleneck_dim: int = hyper(256, ge=2, le=65536, help="size of the L2-normalised bottleneck before the last layer")
    norm_last_layer: bool = hyper(True, help="fix the norm of the last layer's weights (more stable; False can do better with ViT-S)")
    student_temp: float = hyper(0.1, gt=0, le=10, help="temperature of the student's softmax")
    teacher_temp: float = hyper(0.04, gt=0, le=10, help="temperature of the teacher's softmax after the warm-up (above 0.07 is unstable)")
    warmup_teacher_temp: float = hyper(0.04, gt=0, le=10, help="teacher temperature at the first epoch, rising linearly to teacher_temp")
    # 30 in the paper (the code's flag defaults to 0); with 0.04 -> 0.04 the warm-up is flat anyway.
    warmup_teacher_temp_epochs: int = hyper(30, ge=0, le=100000, help="epochs of the teacher temperature's warm-up")
    center_momentum: float = hyper(0.9, ge=0, le=1, help="EMA momentum of the center of the teacher's outputs")
    base_momentum: float = hyper(0.996, ge=0, le=1, help="teacher EMA momentum at the start; it rises to 1 on a cosine")
    freeze_last_layer: int = hyper(1, ge=0, le=100000, help="epochs during which the head's last layer is kept fixed")
    centering: bool = hyper(True, help="subtract the center from the teacher's output, half of what keeps DINO from "
                                       "collapsing; false: no centring (the center stays unused)")
    sharpening: bool = hyper(True, help="the teacher's temperature below the student's, the other half; false: the "
                                        "teacher at the student's temperature, and with no centring DINO collapses")


@dataclass
class DINOStepOutput(StepOutput):
    """StepOutput plus the prototype each teacher target peaks at, over the global batch."""

    teacher_assignments: Tensor | None = None


@register
class DINO(Method):
    name = "dino"
    family = "distillation"
    summary = "a student matches a centred, sharpened EMA teacher across global and local crops"
    paper = "Caron et al., ICCV 2021"
    objective = ('L = −Σ softmax((gₜ(x₁) − c)/τₜ) · log softmax(gₛ(x₂)/τₛ) over pairs of crops: teacher gₜ the EMA '
                 'of student gₛ, c a running centre')
    Params = DINOParams
    augment_preset = "dino"
    # solo-learn's CIFAR recipe (ResNet-18): LARS, two crops of BYOL's asymmetric views and no
    # local crops, a teacher from 0.9995
    small_recipe = (
        *solo_learn_lars("dino", 0.3, 1e-6, "CIFAR-10 89.52, CIFAR-100 66.76 linear"),
        Setting("optim.grad_clip", 0.0, f"{SOLO_LEARN.format('dino')}: no gradient clipping"),
        Setting("method.hidden_dim", 2048, f"{SOLO_LEARN.format('dino')}: proj_hidden_dim 2048"),
        Setting("method.bottleneck_dim", 256, f"{SOLO_LEARN.format('dino')}: proj_output_dim 256"),
        Setting("method.out_dim", 4096, f"{SOLO_LEARN.format('dino')}: num_prototypes 4096"),
        Setting("method.base_momentum", 0.9995, f"{SOLO_LEARN.format('dino')}: momentum.base_tau 0.9995"),
        Setting("augment.local_views", 0, f"{SOLO_LEARN.format('augmentations/asymmetric')}: two crops, no local ones"),
        *SOLO_ASYMMETRIC,
    )
    quick_recipe = (
        *QUICK_LARS,
        *QUICK_COLOUR,
        QUICK_MOMENTUM,
        Setting("train.batch_size", 128, "quick: more, smaller steps in a short run"),
    )
    safeguard = Safeguard(
        name="centring and sharpening",
        keeps="The teacher's output is centred (so that no prototype takes every image) and sharpened by a low "
              "temperature (so that its target does not go uniform); with neither, the student matches a teacher "
              "that gives every image the same distribution.",
        removed=(Setting("method.centering", False, "DINO's figure 7: without centring one dimension dominates"),
                 Setting("method.sharpening", False, "DINO's figure 7: without sharpening the output goes uniform")),
    )
    # The code's defaults (main_dino.py, utils.py): AdamW at 5e-4 x batch/256, 10 warm-up epochs,
    # then a cosine to min_lr 1e-6 (1/500 of 5e-4); weight decay from 0.04 to 0.4 on a cosine, none
    # on biases and norm layers (get_params_groups); each parameter's gradient clipped at a norm of
    # 3 on its own (clip_gradients), which is far looser than clipping the global norm at 3.
    optim_defaults = {"name": "adamw", "lr": 5e-4, "weight_decay": 0.04, "weight_decay_schedule": "cosine",
                      "weight_decay_end": 0.4, "momentum": 0.9, "warmup_epochs": 10.0,
                      "min_lr_ratio": 1e-6 / 5e-4, "grad_clip": 3.0, "grad_clip_mode": "per_parameter",
                      "decay_exclusions": "bias_and_norm"}

    def __init__(self, backbone, params: DINOParams, total_steps: int):
        super().__init__(backbone, params, total_steps)
        self.head = self.build_head(backbone.feature_dim, params)
        self.ema = MomentumTargets(params.base_momentum)  # a cosine to 1
        self.teacher_backbone = self.ema.copy(self.backbone)
        self.teacher_head = self.ema.copy(self.head)
        self.register_buffer("center", torch.zeros(1, params.out_dim))
        self.epoch = 0
        # Zeroing (not dropping, as the code does) the gradient keeps DDP's reduction intact.
        # AdamW then only applies weight decay: on v a uniform scale that the weight norm undoes;
        # a learnt g (norm_last_layer False) shrinks by lr * weight_decay per step.
        for name, parameter in self.head.named_parameters():
            if "last_layer" in name and parameter.requires_grad:
                parameter.register_hook(self._freeze_last_layer)

    def build_head(self, in_dim: int, params: DINOParams) -> nn.Module:
        return DINOHead(in_dim, params.out_dim, params.hidden_dim, params.bottleneck_dim, params.norm_last_layer)

    def _freeze_last_layer(self, grad: Tensor) -> Tensor:
        return torch.zeros_like(grad) if self.epoch < self.params.freeze_last_layer else grad

    def before_epoch(self, epoch, dataset_features):
        self.epoch = epoch

    def teacher_temperature(self) -> float:
        """Linear from warmup_teacher_temp at epoch 0 to teacher_temp at the warm-up's last
        epoch, then constant (the code's np.linspace schedule)."""
        return self._warmed_up(self.params.warmup_teacher_temp, self.params.teacher_temp)

    def _warmed_up(self, start: float, end: float) -> float:
        """This epoch's value of a teacher temperature warming up linearly from `start` to `end`;
        the student's temperature when sharpening is off."""
        if not self.params.sharpening:
            return self.params.student_temp
        epochs = self.params.warmup_teacher_temp_epochs
        if self.epoch >= epochs:
            return end
        return start + (end - start) * self.epoch / max(epochs - 1, 1)

    def embedding(self, images: Tensor) -> Tensor:
        """The normalised bottleneck, what the diagnostics measure: the embedding of an image. The
        logits are its scores against the learnt prototypes (the last layer's rows), so their
        rank would also follow how the prototypes spread, not the embedding alone."""
        return self.head.bottleneck(self.backbone(images))

    def forward(self, views, step, indices=None):
        global_count = global_view_count(views)
        student_logits = _multi_crop(self.backbone, self.head, views)
        with torch.no_grad():
            teacher_logits = _multi_crop(self.teacher_backbone, self.teacher_head, views[:global_count])
        loss, terms, assignments = self._class_token_loss(student_logits, teacher_logits)
        embeddings = (student_logits[0].detach(), student_logits[1].detach()) if len(views) > 1 else None
        return DINOStepOutput(loss, terms, embeddings, teacher_assignments=assignments)

    def _class_token_loss(self, student_logits: list[Tensor],
                          teacher_logits: list[Tensor]) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """`losses.dino_loss` at this epoch's teacher temperature, then the centre's update; returns
        the loss, the terms reported (teacher entropy, centre norm, temperature) and the prototype
        each global view's teacher target peaks at, over the global batch."""
        temperature = self.teacher_temperature()
        center = self.used_center(self.center)
        loss = losses.dino_loss(student_logits, teacher_logits, center, self.params.student_temp, temperature)
        with torch.no_grad(), torch.autocast(device_type=self.center.device.type, enabled=False):
            teacher = torch.cat(teacher_logits).float()
            log_targets = F.log_softmax((teacher - center) / temperature, dim=-1)
            entropy = all_reduce_mean(-(log_targets.exp() * log_targets).sum(dim=-1).mean())
            assignments = gather_no_grad(log_targets.argmax(dim=-1))
            self.update_used_center(self.center, teacher)
        terms = {"teacher entropy": entropy, "center norm": self.center.norm(),
                 "teacher temperature": torch.tensor(temperature)}
        return loss, terms, assignments

    def used_center(self, center: Tensor) -> Tensor:
        """What is subtracted from the teacher's output: `center`, or zeros without centring."""
        return center if self.params.centering else torch.zeros_like(center)

    def update_used_center(self, center: Tensor, teacher_outputs: Tensor) -> None:
        """`update_center` at center_momentum, only with centring: without it the center stays 0."""
        if self.params.centering:
            update_center(center, teacher_outputs, self.params.center_momentum)

    @torch.no_grad()
    def after_optimizer_step(self, step):
        self.ema.update(step, self.total_steps)

    def parameter_groups(self):
        return [{"params": [p for m in (self.backbone, self.head) for p in m.parameters() if p.requires_grad]}]

    @torch.no_grad()
    def histograms(self, output):
        """How many of the batch's global views each prototype's teacher target peaks at
        (out_dim bars; one tall bar is a collapse)."""
        if getattr(output, "teacher_assignments", None) is None:
            return {}
        usage = torch.bincount(output.teacher_assignments, minlength=self.params.out_dim)
        return {"teacher prototype usage": usage.float()}


def global_view_count(views: list[Tensor]) -> int:
    """How many leading views are global: those at the first view's size (two at most, as in the paper)."""
    return 1 + int(len(views) > 1 and views[1].shape[-2:] == views[0].shape[-2:])


@torch.no_grad()
def update_center(center: Tensor, teacher_outputs: Tensor, momentum: float) -> None:
    """In place: center <- momentum * center + (1 - momentum) * the mean teacher output over the
    global batch; `teacher_outputs` is (..., K), its leading dimensions averaged together."""
    outputs = teacher_outputs.float().reshape(-1, teacher_outputs.shape[-1])
    batch_center = all_reduce_mean(outputs.mean(dim=0, keepdim=True))
    center.mul_(momentum).add_(batch_center, alpha=1 - momentum)


def _multi_crop(backbone: nn.Module, head: nn.Module, views: list[Tensor]) -> list[Tensor]:
    """Head outputs per view: one backbone pass per run of same-sized views, one head pass for all."""
    return list(head(torch.cat(features_by_resolution(backbone, views))).chunk(len(views)))
