"""The command line: `train`, `compare`, `eval`, `embed`, `export`, `methods` and `runs`, over the
same engine the app drives.

Every user mistake (a bad value, a missing file, an empty folder) ends in one line on
stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from .errors import UserError
from .recipes import RECIPES

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, as for every other user error
        raise UserError(f"{message} (see `python main.py {self.prog.split()[-1]} --help`)")


def add_experiment_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that pick an experiment (also used by benchmarks/throughput.py)."""
    parser.add_argument("--config", help="TOML experiment file (as written to a run's config.toml)")
    parser.add_argument("--method", help="method name (see `methods`); its recipe is the starting point")
    parser.add_argument("--recipe", choices=tuple(RECIPES),
                        help="the method's settings: small (published CIFAR recipes), imagenet (the paper's), quick "
                             "(learns in minutes on a CPU); default: small for images of 64 px and less, else imagenet")
    parser.add_argument("--dataset", help="digits, shapes, cifar10, cifar100, stl10 or folder:PATH")
    parser.add_argument("--backbone", help="small_cnn, resnet18, resnet34 or resnet50")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--minutes", type=float, help="train for this many minutes instead of --epochs (train.minutes)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--runs-dir", help="folder that receives the run folder (default: runs)")
    parser.add_argument("--without-safeguard", action="store_true",
                        help="switch off what keeps the method from collapsing (see `methods`: SimSiam's stop-gradient, "
                             "VICReg's variance term...), a collapse demo; applied after the recipe, before --set")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any setting by its address, e.g. --set optim.lr=0.1 --set method.temperature=0.2 "
                             "--set augment.views[1].blur_p=0 (augment.blur_p: every view)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="main.py", description="SSL Explorer: self-supervised learning on images. "
                     "With no command, opens the app.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser("train", help="train a method and write a run folder")
    add_experiment_arguments(train)
    train.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--knn-every", type=int, default=0, metavar="EPOCHS",
                       help="print kNN top-1 on a fixed evaluation subset every EPOCHS epochs")
    train.add_argument("--tensorboard", metavar="DIR",
                       help="also write TensorBoard event files under DIR/<run folder name> (train.tensorboard; "
                            "needs the tensorboard package); then tensorboard --logdir DIR")

    evaluate = commands.add_parser("eval", help="kNN and linear-probe top-1 of a trained backbone")
    evaluate.add_argument("--checkpoint", help="a checkpoint file or a run folder")
    evaluate.add_argument("--baseline", choices=("random", "pixels"),
                          help="evaluate a randomly initialised backbone (with --checkpoint: that model's "
                               "architecture and normalisation, the floor it should beat) or raw pixels instead")
    evaluate.add_argument("--data", required=True, help="digits, shapes, cifar10, cifar100, stl10 or folder:PATH "
                          "(a folder with one subfolder per class; cross-validated unless --test is given)")
    evaluate.add_argument("--test", metavar="folder:PATH", help="a labelled test folder: train on --data, test on it")
    evaluate.add_argument("--k", type=int, default=20, help="neighbours for kNN (default 20)")
    evaluate.add_argument("--backbone", default="small_cnn", help="backbone for --baseline random without --checkpoint")
    evaluate.add_argument("--image-size", type=int, help="image size (default: the checkpoint's, or 32)")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the split and of --baseline random")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--json", action="store_true", help="print the result as JSON")
    evaluate.add_argument("--csv", metavar="FILE", help="also write the accuracy table (folder data) as CSV")

    embed = commands.add_parser("embed", help="embed a folder of images and save the features with their paths")
    embed.add_argument("--checkpoint", help="a checkpoint file or a run folder")
    embed.add_argument("--baseline", choices=("random",),
                       help="a randomly initialised backbone instead (with --checkpoint: of that model's architecture)")
    embed.add_argument("--data", required=True, metavar="folder:PATH", help="the folder of images to embed")
    embed.add_argument("--out", required=True, metavar="FILE", help="FILE.npz or FILE.csv")
    embed.add_argument("--backbone", default="small_cnn", help="backbone for --baseline random without --checkpoint")
    embed.add_argument("--image-size", type=int, help="image size (default: the checkpoint's, or 32)")
    embed.add_argument("--seed", type=int, default=0, help="seed of --baseline random")
    embed.add_argument("--device", default="auto")
    embed.add_argument("--batch-size", type=int, default=128, help="images embedded at a time (default 128)")
    embed.add_argument("--no-cache", action="store_true",
                       help="neither read nor write the embedding cache (~/.cache/ssl_explorer/embeddings)")

    export = commands.add_parser("export", help="write a run's trained backbone alone, as a plain state dict")
    export.add_argument("--checkpoint", required=True, help="a checkpoint file or a run folder")
    export.add_argument("--out", required=True, metavar="FILE", help="the file to write, e.g. backbone.pt")

    commands.add_parser("methods", help="list the methods with their hyperparameters")

    compare = commands.add_parser(
        "compare", help="race methods: each trains for the same minutes on one data set, and a leaderboard ranks "
                        "them by kNN against each run's random-init floor",
        description="Race methods: each method (once per seed) trains for --minutes on --dataset; after each run "
                    "a leaderboard (leaderboard.csv, leaderboard.md) is rewritten in a folder of its own, "
                    "race-DATE-TIME-METHODS, inside the runs folder, beside the runs, which `runs` lists. A run that "
                    "fails is recorded and the race goes on; Ctrl-C stops the current run with its checkpoint "
                    "and marks the rest not run.")
    compare.add_argument("--methods", required=True, help="comma-separated method names, e.g. simclr,byol,vicreg")
    compare.add_argument("--dataset", required=True, help="digits, shapes, cifar10, cifar100, stl10 or folder:PATH")
    compare.add_argument("--minutes", type=float, default=3.0,
                         help="minutes of training for each run (default 3); the evaluation follows")
    compare.add_argument("--seeds", default="0",
                         help="comma-separated seeds: each method runs once per seed (default 0)")
    compare.add_argument("--runs-dir", default="runs", help="the runs folder (default: runs)")
    compare.add_argument("--recipe", choices=tuple(RECIPES),
                         help="every method's recipe (default: small for images of 64 px and less, else imagenet)")
    compare.add_argument("--backbone", help="every run's backbone (default: each method's recipe's)")
    compare.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    compare.add_argument("--parallel", type=int, default=1, metavar="N",
                         help="run N at a time, each in a process of its own: one per CUDA GPU (N GPUs needed), or "
                              "with --device cpu, N processes that share the CPU's cores (so each is slower, and "
                              "does fewer epochs in its minutes); default 1, one after another")
    compare.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="a setting for every run, by its address, e.g. --set train.batch_size=128")
    compare.add_argument("--also-without-safeguard", action="store_true",
                         help="run each method that has a safeguard also with it switched off (as train "
                              "--without-safeguard), side by side: a collapse demo beside the intact method")

    runs = commands.add_parser("runs", help="list the runs: status, method, data, time, kNN against the random-init floor")
    runs.add_argument("--runs-dir", default="runs", help="the runs folder (default: runs)")
    runs.add_argument("--json", action="store_true", help="one JSON object per run instead of a table")
    return parser


