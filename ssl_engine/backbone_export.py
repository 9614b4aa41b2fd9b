"""A run's trained backbone alone, for the user's own PyTorch code (`python main.py export`).

A checkpoint holds the whole training state (the method's heads, a teacher, the optimiser's
moments), several times the backbone's size. An export keeps only the backbone's weights,
as a plain state dict under "state_dict", named as the network they load into has them:

- a ResNet: torchvision's `resnet18()` (`resnet34()`, `resnet50()`) keys, once the changes
  listed in "stem_changes" are made: the classifier goes (`fc = nn.Identity()`: the features
  are the pooled 512 or 2048), and the small-image stem's 3x3 stride-1 `conv1` replaces the
  7x7 stride-2 one and the max-pool goes;
- the project's own backbones (ViT, small CNN): their module's keys, with the keyword
  arguments that rebuild the module in "constructor".

Everything else in the file is a plain value (strings, numbers, lists), so that
`torch.load(path, weights_only=True)` reads it all: the architecture, the image size and the
normalisation mean/std the backbone was trained with, its method and run, its feature size,
"feature_call" (what to call on the rebuilt `model` for the app's features: a ViT's
`evaluation_features`, which pools as the run was evaluated, or the module itself), and
"snippet", the code that loads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torchvision

from .checkpoint import checkpoint_file, save_checkpoint
from .config import layer_scale_for, position_embedding_for
from .errors import UserError
from .eval.model_source import EvalModel, open_model, run_name
from .models.vit import VisionTransformer

FORMAT = "ssl_explorer.backbone/1"


@dataclass
class ExportedBackbone:
    path: Path
    size_bytes: int
    contents: dict  # what the file holds (the state dict and its plain values)

    @property
    def megabytes(self) -> str:
        return f"{self.size_bytes / 1e6:.1f} MB"

    def description(self) -> str:
        """What was trained, and on what inputs: the backbone, its method and run, its features,
        the image size and the normalisation."""
        c = self.contents

        def values(numbers):
            return "(" + ", ".join(f"{v:.4f}" for v in numbers) + ")"

        return (f"{c['backbone']} trained with {c['method']} (run {c['run']}): {c['feature_dim']} features of "
                f"{c['image_size']} px images normalised with mean {values(c['mean'])} and std {values(c['std'])}")

    def loads_into(self) -> str:
        """The network the weights' names fit, with the changes it needs."""
        changes = self.contents.get("stem_changes")
        return self.contents["architecture"] + (" after " + "; ".join(changes) if changes else "")


def _plain(tensors: dict, prefix: str = "") -> dict:
    """Detached CPU tensors in the default memory layout (the trainer keeps convolutions
    channels-last), with `prefix` taken off their names."""
    return {name[len(prefix):]: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()
            if name.startswith(prefix)}


def _resnet_stem_changes(net: torchvision.models.ResNet, small_stem: bool) -> list[str]:
    """The lines that turn torchvision's ResNet into this one: the small stem's first
    convolution and no max-pool (models/backbones.py `_resnet`), and no classifier."""
    changes = []
    if small_stem:
        conv = net.conv1
        changes += [f"model.conv1 = nn.Conv2d({conv.in_channels}, {conv.out_channels}, {conv.kernel_size[0]}, "
                    f"{conv.stride[0]}, {conv.padding[0]}, bias={conv.bias is not None})",
                    "model.maxpool = nn.Identity()"]
    return changes + ["model.fc = nn.Identity()"]


def backbone_contents(model: EvalModel) -> dict:
    """The exported file's contents for a model opened from a checkpoint."""
    backbone, config = model.backbone, model.config
    contents = {"format": FORMAT, "backbone": config.backbone.name}
    if isinstance(backbone, VisionTransformer):
        contents.update(
            architecture="ssl_engine.models.vit.VisionTransformer", state_dict=_plain(backbone.state_dict()),
            constructor={"image_size": backbone.grid * backbone.patch_size, "patch_size": backbone.patch_size,
                         "dim": backbone.dim, "depth": len(backbone.blocks), "heads": backbone.blocks[0].attn.heads,
                         "name": backbone.name, "position": position_embedding_for(config),
                         "layer_scale": layer_scale_for(config), "evaluation_pooling": backbone.evaluation_pooling},
            feature_call="model.evaluation_features")
    elif isinstance(backbone.net, torchvision.models.ResNet):
        contents.update(
            architecture=f"torchvision.models.{backbone.name}", state_dict=_plain(backbone.state_dict(), "net."),
            stem_changes=_resnet_stem_changes(backbone.net, backbone.small_stem), feature_call="model")
    elif backbone.name == "small_cnn":
        contents.update(
            architecture="ssl_engine.models.backbones.small_cnn", state_dict=_plain(backbone.state_dict()),
            constructor={"small_stem": backbone.small_stem}, feature_call="model")
    else:  # a backbone added to the registry without saying how it exports
        raise ValueError(f"no export is defined for the {config.backbone.name} backbone")
    contents.update(small_stem=bool(backbone.small_stem), feature_dim=int(backbone.feature_dim),
                    image_size=int(model.image_size), mean=[float(v) for v in model.mean],
                    std=[float(v) for v in model.std], method=config.method.name, run=run_name(Path(model.source)))
    return contents


def loading_snippet(contents: dict, path: str) -> str:
    """Python that loads the export at `path` and computes the app's features of `images`."""
    architecture = contents["architecture"]
    module, _, builder = architecture.rpartition(".")
    if "constructor" in contents:
        imports = ["import torch", f"from {module} import {builder}"]
        build = [f'model = {builder}(**export["constructor"])']
    else:
        imports = ["import torch, torchvision", "from torch import nn"]
        build = [f"model = {architecture}()", "; ".join(contents["stem_changes"])]
    size = contents["image_size"]
    return "\n".join([
        *imports,
        f"export = torch.load({path!r}, weights_only=True)",
        *build,
        'model.load_state_dict(export["state_dict"]); model.eval()',
        'mean, std = (torch.tensor(export[key]).view(1, 3, 1, 1) for key in ("mean", "std"))',
        f"features = {contents['feature_call']}((images - mean) / std)  "
        f"# images: (N, 3, {size}, {size}) floats in [0, 1] -> (N, {contents['feature_dim']})"])


def export_backbone(checkpoint: str | Path, out: str | Path) -> ExportedBackbone:
    """Write the backbone of `checkpoint` (a checkpoint file or a run folder) to `out`, alone.
    Mistakes (no such checkpoint, a file that is not one, `out` not writable) are `UserError`s."""
    out = Path(out).expanduser()
    source = checkpoint_file(checkpoint)
    if out.exists() and source.exists() and out.resolve() == source.resolve():
        raise UserError(f"{out} is the checkpoint being exported: write the backbone to another file")
    model = open_model(checkpoint)
    contents = backbone_contents(model)
    contents["snippet"] = loading_snippet(contents, str(out))
    save_checkpoint(out, contents, what="exported backbone")
    return ExportedBackbone(path=out, size_bytes=out.stat().st_size, contents=contents)

