"""One experiment's settings: typed, validated, read from and written to TOML exactly.

Sections: `data`, `augment` (a list of views), `backbone`, `method` (its name, its recipe and
its own `params`), `optim`, `train`. A config starts from the chosen method's recipe (the
paper's ImageNet hyperparameters, augmentation preset and optimiser, with what the small or
quick recipe changes: `ssl_engine.recipes`) and the user's values go on top, so a file only
needs what differs. `save` writes every value, so a saved file alone reproduces
the run. Bad values are reported all at once, one `Problem` per field: the setting's address
(`method.temperature`, `ssl_engine.addresses`) and what is wrong with it.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from . import params as P
from .addresses import METHOD_OWN, address_of, table_path
from .augment.presets import preset_views
from .augment.views import ViewConfig, check_view
from .errors import ConfigError, Problem
from .params import hyper
from .recipes import RECIPES, apply_settings, recipe_for, recipe_keys, recipe_problem, recipe_settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DATA_SOURCES = ("digits", "shapes", "cifar10", "cifar100", "stl10")
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 512  # the sides, in pixels, images can be stored and trained at


@dataclass
class DataConfig:
    source: str = hyper("shapes", help="digits, shapes, cifar10, cifar100, stl10, or folder:PATH")
    image_size: int = hyper(32, ge=MIN_IMAGE_SIZE, le=MAX_IMAGE_SIZE, help="side of the square images the set is stored and trained at")
    test_fraction: float = hyper(0.2, gt=0, lt=1, help="share of a labelled set held out for testing (sets without an official split)")
    shapes_count: int = hyper(10000, ge=100, le=50000, help="number of images generated for the shapes set")
    root: str = hyper("~/.cache/ssl_explorer/data", help="where downloadable sets (CIFAR, STL-10) are kept")
    download: bool = hyper(True, help="download CIFAR or STL-10 when not found under root")


@dataclass
class AugmentConfig:
    preset: str = hyper("simclr", help="the paper recipe the views started from")
    views: list[ViewConfig] = field(default_factory=list)


@dataclass
class BackboneConfig:
    name: str = hyper("small_cnn", help="small_cnn, resnet18, resnet34, resnet50, vit_tiny or vit_small")
    small_stem: str = hyper("auto", choices=("auto", "on", "off"),
                            help="3x3 stride-1 first conv and no max-pool (auto: on for images of 64 px or less)")
    patch_size: int = hyper(4, ge=1, le=64, help="ViT patch side in pixels; every view's size must be a multiple of it")
    vit_depth: int = hyper(12, ge=1, le=48, help="ViT blocks (12 in ViT-Tiny and ViT-Small; 4-6 train several times faster on a CPU)")
    vit_features: str = hyper("auto", choices=("auto", "class_token", "mean_patch"),
                              help="a ViT's features for kNN, linear probe and maps: its class token or the mean of its patch tokens (auto: the method's usual choice)")
    position_embedding: str = hyper("auto", choices=("auto", "learnt", "sincos", "relative"),
                                    help="a ViT's positions: learnt or fixed 2-D sin-cos embeddings, or a relative position bias shared by the blocks "
                                         "(auto: the method's choice, sin-cos for MAE, I-JEPA and MoCo v3, relative for SimMIM and BEiT)")
    layer_scale: str = hyper("auto", choices=("auto", "on", "off"),
                             help="a ViT's LayerScale: a learnt per-channel scale on each residual branch, starting at 0.1 (auto: the method's choice, on for SimMIM and BEiT)")

    @property
    def is_vit(self) -> bool:
        """Whether the backbone is a Vision Transformer (patch size, positions, LayerScale apply)."""
        return self.name.startswith("vit")


@dataclass
class MethodConfig:
    name: str = hyper("simclr", help="the SSL method (see `python main.py methods`)")
    recipe: str = hyper("small", choices=tuple(RECIPES),
                        help="the method's settings for a scale: small (published CIFAR recipes, images of 64 px and "
                             "less), imagenet (the paper's), quick (learns within minutes on a CPU, to try a method); "
                             "chosen by the image size when not given")
    params: Any = None  # the method's own Params dataclass


@dataclass
class OptimConfig:
    name: str = hyper("lars", choices=("sgd", "adamw", "lars"), help="optimiser (what gets weight decay and LARS adaptation: decay_exclusions)")
    lr: float = hyper(0.3, gt=0, le=100, help="base learning rate for a batch of 256 (scaled linearly with the batch size)")
    weight_decay: float = hyper(1e-6, ge=0, le=1, help="weight decay (at the start, with a cosine schedule)")
    weight_decay_schedule: str = hyper("constant", choices=("constant", "cosine"),
                                       help="cosine: weight decay rises from weight_decay to weight_decay_end over the run (DINO, iBOT, MSN, I-JEPA)")
    weight_decay_end: float = hyper(0.4, ge=0, le=1, help="weight decay at the end of a cosine schedule")
    momentum: float = hyper(0.9, ge=0, lt=1, help="SGD/LARS momentum, AdamW's beta1")
    beta2: float = hyper(0.999, gt=0, lt=1, help="AdamW's second-moment decay (0.95 in MAE)")
    warmup_epochs: float = hyper(10.0, ge=0, le=1000, help="linear warm-up length in epochs (at most a tenth of the run)")
    bias_lr_ratio: float = hyper(1.0, ge=0, le=10,
                                 help="learning rate of biases and norm layers as a share of lr (Barlow Twins: 0.024, its code's 0.0048 against 0.2)")
    min_lr_ratio: float = hyper(0.0, ge=0, le=1, help="learning rate at the end of the cosine decay, as a share of the peak")
    lars_eta: float = hyper(0.001, gt=0, le=1, help="LARS trust coefficient")
    lars_clip: bool = hyper(False, help="LARS: the adapted rate eta x |w| / |update| never exceeds the scheduled rate "
                                        "(LARC's clipping; solo-learn's clip_lr, on in its CIFAR recipes)")
    grad_clip: float = hyper(0.0, ge=0, le=1000, help="clip the gradient norm to this (0: off; what norm: grad_clip_mode)")
    grad_clip_mode: str = hyper("global", choices=("global", "per_parameter"),
                                help="global: the norm of all gradients together (MSN, BEiT, SimMIM, MaskFeat: clip_grad_norm_); "
                                     "per_parameter: each parameter's gradient on its own (DINO, iBOT: their clip_gradients)")
    decay_exclusions: str = hyper("bias_and_norm", choices=("bias_and_norm", "none"),
                                  help="bias_and_norm: no weight decay or LARS adaptation on biases, norm layers and a ViT's relative "
                                       "position table (SimCLR, BYOL, Barlow Twins, VICReg, DINO, MAE...); none: on every parameter "
                                       "(SwAV, MoCo v2, MoCo v3's AdamW, SimSiam, DeepCluster, SeLa)")


@dataclass
class TrainConfig:
    epochs: int = hyper(20, ge=1, le=100000, help="passes over the training set (unless minutes is set)")
    minutes: float = hyper(0.0, ge=0, le=1_000_000,
                           help="train for this many minutes instead of epochs (0: off); the learning-rate, weight-decay and "
                                "momentum schedules span the budget, its steps estimated from the speed of the first steps")
    batch_size: int = hyper(256, ge=2, le=65536, help="images per step (each gives one view per augmentation)")
    device: str = hyper("auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    precision: str = hyper("auto", choices=("auto", "fp32", "bf16", "fp16"), help="auto: bf16/fp16 mixed precision on a GPU, fp32 on the CPU")
    seed: int = hyper(0, ge=0, le=2**31 - 1, help="seed for data order, augmentations and initialisation")
    runs_dir: str = hyper("runs", help="folder that receives one sub-folder per run")
    run_name: str = hyper("", help="name of the run's folder (empty: date, method and data)")
    tensorboard: str = hyper("", help="folder for TensorBoard event files, one sub-folder per run (empty: none; "
                                      "needs the tensorboard package); see them with tensorboard --logdir FOLDER")
    diagnostics: bool = hyper(True, help="measure the diagnostics (effective rank, spread, information bounds) of "
                                         "the fixed evaluation images before training and after each epoch, in "
                                         "metrics.jsonl, headless too: a few seconds an epoch")
    log_every_steps: int = hyper(10, ge=1, le=100000, help="steps between metrics written to metrics.jsonl")
    checkpoint_every_epochs: int = hyper(1, ge=1, le=100000, help="epochs between checkpoints (one is always written at the end and on stop)")
    checkpoint_every_minutes: float = hyper(10.0, ge=0, le=100000, help="minutes of training between checkpoints within an epoch (0: at epoch ends only), so a crash loses at most this much")
    eval_subset: int = hyper(1000, ge=0, le=100000, help="images of the test split embedded for live kNN and projections")
    knn_k: int = hyper(20, ge=1, le=1000, help="neighbours in the kNN evaluation")
    linear_probe: bool = hyper(True, help="fit a linear probe on frozen features when training ends (slower on large sets)")


@dataclass
class ExperimentConfig:
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    # -- building --------------------------------------------------------------------
    @classmethod
    def for_method(cls, name: str = "simclr", image_size: int = 32, recipe: str | None = None) -> "ExperimentConfig":
        """Method `name`'s recipe for images of side `image_size`: its paper's hyperparameters,
        views and optimiser, with what recipe `recipe` changes (None: the size's choice,
        `recipes.recipe_for`)."""
        from .methods import get_method

        method = get_method(name)
        recipe = recipe_for(image_size) if recipe is None else recipe
        settings = recipe_settings(method, recipe)
        paper = cls(
            data=DataConfig(image_size=image_size),
            backbone=BackboneConfig(name=usable_backbone(name, BackboneConfig().name)),
            augment=AugmentConfig(preset=method.augment_preset,
                                  views=preset_views(method.augment_preset, image_size)),
            method=MethodConfig(name=name, recipe=recipe, params=method.Params()),
            optim=dataclasses.replace(OptimConfig(), **method.optim_defaults),
        )
        if not settings:
            return paper
        table = paper.to_dict()
        apply_settings(table, settings, image_size)
        return cls._read(table, paper)

    @classmethod
    def from_dict(cls, data: dict) -> "ExperimentConfig":
        """The recipe of the method named in `data` (its `method.recipe`, or the image size's
        choice), with `data`'s values on top."""
        if not isinstance(data, dict):
            raise ConfigError([Problem("", f"the config must be a table, got {data!r}")])
        problems = [_unknown_section(key) for key in data if key not in SECTIONS]
        method_table = data.get("method", {}) if isinstance(data.get("method", {}), dict) else {}
        name = method_table.get("name", "simclr")
        recipe = method_table.get("recipe")
        data_table = data.get("data", {}) if isinstance(data.get("data", {}), dict) else {}
        image_size = data_table.get("image_size", 32)
        try:
            base = cls.for_method(name, image_size if isinstance(image_size, int) else 32,
                                  recipe if recipe in RECIPES else None)
        except ConfigError as error:
            raise ConfigError(problems + error.problems) from None
        try:
            config = cls._read(data, base)
        except ConfigError as error:
            raise ConfigError(problems + error.problems) from None
        if problems:
            raise ConfigError(problems)
        return config

    @classmethod
    def _read(cls, data: dict, base: "ExperimentConfig") -> "ExperimentConfig":
        """`base` with the sections of table `data` on top (their problems raised together)."""
        def plain_section(section):
            current = getattr(base, section)
            return lambda table: P.from_dict(type(current), table, section, base=current)

        readers = {section: plain_section(section) for section in ("data", "backbone", "optim", "train")}
        readers["method"] = lambda table: _method_from_dict(table, base.method)
        readers["augment"] = lambda table: _augment_from_dict(table, base.augment)
        values, problems = {}, []
        for section, read in readers.items():
            if section in data:
                try:
                    values[section] = read(data[section])
                except ConfigError as error:
                    problems += error.problems
        if problems:
            raise ConfigError(problems)
        return dataclasses.replace(base, **values)

    def to_dict(self) -> dict:
        out = P.to_dict(self)
        out["augment"] = {"preset": self.augment.preset, "views": [P.to_dict(v) for v in self.augment.views]}
        return out

    # -- files -----------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> "ExperimentConfig":
        path = Path(path).expanduser()
        if not path.is_file():
            raise ConfigError([Problem("", f"config file {path} does not exist")])
        try:
            with open(path, "rb") as file:
                data = tomllib.load(file)
        except tomllib.TOMLDecodeError as error:
            raise ConfigError([Problem("", f"{path} is not valid TOML: {error}")]) from None
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(tomli_w.dumps(self.to_dict()))
        tmp.replace(path)

    # -- changes from the command line and the app -------------------------------------
    def with_overrides(self, assignments: list[str]) -> "ExperimentConfig":
        """Apply `address=value` strings (`--set`), their values read as TOML reads them
        (`parse_assignments`), with `with_values`."""
        return self.with_values(parse_assignments(assignments))

    def with_values(self, values: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> "ExperimentConfig":
        """This config with typed values set at their addresses: (address, value) pairs applied
        in order, or a dict. `method.temperature` reaches the method's params,
        `augment.views[1].blur_p` one view, `augment.blur_p` every view.

        `method.name` switches to that method's recipe (params, views, optimiser) and
        `method.recipe` to another recipe of the method before the other values are set; a
        new `data.image_size` re-derives views that were still the recipe's. A value of the
        wrong type or an unknown address is a ConfigError, all of them at once; ranges are
        `problems`' to check, as for a file.
        """
        pairs = [(address_of(table_path(address)), value)
                 for address, value in (values.items() if isinstance(values, Mapping) else values)]
        config = self
        for address, value in pairs:
            if address == "method.name":
                config = config.switch_method(str(value))
            elif address == "method.recipe":
                config = config.switch_recipe(str(value))
            elif address == "data.image_size" and views_follow_size(value) and \
                    config.augment.views == config.recipe_views(config.data.image_size):
                config = dataclasses.replace(config, augment=dataclasses.replace(
                    config.augment, views=config.recipe_views(value)))
        problems = []
        for address, value in pairs:
            if address not in ("method.name", "method.recipe"):
                try:
                    config = config._with_value(address, value)
                except ConfigError as error:
                    problems += error.problems
        if problems:
            raise ConfigError(problems)
        return config

    def _with_value(self, address: str, value) -> "ExperimentConfig":
        """This config with one typed value set at `address` (not the method's name or recipe),
        checked and converted as the file reader checks it."""
        path = table_path(address)
        section, rest = path[0], path[1:]
        if section not in SECTIONS:
            raise ConfigError([_unknown_section(section)])
        current = getattr(self, section)
        if section == "method" and len(rest) == 2 and rest[0] == "params":
            changed = dataclasses.replace(current, params=P.with_value(current.params, rest[1], value, "method"))
        elif section == "augment" and len(rest) == 1 and rest[0] not in ("preset", "views"):
            changed = dataclasses.replace(current, views=_with_view_value(current.views, range(len(current.views)),
                                                                         rest[0], value))
        elif section == "augment" and len(rest) == 3 and rest[0] == "views" and isinstance(rest[1], int) \
                and rest[1] < len(current.views):
            changed = dataclasses.replace(current, views=_with_view_value(current.views, [rest[1]], rest[2], value))
        elif section == "augment" and (len(rest) == 1 or rest[0] not in ("preset", "views")):
            changed = _augment_from_dict({rest[0]: value}, current)  # the preset, all the views, or an unknown key
        elif section in PLAIN_SECTIONS and len(rest) == 1:
            changed = P.with_value(current, rest[0], value, section)
        else:
            raise ConfigError([Problem("", f"--set cannot set {address}")])
        return dataclasses.replace(self, **{section: changed})

    @staticmethod
    def switched(table: dict, method: str | None = None, recipe: str | None = None) -> dict:
        """Config table `table` with method `method` (None: the table's own) in recipe `recipe`
        (None: the table's own, `table_recipe`): the method's parameters, views and optimiser
        come from that recipe, and so do the other settings that either the old or the new
        recipe sets (a quick recipe's time budget, its ViT's depth); the data and the other
        training and backbone settings stay, unless the method cannot use the backbone (MSN
        needs a ViT) or the backbone was the old method's forced choice. The table may hold
        invalid values (the app's form keeps what was typed).

        The one place where switching method or recipe is decided: `switch_method`,
        `switch_recipe`, the command line and the app's experiment model all come here."""
        from .methods import METHODS, get_method

        old_method = table.get("method", {})
        name = old_method.get("name") if method is None else method
        recipe = table_recipe(table) if recipe is None else recipe
        size = table_image_size(table)
        touched = recipe_keys(get_method(name), recipe)
        if old_method.get("name") in METHODS and old_method.get("recipe") in RECIPES:
            touched |= recipe_keys(get_method(old_method["name"]), old_method["recipe"])
        new = ExperimentConfig.for_method(name, size, recipe).to_dict()
        out = {section: (dict(values) if isinstance(values, dict) else values) for section, values in table.items()}
        for section in ("method", "augment", "optim"):
            out[section] = new[section]
        for key in touched:
            section, field_name = table_path(key)
            out.setdefault(section, {})[field_name] = new[section][field_name]
        if "backbone.name" not in touched:
            backbone = out.setdefault("backbone", {})
            current = str(backbone.get("name", new["backbone"]["name"]))
            if old_method.get("name") in METHODS and \
                    get_method(old_method["name"]).backbones is not None and \
                    current == usable_backbone(old_method["name"], BackboneConfig().name):
                # the old method's forced choice (MAE's vit_tiny), not the user's: the new method's own
                current = new["backbone"]["name"]
            backbone["name"] = usable_backbone(name, current)
        return out

    def switch_method(self, name: str) -> "ExperimentConfig":
        """This config with method `name` in the same recipe (`switched`)."""
        return ExperimentConfig.from_dict(ExperimentConfig.switched(self.to_dict(), method=name))

    def switch_recipe(self, recipe: str) -> "ExperimentConfig":
        """This config with the method's recipe `recipe` (`switched`; a bad name is a
        ConfigError)."""
        return ExperimentConfig.from_dict(ExperimentConfig.switched(self.to_dict(), recipe=recipe))

    def without_safeguard(self) -> "ExperimentConfig":
        """This config with its method's safeguard switched off: the settings the method's
        `Safeguard.removed` lists set on top (`ssl_engine.safeguards`), a collapse demo that its
        values alone describe. A UserError for a method that declares no safeguard."""
        from .safeguards import safeguard_of

        return self.with_values([(setting.key, setting.value) for setting in safeguard_of(self.method.name).removed])

    def recipe_views(self, image_size: int) -> list[ViewConfig]:
        """The views this method's recipe gives images of side `image_size`."""
        return recipe_views(self.method.name, image_size, self.method.recipe)

    # -- checks ----------------------------------------------------------------------
    def problems(self) -> list[Problem]:
        """Every invalid value, one Problem each (empty when the config is valid)."""
        from .methods import METHODS
        from .models.backbones import backbone_names

        problems = []
        for section in PLAIN_SECTIONS:
            problems += P.validate(getattr(self, section), section)
        source = self.data.source
        if source not in DATA_SOURCES and not (source.startswith("folder:") and len(source) > 7):
            problems.append(Problem("data.source", f"must be one of {', '.join(DATA_SOURCES)} or folder:PATH, got {source!r}"))
        if self.backbone.name not in backbone_names():
            problems.append(Problem("backbone.name", f"must be one of {', '.join(backbone_names())}, got {self.backbone.name!r}"))
        if self.method.name not in METHODS:
            problems.append(Problem("method.name", f"must be one of {', '.join(sorted(METHODS))}, got {self.method.name!r}"))
        else:
            if self.method.params is not None:
                problems += P.validate(self.method.params, "method")  # a parameter's address: method.NAME
            allowed = METHODS[self.method.name].backbones
            if allowed is not None and self.backbone.name not in allowed:
                problems.append(Problem("backbone.name", f"must be {' or '.join(allowed)} for {self.method.name}, "
                                                         f"got {self.backbone.name!r}"))
        device = self.train.device
        if not (device in ("auto", "cpu", "cuda", "mps") or (device.startswith("cuda:") and device[5:].isdigit())):
            problems.append(Problem("train.device", f"must be auto, cpu, cuda, cuda:N or mps, got {device!r}"))
        if self.backbone.is_vit:
            sizes = {self.data.image_size} | {v.output_size for v in self.augment.views if v.output_size}
            for size in sorted(sizes):
                if isinstance(self.backbone.patch_size, int) and self.backbone.patch_size > 0 \
                        and size % self.backbone.patch_size:
                    problems.append(Problem("backbone.patch_size", f"({self.backbone.patch_size}) must divide every "
                                                                   f"view's size for a ViT, and {size} px does not"))
        if not self.augment.views:
            problems.append(Problem("augment.views", "must hold at least two views"))
        for i, view in enumerate(self.augment.views):
            where = address_of(("augment", "views", i))
            problems += P.validate(view, where) + check_view(view, where)
        return problems

    def validate(self) -> "ExperimentConfig":
        """Raise ConfigError listing every bad field; return self when all is well."""
        problems = self.problems()
        if problems:
            raise ConfigError(problems)
        return self


SECTIONS = tuple(f.name for f in dataclasses.fields(ExperimentConfig))
PLAIN_SECTIONS = ("data", "backbone", "optim", "train")  # one table of plain values each


def _unknown_section(name: str) -> Problem:
    return Problem(name, f"is not a known section (known: {', '.join(SECTIONS)})")


def parse_assignments(assignments: list[str]) -> list[tuple[str, Any]]:
    """(address, value) of each `address=value` string of the command line's --set, the value
    read as TOML reads it (0.5, true, "name" or a bare name: `params.value_from_text`); any
    spelling `addresses.table_path` reads gives the one address. A string without `=` or
    with no section is a ConfigError, all of them at once."""
    parsed, problems = [], []
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        key = key.strip()
        if not sep or len(key.split(".")) < 2 or not all(key.split(".")):
            problems.append(Problem("", f"--set expects section.key=value, got {assignment!r}"))
            continue
        parsed.append((address_of(table_path(key)), P.value_from_text(value.strip())))
    if problems:
        raise ConfigError(problems)
    return parsed


def assigned_image_size(assignments: list[str], default: int = 32) -> int:
    """The image size the `--set` strings give (the last `data.image_size`, as the values
    apply), else `default`: the size a recipe is chosen for before the values are set. A
    malformed assignment gives `default` here; it is reported where the values are set."""
    try:
        sizes = [value for address, value in parse_assignments(assignments) if address == "data.image_size"]
    except ConfigError:
        sizes = []
    size = sizes[-1] if sizes else default
    return size if isinstance(size, int) and not isinstance(size, bool) else default


def table_problems(table: dict) -> list[Problem]:
    """Every problem of a config table at once (empty when it is valid).

    A value of the wrong type ("abc" for a learning rate) stops reading, so the range checks of
    the other fields would wait for the next round: here the fields with such problems are set
    aside (the recipe's value stands in) and the rest is read and checked, until nothing more
    is found."""
    problems: list[Problem] = []
    table = copy.deepcopy(table)
    for _ in range(8):  # each round sets aside at least one field; a table has few bad ones
        try:
            return problems + [p for p in ExperimentConfig.from_dict(table).problems() if p not in problems]
        except ConfigError as error:
            found = [p for p in error.problems if p not in problems]
        if not found or not _set_aside(table, {p.address for p in found}):
            return problems + found
        problems += found
    return problems


def _set_aside(node, addresses: set[str], path: tuple = ()) -> bool:
    """Remove from table `node` (in place) every value at one of `addresses`, except the
    method's name and recipe, which decide the rest; False when none was there (a problem
    with the table's shape rather than with a value)."""
    removed = False
    for key in list(node.keys() if isinstance(node, dict) else range(len(node))):
        value, here = node[key], path + (key,)
        if isinstance(value, (dict, list)):
            removed = _set_aside(value, addresses, here) or removed
        elif isinstance(node, dict) and key not in ("name", "recipe") and address_of(here) in addresses:
            del node[key]
            removed = True
    return removed


def changed_settings(old: dict, new: dict, sections=("backbone", "optim", "train", "data")) -> list[tuple[str, object, object]]:
    """(address, old value, new value) of every plain setting of `sections` that differs between
    two config tables, in table order: what switching method or recipe changed beyond the
    method's own parameters and views."""
    changes = []
    for section in sections:
        before, after = old.get(section, {}), new.get(section, {})
        if not isinstance(before, dict) or not isinstance(after, dict):
            continue
        for key, value in after.items():
            if key in before and before[key] != value and not isinstance(value, (dict, list)):
                changes.append((address_of((section, key)), before[key], value))
    return changes


def table_recipe(table: dict) -> str:
    """The recipe of a config table that may hold a value being typed: its method's recipe, or
    the image size's choice (`recipes.recipe_for`) while that is not a recipe's name."""
    recipe = table.get("method", {}).get("recipe")
    return recipe if recipe in RECIPES else recipe_for(table_image_size(table))


def recipe_views(method: str, image_size: int, recipe: str | None) -> list[ViewConfig]:
    """The views method `method`'s recipe `recipe` gives images of side `image_size`."""
    return ExperimentConfig.for_method(method, image_size, recipe).augment.views


def views_follow_size(image_size) -> bool:
    """Whether views the user has not edited follow a new image size (blur is off at 32 px and
    less, as in the papers' CIFAR settings): for any size the data can have."""
    return isinstance(image_size, int) and not isinstance(image_size, bool) and \
        MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE


def table_image_size(table: dict) -> int:
    """The image size of a config table that may hold a value being typed: 32 unless it is a
    usable size (8 to 512 px)."""
    size = table.get("data", {}).get("image_size", 32)
    return size if views_follow_size(size) else 32


def vit_features_for(config: "ExperimentConfig") -> str:
    """What a ViT's evaluation features are for this experiment: backbone.vit_features, or with
    "auto" the method's usual choice (the class token, or the mean patch token for MAE, I-JEPA,
    SimMIM, MaskFeat and BEiT)."""
    return _method_choice(config, "vit_features")


def position_embedding_for(config: "ExperimentConfig") -> str:
    """A ViT's positions for this experiment: backbone.position_embedding, or with "auto" the
    method's choice ("learnt"; "sincos" for MAE, I-JEPA and MoCo v3; "relative" for SimMIM and BEiT)."""
    return _method_choice(config, "position_embedding")


def layer_scale_for(config: "ExperimentConfig") -> float:
    """A ViT's LayerScale initial value for this experiment (0: none): backbone.layer_scale, or
    with "auto" the method's choice (on for SimMIM and BEiT, as in their code)."""
    from .models.vit import LAYER_SCALE_INIT

    return LAYER_SCALE_INIT if _method_choice(config, "layer_scale") == "on" else 0.0


def with_vit_layout_of(config: "ExperimentConfig", weights: dict) -> "ExperimentConfig":
    """The config with a ViT's positions (learnt, sin-cos or relative) and LayerScale as its
    saved weights have them (`weights`: its backbone's state dict). A run saved with "auto" took
    the method's choices of the day it trained, which a later version may change (SimMIM and BEiT
    gained both); the weights say what was built. For opening a trained model and resuming a run."""
    import math

    import torch

    from .models.vit import sincos_position_embedding

    if not config.backbone.is_vit:
        return config
    if "relative_position.table" in weights:
        position = "relative"
    else:  # fixed sin-cos embeddings never move from their values; learnt ones do
        saved = weights["pos_embed"]
        fixed = sincos_position_embedding(saved.shape[-1], math.isqrt(saved.shape[1] - 1))
        position = "sincos" if torch.equal(saved.cpu().float(), fixed) else "learnt"
    layer_scale = "on" if "blocks.0.gamma1" in weights else "off"
    backbone = dataclasses.replace(config.backbone, position_embedding=position, layer_scale=layer_scale)
    return dataclasses.replace(config, backbone=backbone)


def _method_choice(config: "ExperimentConfig", field_name: str) -> str:
    """backbone.<field_name>, or where it is "auto" the method class's attribute of that name."""
    from .methods import get_method

    choice = getattr(config.backbone, field_name)
    return getattr(get_method(config.method.name), field_name) if choice == "auto" else choice


def usable_backbone(method_name: str, backbone_name: str) -> str:
    """`backbone_name` when method `method_name` works with it, else the first backbone it
    declares (MSN masks ViT patches: a CNN becomes vit_tiny)."""
    from .methods import get_method

    allowed = get_method(method_name).backbones
    return backbone_name if allowed is None or backbone_name in allowed else allowed[0]


def _method_from_dict(table: dict, base: MethodConfig) -> MethodConfig:
    from .methods import get_method

    if not isinstance(table, dict):
        raise ConfigError([Problem("method", f"must be a table, got {table!r}")])
    problems = [Problem(f"method.{key}", "is not a known setting (known: name, recipe, params)")
                for key in table if key not in METHOD_OWN]
    if "recipe" in table and recipe_problem(table["recipe"]):
        problems.append(recipe_problem(table["recipe"]))
    params_class = get_method(base.name).Params
    params = base.params
    if "params" in table:
        try:
            params = P.from_dict(params_class, table["params"], "method", base=base.params)
        except ConfigError as error:
            problems += error.problems
    if problems:
        raise ConfigError(problems)
    return MethodConfig(name=base.name, recipe=base.recipe, params=params)


def _augment_from_dict(table: dict, base: AugmentConfig) -> AugmentConfig:
    if not isinstance(table, dict):
        raise ConfigError([Problem("augment", f"must be a table, got {table!r}")])
    problems = [Problem(f"augment.{key}", "is not a known setting (known: preset, views)")
                for key in table if key not in ("preset", "views")]
    preset = table.get("preset", base.preset)
    views = base.views
    if "views" in table:
        given = table["views"]
        if not isinstance(given, list):
            problems.append(Problem("augment.views", "must be a list of tables ([[augment.views]])"))
        else:
            views = []
            for i, view in enumerate(given):
                start = base.views[i] if i < len(base.views) else ViewConfig()
                try:
                    views.append(P.from_dict(ViewConfig, view, address_of(("augment", "views", i)), base=start))
                except ConfigError as error:
                    problems += error.problems
    if problems:
        raise ConfigError(problems)
    return AugmentConfig(preset=str(preset), views=views)


def _with_view_value(views: list[ViewConfig], chosen, name: str, value) -> list[ViewConfig]:
    """`views` with setting `name` at `value` on the views numbered in `chosen` (the problems of
    every one of them at once)."""
    views, problems = list(views), []
    for i in chosen:
        try:
            views[i] = P.with_value(views[i], name, value, address_of(("augment", "views", i)))
        except ConfigError as error:
            problems += error.problems
    if problems:
        raise ConfigError(problems)
    return views