# -- train -------------------------------------------------------------------------------
def experiment_config(args):
    """The validated config the experiment flags describe (a `--resume` run's own config first):
    the flags' typed values set at their settings' addresses, then with `--without-safeguard` the
    method's safeguard switched off (what it changes said on stderr), then the `--set` assignments."""
    from .config import ExperimentConfig, assigned_image_size, parse_assignments

    if getattr(args, "resume", None):
        from .run_store import resume_config

        config = resume_config(args.resume)
    elif args.config:
        config = ExperimentConfig.load(args.config)
    else:
        # the recipe follows the image size a --set gives
        config = ExperimentConfig.for_method(args.method or "simclr", assigned_image_size(args.set), args.recipe)
    values = []
    if args.method and (args.config or getattr(args, "resume", None)):
        values.append(("method.name", args.method))
    if args.recipe and (args.config or getattr(args, "resume", None)):
        values.append(("method.recipe", args.recipe))
    flags = {"data.source": args.dataset, "backbone.name": args.backbone, "train.epochs": args.epochs,
             "train.minutes": getattr(args, "minutes", None), "train.tensorboard": getattr(args, "tensorboard", None),
             "train.batch_size": args.batch_size, "train.device": args.device, "train.runs_dir": args.runs_dir}
    values += [(address, value) for address, value in flags.items() if value is not None]
    if getattr(args, "without_safeguard", False):
        config = _without_safeguard(config.with_values(values))
        values = []
    return config.with_values(values + parse_assignments(args.set)).validate()


def _without_safeguard(config):
    """`config.without_safeguard()`, each setting it changes said in one line on stderr."""
    from .addresses import value_at
    from .safeguards import safeguard_of

    safeguard = safeguard_of(config.method.name)
    changed = config.without_safeguard()
    before, after = config.to_dict(), changed.to_dict()
    print(f"without {safeguard.name} ({config.method.name}):", file=sys.stderr)
    for setting in safeguard.removed:
        old, new = value_at(before, setting.key), value_at(after, setting.key)
        was = f"was {_toml_value(old)}" if old != new else "already so"
        print(f"  {setting.key} = {_toml_value(new)} ({was}; {setting.source})", file=sys.stderr)
    return changed


def _toml_value(value) -> str:
    """A setting's value as a config file and --set spell it: true, 0.0, "name"."""
    import tomli_w

    return tomli_w.dumps({"v": value}).strip()[len("v = "):]


class _ProgressBar:
    """tqdm over training steps, fed by the trainer's step events."""

    def __init__(self):
        self.bar = None

    def __call__(self, event):
        from tqdm import tqdm

        from .train.events import EpochEnd, Failed, Finished, RunStarted, StepMetrics

        if isinstance(event, RunStarted):
            self.bar = tqdm(total=event.total_steps, initial=event.start_step, unit="step", dynamic_ncols=True,
                            file=sys.stderr, desc=Path(event.run_dir).name)
        elif isinstance(event, StepMetrics) and self.bar is not None:
            if event.total_steps and event.total_steps != self.bar.total:  # a time budget's length, now known
                self.bar.total = event.total_steps
            self.bar.n = event.step
            self.bar.set_postfix(epoch=event.epoch + 1, loss=f"{event.loss:.4f}",
                                 img_s=f"{event.images_per_second:.0f}", refresh=False)
            self.bar.refresh()
        elif isinstance(event, EpochEnd) and event.knn_top1 is not None and self.bar is not None:
            self.bar.write(_knn_line(event))
        elif isinstance(event, (Finished, Failed)) and self.bar is not None:
            self.bar.close()


def _knn_line(event) -> str:
    return f"epoch {event.epoch}: loss {event.mean_loss:.4f}, kNN top-1 {event.knn_top1:.3f}"


def _print_knn(event) -> None:
    from .train.events import EpochEnd

    if isinstance(event, EpochEnd) and event.knn_top1 is not None:
        print(_knn_line(event), file=sys.stderr)


def run_train(args) -> int:
    from .train import EventRates, Trainer, TrainingControl

    config = experiment_config(args)
    if config.train.tensorboard:
        from .tensorboard_log import require_tensorboard

        require_tensorboard()  # before the estimate's timed steps, which the trainer's own check would follow
    control = TrainingControl()
    main_process = int(os.environ.get("RANK", "0")) == 0  # under torchrun, rank 0 speaks for all
    data = None
    if not args.quiet and not args.resume and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        data = _print_estimate(config, max(0, args.knn_every))
    trainer = Trainer(config, resume=Path(args.resume).expanduser() if args.resume else None, control=control,
                      data=data)
    if not args.quiet and main_process:
        trainer.subscribe(_ProgressBar(), EventRates(metrics_every_steps=max(1, config.train.log_every_steps // 5),
                                                     probes={"knn_top1": max(0, args.knn_every)}))
    elif args.knn_every > 0 and main_process:
        # no bar, but the kNN asked for is still measured (and written to metrics.jsonl)
        trainer.subscribe(_print_knn, EventRates(metrics_every_steps=0, probes={"knn_top1": args.knn_every}))
    if main_process:  # the diagnostics are measured every epoch anyway: an alarm costs nothing
        trainer.subscribe(_CollapseLines(config.to_dict()), EventRates(metrics_every_steps=0, probes={"diagnostics": 1}))

    def interrupt(signum, frame):  # first Ctrl-C: stop with a checkpoint; second: abort
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("\nstopping after this step and saving a checkpoint (Ctrl-C again to abort)", file=sys.stderr)
        control.stop()

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        summary = trainer.run()
    finally:
        signal.signal(signal.SIGINT, previous)
    if not main_process:
        return 0
    print(json.dumps(summary, indent=2))
    if trainer.run_dir is not None:
        print(f"run folder: {trainer.run_dir}", file=sys.stderr)
    return 0


class _CollapseLines:
    """A line on stderr when the collapse alarm fires (`ssl_engine.collapse`), once per kind."""

    def __init__(self, table: dict):
        from .collapse import CollapseWatch

        self.watch = CollapseWatch(table)
        self.said: set[str] = set()

    def __call__(self, event) -> None:
        if getattr(event, "name", None) != "diagnostics":
            return
        alarm = self.watch.feed(event)
        if alarm is not None and alarm.kind not in self.said:
            self.said.add(alarm.kind)
            from tqdm import tqdm

            tqdm.write(f"collapse alarm: {alarm.message}", file=sys.stderr)  # above a progress bar, if any


def _print_estimate(config, knn_every: int):
    """Say how long the run will take (a few timed steps first); returns the loaded data, which
    the run then uses. A single process only: under torchrun each process would time itself."""
    from .train.estimate import measure, project
    from .train.events import EventRates
    from .data.for_config import load_data_for

    data = load_data_for(config.validate())
    estimate = project(measure(config, data), config, data,
                       rates=EventRates(metrics_every_steps=0, probes={"knn_top1": knn_every}))
    print(f"expected: {estimate.line()}", file=sys.stderr, flush=True)
    return data


# -- folders of images: embed, and eval on folder:PATH ------------------------------------
def _folder_path(source: str, flag: str) -> str:
    """The path of a `folder:PATH` argument."""
    from .data import FOLDER_PREFIX

    if not source.startswith(FOLDER_PREFIX):
        raise UserError(f"{flag} must be folder:PATH (a folder of images), got {source!r}")
    path = source[len(FOLDER_PREFIX):].strip()
    if not path:
        raise UserError(f"{flag} folder:PATH needs a path, e.g. folder:~/pictures")
    return path


def _eval_model(args):
    """The EvalModel that --checkpoint or --baseline random names, at --image-size if given."""
    from .eval.model_source import at_image_size, open_model, random_init_model

    if args.image_size is not None and args.image_size < 8:
        raise UserError(f"--image-size must be at least 8, got {args.image_size}")
    if args.checkpoint:
        model = open_model(args.checkpoint)
        if args.baseline == "random":  # the floor of this model: its network at random initialisation
            model = random_init_model(like=model, seed=args.seed)
        return at_image_size(model, args.image_size) if args.image_size else model
    return random_init_model(backbone=args.backbone, image_size=args.image_size or 32, seed=args.seed)


def _check_model_source(args) -> None:
    """--checkpoint, --baseline, or both for a checkpoint's random-init floor (not with pixels)."""
    if not args.checkpoint and not args.baseline:
        raise UserError("give --checkpoint PATH or --baseline (see --help)")
    if args.checkpoint and args.baseline == "pixels":
        raise UserError("--baseline pixels evaluates raw pixels: leave out --checkpoint")


class _EmbeddingBar:
    """tqdm over the images of a folder being embedded, fed by embed_folder's progress calls."""

    def __init__(self, folder: str):
        self.folder, self.bar = folder, None

    def __call__(self, done: int, total: int, images_per_second: float) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=total, unit="img", dynamic_ncols=True, file=sys.stderr,
                            desc=Path(self.folder).name, disable=None)
        self.bar.n = done
        self.bar.set_postfix(img_s=f"{images_per_second:.0f}", refresh=False)
        self.bar.refresh()
        if done >= total:
            self.bar.close()


class _EmbeddingBars:
    """One `_EmbeddingBar` per folder, fed by the session's progress calls (one model)."""

    def __init__(self, folders: list[str]):
        self.bars = [_EmbeddingBar(folder) for folder in folders]

    def __call__(self, model_index: int, folder_index: int, done: int, total: int, images_per_second: float) -> None:
        self.bars[folder_index](done, total, images_per_second)


def run_embed(args) -> int:
    import time

    from .eval.session import EvaluationSession

    _check_model_source(args)
    folder = _folder_path(args.data, "--data")
    if os.path.splitext(args.out)[1].lower() not in (".npz", ".csv"):
        raise UserError(f"--out must end in .npz or .csv, got {args.out!r}")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    model = _eval_model(args)
    session = EvaluationSession(cache_dir="" if args.no_cache else None, device=args.device)
    session.set_folders([folder])
    started = time.perf_counter()
    [embedded] = session.embed([model], batch_size=args.batch_size, progress=_EmbeddingBars([folder]))
    seconds = time.perf_counter() - started
    embedding = embedded.combined   # one folder: its own embedding
    try:
        out = session.exports.embeddings(args.out)()
    except OSError as error:
        raise UserError(f"cannot write {args.out}: {error.strerror or error}") from None
    fresh = len(embedding.paths) - embedding.reused
    speed = f"{fresh / seconds:.0f} images/s" if fresh else "nothing to embed"
    print(f"{len(embedding.paths)} images embedded ({embedding.reused} reused from cache, "
          f"{len(embedding.skipped)} skipped), {speed}, {model.feature_dim} features each -> {out}")
    return 0


def _no_labels(flag: str, folder: str) -> UserError:
    return UserError(f"{flag} {folder} has no labels: accuracy needs labelled images "
                     f"(a folder with one subfolder per class)")


def _pixel_features(args, folder: str, flag: str):
    """(labelled features, count line) of a labelled folder for `eval --baseline pixels`: the
    flattened images in [0, 1]."""
    from types import SimpleNamespace

    from .data import read_folder

    images, skipped = read_folder(folder, args.image_size or 32)
    features = images.images.reshape(len(images), -1).float() / 255.0
    if not images.class_names:
        raise _no_labels(flag, folder)
    line = f"{flag} {folder}: {len(images.labels)} images ({len(skipped)} skipped)"
    return SimpleNamespace(features=features, labels=images.labels.numpy(), class_names=images.class_names), line


def _pixels_report(args, train_folder: str, test_folder: str | None):
    """The accuracy report of raw pixels, and the count lines."""
    from .eval.accuracy import folder_accuracy_report

    train, train_line = _pixel_features(args, train_folder, "--data")
    test, lines = None, [train_line]
    if test_folder is not None:
        test, test_line = _pixel_features(args, test_folder, "--test")
        lines.append(test_line)
    report = folder_accuracy_report(train, test, model_name="raw pixels", train_name=Path(train_folder).name,
                                    test_name=Path(test_folder).name if test_folder else "", k=args.k, seed=args.seed)
    return report, lines


def _model_report(args, model, train_folder: str, test_folder: str | None):
    """The accuracy report of a model, from an evaluation session of the folders, and the count lines."""
    from .eval.results import Protocol
    from .eval.session import EvaluationSession

    given = [(train_folder, "--data")] + ([(test_folder, "--test")] if test_folder is not None else [])
    session = EvaluationSession(device=args.device)
    session.set_folders([folder for folder, _ in given])
    lines = []

    def counted(model_index: int, folder_index: int, embedding) -> None:
        # one folder given as both --data and --test is embedded once, and counted for both
        named = given if len(session.folders) < len(given) else [given[folder_index]]
        for folder, flag in named:
            if not embedding.class_names:  # said before the next folder is embedded
                raise _no_labels(flag, folder)
            lines.append(f"{flag} {folder}: {len(embedding.labels)} images ({embedding.reused} reused from cache, "
                         f"{len(embedding.skipped)} skipped)")

    session.embed([model], progress=_EmbeddingBars(session.folders), finished=counted)
    protocol = Protocol(0, None if test_folder is None else len(session.folders) - 1)
    return session.measure_accuracy(protocol, args.k, seed=args.seed).reports[0], lines


def _run_eval_on_folders(args) -> int:
    import math

    from .eval.export import save_accuracy_csv

    train_folder = _folder_path(args.data, "--data")
    test_folder = _folder_path(args.test, "--test") if args.test else None
    if args.baseline == "pixels":
        name = "raw pixels"
        report, lines = _pixels_report(args, train_folder, test_folder)
    else:
        model = _eval_model(args)
        name = model.name
        report, lines = _model_report(args, model, train_folder, test_folder)
    print("\n".join(lines), file=sys.stderr)  # after the report: a mistake stays one error line
    if args.csv:
        try:
            save_accuracy_csv(args.csv, [report])
        except OSError as error:
            raise UserError(f"cannot write {args.csv}: {error.strerror or error}") from None

    def number(value):
        return None if value is None or math.isnan(value) else round(float(value), 6)

    probe = report.per_class_probe
    per_class = {class_name: {"knn_top1": number(report.per_class_knn[c]),
                              "linear_probe_top1": None if probe is None else number(probe[c])}
                 for c, class_name in enumerate(report.class_names)}
    if args.json:
        print(json.dumps({"model": name, "data": args.data, "test": args.test, "protocol": report.protocol,
                          "k": report.k, "knn_top1": number(report.knn_top1), "knn_top5": number(report.knn_top5),
                          "linear_probe_top1": number(report.probe_top1), "per_class": per_class,
                          "train_count": report.train_count, "test_count": report.test_count}))
        return 0
    print(f"{name}: {report.protocol} ({report.test_count} test images)")
    print(f"kNN top-1 (k={report.k}):   {report.knn_top1:.4f}")
    print(f"kNN top-5 (k={report.k}):   {report.knn_top5:.4f}")
    print(f"linear-probe top-1: {report.probe_top1:.4f}")
    width = max(len(class_name) for class_name in report.class_names)
    print("per class: kNN top-1, linear-probe top-1 (- where the class has no test image)")
    for class_name, values in per_class.items():
        cells = ["     -" if v is None else f"{v:.4f}" for v in values.values()]
        print(f"  {class_name:<{width}}  {cells[0]}  {cells[1]}")
    return 0


# -- eval --------------------------------------------------------------------------------
def run_eval(args) -> int:
    import torch

    from .config import ExperimentConfig
    from .data import FOLDER_PREFIX
    from .data.stats import channel_stats
    from .eval.evaluate import evaluate_backbone, evaluate_pixels
    from .data.for_config import load_data_for
    from .devices import resolve_device
    from .models.build import build_backbone_for

    _check_model_source(args)
    if args.k < 1:
        raise UserError(f"--k must be >= 1, got {args.k}")
    if args.data.startswith(FOLDER_PREFIX):
        return _run_eval_on_folders(args)
    if args.test or args.csv:
        raise UserError(f"--{'test' if args.test else 'csv'} needs --data folder:PATH (a labelled folder of images)")
    device = resolve_device(args.device)
    # a checkpoint's network (trained, or its random-init floor) as the folder path opens it
    model = _eval_model(args) if args.checkpoint else None
    if model is not None:
        config = model.config
    else:
        config = ExperimentConfig.for_method("simclr").with_values({"backbone.name": args.backbone})
    image_size = args.image_size or (model.image_size if model is not None else config.data.image_size)
    splits = load_data_for(config, source=args.data, image_size=image_size, seed=args.seed)
    if splits.test is None or not splits.train.has_labels:
        raise UserError(f"{args.data} has no labels: kNN and linear-probe accuracy need labelled images "
                        f"(a folder with one subfolder per class)")
    if args.baseline == "pixels":
        result = evaluate_pixels(splits, k=args.k, seed=args.seed)
        what = "raw pixels"
    else:
        if model is not None:
            backbone, mean, std = model.backbone, model.mean, model.std
            what = model.name if args.baseline == "random" else f"checkpoint {args.checkpoint}"
        else:
            torch.manual_seed(args.seed)
            backbone = build_backbone_for(config.with_values({"data.image_size": image_size}))
            mean, std = channel_stats(splits.train.images)
            what = f"{args.backbone} at random initialisation"
        result = evaluate_backbone(backbone.to(device), splits, mean, std, k=args.k, device=device, seed=args.seed)
    if args.json:
        print(json.dumps({"model": what, "data": args.data, "k": args.k, **result}))
    else:
        print(f"{what} on {args.data} ({len(splits.test)} test images)")
        print(f"kNN top-1 (k={args.k}):   {result['knn_top1']:.4f}")
        print(f"linear-probe top-1: {result['linear_probe_top1']:.4f}")
    return 0


# -- export ------------------------------------------------------------------------------
def run_export(args) -> int:
    from .backbone_export import export_backbone

    exported = export_backbone(args.checkpoint, args.out)
    print(f"wrote {exported.path} ({exported.megabytes}): the backbone alone, as a plain state dict")
    print(exported.description())
    print(f"loads into {exported.loads_into()}; with this code:")
    print("\n".join(f"    {line}" for line in exported.contents["snippet"].splitlines()))
    return 0


# -- methods -----------------------------------------------------------------------------
def run_methods(args) -> int:
    from .methods import FAMILIES, METHODS
    from .params import describe

    for family, blurb in FAMILIES.items():
        members = [m for m in METHODS.values() if m.family == family]
        if not members:
            continue
        print(f"{family}: {blurb}")
        for method in sorted(members, key=lambda m: m.name):
            print(f"  {method.name:<14} {method.summary} ({method.paper})")
            for name, default, valid, help_text in describe(method.Params):
                print(f"      {name:<22} = {default!s:<10} [{valid}]  {help_text}")
            optim = method.optim_defaults
            decay = optim["weight_decay"]
            if optim.get("weight_decay_schedule") == "cosine":
                decay = f"{decay} -> {optim['weight_decay_end']} (cosine)"
            biases = f" (biases and norm layers x {optim['bias_lr_ratio']})" if "bias_lr_ratio" in optim else ""
            reach = ("on every parameter" if optim.get("decay_exclusions") == "none"
                     else "except on biases and norm layers")
            clip = ""
            if optim.get("grad_clip", 0) > 0:
                per = "each parameter's" if optim.get("grad_clip_mode") == "per_parameter" else "the global"
                clip = f", {per} gradient norm clipped at {optim['grad_clip']}"
            print(f"      optimiser: {optim['name']} lr {optim['lr']} x batch/256{biases}, weight decay "
                  f"{decay} {reach}, warm-up {optim['warmup_epochs']} epochs{clip}; views: {method.augment_preset}")
            _print_recipes(method)
            _print_safeguard(method)
        print()
    return 0


def _print_recipes(method) -> None:
    """The method's three recipes: what small and quick change on the ImageNet one, and why."""
    from .recipes import BASE_RECIPE, own_settings

    print("      recipes:")
    print(f"        imagenet: {RECIPES['imagenet']} (the values above)")
    for recipe in ("small", "quick"):
        settings = own_settings(method, recipe)
        base = BASE_RECIPE[recipe]
        print(f"        {recipe}: {RECIPES[recipe]}; on the {base} recipe:" if settings
              else f"        {recipe}: as {base}")
        for setting in settings:
            print(f"          {setting.key} = {setting.value}  ({setting.source})")


def _print_safeguard(method) -> None:
    """What keeps the method from collapsing, and what --without-safeguard sets to switch it off."""
    safeguard = method.safeguard
    if safeguard is None:
        print("      safeguard: none declared (--without-safeguard refuses it)")
        return
    print(f"      safeguard: {safeguard.name}. {safeguard.keeps}")
    print(f"        --without-safeguard sets (watch {', '.join(safeguard.watch)}):")
    for setting in safeguard.removed:
        print(f"          {setting.key} = {_toml_value(setting.value)}  ({setting.source})")


def run_runs(args) -> int:
    """The table of runs under --runs-dir (the Runs tab shows the same)."""
    from .run_store import format_table, list_runs

    records = list_runs(args.runs_dir)
    if args.json:
        for record in records:
            fields = {k: v for k, v in vars(record).items() if k != "path"}
            print(json.dumps({"run": record.name, "path": str(record.path), **fields}))
        return 0
    if not records:
        print(f"no runs in {Path(args.runs_dir).expanduser()}", file=sys.stderr)
        return 0
    print(format_table(records))
    return 0


# -- compare ---------------------------------------------------------------------------
RACE_FLAGS = ("methods", "seeds", "minutes", "parallel")  # the plan's fields that are flags of `compare`


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _race_runner(args):
    """The runner of the race the flags describe, its plan checked whole."""
    from .errors import ConfigError, Problem
    from .race import Race, RaceRunner
    from .train import TrainingControl

    try:
        seeds = tuple(int(seed) for seed in _comma_list(args.seeds))
    except ValueError:
        raise UserError(f"--seeds must be whole numbers separated by commas, got {args.seeds!r}") from None
    race = Race(methods=tuple(_comma_list(args.methods)), dataset=args.dataset, minutes=args.minutes, seeds=seeds,
                recipe=args.recipe, backbone=args.backbone, device=args.device, runs_dir=args.runs_dir,
                assignments=tuple(args.set), parallel=args.parallel,
                also_without_safeguard=args.also_without_safeguard)
    try:
        return RaceRunner(race, TrainingControl())
    except ConfigError as error:  # the plan's own fields by their flags
        raise ConfigError([Problem(f"--{p.address}", p.message) if p.address in RACE_FLAGS else p
                           for p in error.problems]) from None


class _RaceLines:
    """A line as each run of a race starts and ends; a progress bar for a run in this process
    when stderr is a terminal."""

    def __init__(self, bar: bool):
        self.total, self.bar = 0, _ProgressBar() if bar else None

    def __call__(self, event) -> None:
        from .leaderboard import HEADERS, row_cells
        from .race import RaceRunEnded, RaceRunStarted, RaceStarted, RunProgress

        if isinstance(event, RaceStarted):
            self.total = len(event.runs)
            at_once = f", {event.parallel} at a time" if event.parallel > 1 else ", one after another"
            print(f"race {event.folder}: {self.total} runs{at_once}", flush=True)
        elif isinstance(event, RaceRunStarted):
            print(f"[{event.index + 1}/{self.total}] {event.method} seed {event.seed}: started ({event.run_dir})",
                  flush=True)
        elif isinstance(event, RunProgress) and self.bar is not None:
            self.bar(event.event)
        elif isinstance(event, RaceRunEnded):
            row, cells = event.row, dict(zip(HEADERS, row_cells(event.row)))
            what = f"{row.status}: {row.message}" if row.message else row.status
            if row.knn is not None:
                what += (f", kNN {cells['kNN']} (random-init floor {cells['random-init floor']}, gain "
                         f"{cells['gain']}), linear probe {cells['linear probe']}, {cells['epochs']} epochs at "
                         f"{cells['images/s']} images/s")
            print(f"[{event.index + 1}/{self.total}] {row.method} seed {row.seed}: {what}", flush=True)


def run_compare(args) -> int:
    from .leaderboard import CSV_FILE, MARKDOWN_FILE, format_leaderboard
    from .train import EventRates

    runner = _race_runner(args)
    bar = sys.stderr.isatty()
    runner.subscribe(_RaceLines(bar), EventRates(metrics_every_steps=5 if bar else 0))

    def interrupt(signum, frame):  # first Ctrl-C: stop the current run with a checkpoint; second: abort
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("\nstopping the race: the current run saves a checkpoint, the rest are not run "
              "(Ctrl-C again to abort)", file=sys.stderr)
        runner.control.stop()

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        rows = runner.run()
    finally:
        signal.signal(signal.SIGINT, previous)
    print()
    print(format_leaderboard(rows))
    print(f"\nleaderboard: {runner.folder / MARKDOWN_FILE} and {CSV_FILE} beside it")
    return 130 if runner.control.stop_requested else 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return {"train": run_train, "compare": run_compare, "eval": run_eval, "embed": run_embed,
                "export": run_export, "methods": run_methods, "runs": run_runs}[args.command](args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
