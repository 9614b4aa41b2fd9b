"""Safeguards: each method's declared removal is a valid config that changes it, the command line's
--without-safeguard applies it (and refuses a method without one), every switched-off state does
what its help says on a real method, and every method trains without its safeguard."""

import math

import pytest
import torch
from torch import nn

from ssl_engine.addresses import value_at
from ssl_engine.cli import build_parser, experiment_config, main
from ssl_engine.config import ExperimentConfig
from ssl_engine.errors import UserError
from ssl_engine.methods import METHODS, get_method
from ssl_engine.models.build import build_backbone_for
from ssl_engine.recipes import RECIPES
from ssl_engine.train import EventRates, Trainer
from ssl_engine.train.events import StepMetrics
from tests.helpers import SMALL_HEADS
from tests.method_runs import run_config

GUARDED = sorted(name for name, method in METHODS.items() if method.safeguard is not None)


def test_the_methods_of_the_issue_declare_a_safeguard_and_the_masked_ones_none():
    assert set(GUARDED) >= {"simsiam", "byol", "barlow_twins", "vicreg", "dino", "swav", "simclr", "moco_v2", "moco_v3"}
    assert METHODS["mae"].safeguard is None and METHODS["simmim"].safeguard is None


@pytest.mark.parametrize("name", GUARDED)
def test_every_removal_is_a_valid_config_that_switches_the_intact_method_off(name):
    safeguard = METHODS[name].safeguard
    assert safeguard.name and safeguard.keeps.endswith(".") and safeguard.watch
    for recipe in RECIPES:
        intact = ExperimentConfig.for_method(name, 32, recipe)
        demo = intact.without_safeguard().validate()
        assert demo != intact
        for setting in safeguard.removed:
            assert setting.key.startswith("method.") and setting.source
            # the recipe is the paper's intact method; the demo holds the removal's value
            assert value_at(intact.to_dict(), setting.key) != pytest.approx(setting.value)
            assert value_at(demo.to_dict(), setting.key) == pytest.approx(setting.value)
        # everything else is the recipe's
        assert demo.optim == intact.optim and demo.augment == intact.augment and demo.train == intact.train


def test_a_method_without_a_safeguard_is_one_clear_refusal():
    with pytest.raises(UserError, match=r"^mae declares no safeguard to switch off \(methods with one: barlow_twins, "):
        ExperimentConfig.for_method("mae", 32).without_safeguard()


def _train_argv(tmp_path, method, *extra):
    return ["train", "--method", method, "--dataset", "shapes", "--epochs", "1", "--batch-size", "10", "--device", "cpu",
            "--runs-dir", str(tmp_path / "runs"), "--quiet", "--set", "data.shapes_count=100",
            "--set", "data.image_size=16", "--set", "data.test_fraction=0.8", "--set", "train.eval_subset=16",
            "--set", "train.linear_probe=false", *[a for s in SMALL_HEADS.get(method, []) for a in ("--set", s)], *extra]


def test_the_command_line_trains_without_the_safeguard_and_the_run_records_it(tmp_path, capsys):
    assert main(_train_argv(tmp_path, "simsiam", "--without-safeguard")) == 0
    said = capsys.readouterr().err
    assert "without the stop-gradient (simsiam):" in said
    assert "method.stop_gradient = false (was true;" in said
    run = next((tmp_path / "runs").iterdir())
    recorded = ExperimentConfig.load(run / "config.toml")
    assert recorded.method.params.stop_gradient is False
    assert recorded.method.params.projection_dim == 64  # the --set values are there too


def test_the_removal_goes_after_the_flags_and_before_set(tmp_path, capsys):
    def config(*extra):
        return experiment_config(build_parser().parse_args(_train_argv(tmp_path, "vicreg", *extra)))

    assert config("--without-safeguard").method.params.std_coeff == pytest.approx(0.0)
    assert "method.std_coeff = 0.0 (was 25.0;" in capsys.readouterr().err
    assert config("--without-safeguard", "--set", "method.std_coeff=5").method.params.std_coeff == pytest.approx(5.0)
    # the flags come first: a method named by --method with a --config file is the one switched off
    saved = tmp_path / "simsiam.toml"
    ExperimentConfig.for_method("simsiam", 32).save(saved)
    assert config("--config", str(saved), "--without-safeguard").method.params.std_coeff == pytest.approx(0.0)


def test_the_command_line_refuses_a_method_without_a_safeguard_in_one_line(tmp_path, capsys):
    assert main(_train_argv(tmp_path, "mae", "--without-safeguard")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: mae declares no safeguard to switch off") and "\n" not in err
    assert not (tmp_path / "runs").exists()


def test_methods_lists_each_safeguard(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out

    def block(name):  # the method's lines: its own, up to the next method's
        lines = out[out.index(f"  {name} "):].splitlines()
        return "\n".join([lines[0]] + [line for line in _until_next(lines[1:])])

    assert "safeguard: the stop-gradient. No gradient flows" in block("simsiam")
    assert "method.stop_gradient = false  (SimSiam section 4.1" in block("simsiam")
    assert "method.predictor = false" in block("byol") and "method.ema_target = false" in block("byol")
    assert "safeguard: none declared" in block("mae")


def _until_next(lines):
    for line in lines:
        if not line.startswith("    "):  # the next method, or the family's end
            return
        yield line


# -- each switched-off state, on a real method -------------------------------------------
def build(name, *, off=False, **values):
    """Method `name` on a small CNN for 16 px images with SMALL_HEADS' narrow heads, built from its
    config (intact, or `off`: `without_safeguard`, as the command line builds it)."""
    config = ExperimentConfig.for_method(name, 16, "imagenet").with_overrides(SMALL_HEADS.get(name, []))
    config = (config.without_safeguard() if off else config).with_values({f"method.{k}": v for k, v in values.items()})
    torch.manual_seed(0)
    return get_method(name)(build_backbone_for(config.validate()), config.method.params, total_steps=10)


def views(batch=8, seed=0, count=2):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 3, 16, 16, generator=generator) for _ in range(count)]


class Cut(nn.Module):
    """Passes its input on with no gradient back through it."""

    def forward(self, x):
        return x.detach()


@pytest.mark.parametrize("off", [False, True])
def test_simsiam_without_the_stop_gradient_trains_the_encoder_through_the_target_branch(off):
    method = build("simsiam", off=off)
    # cut the predictor's input: only the target branch (z2 in D(p1, z2)) is left to reach the encoder
    method.predictor = nn.Sequential(Cut(), method.predictor)
    method(views(), step=0).loss.backward()
    gradients = [p.grad for p in method.backbone.parameters()]
    if off:
        assert any(g is not None and g.abs().sum() > 0 for g in gradients)
    else:
        assert all(g is None for g in gradients)


def test_byol_without_its_safeguard_has_no_predictor_and_a_target_equal_to_the_online_network():
    def one_step(method):
        optimizer = torch.optim.SGD([p for group in method.parameter_groups() for p in group["params"]], lr=0.5)
        method(views(), step=0).loss.backward()
        optimizer.step()
        method.after_optimizer_step(0)

    off, intact = build("byol", off=True), build("byol")
    assert sum(p.numel() for p in off.predictor.parameters()) == 0
    assert sum(p.numel() for p in intact.predictor.parameters()) > 0
    one_step(off), one_step(intact)
    for online, target in ((off.backbone, off.target_backbone), (off.projector, off.target_projector)):
        for a, b in zip(online.state_dict().values(), target.state_dict().values()):
            assert torch.equal(a, b)
    moved = [not torch.equal(a, b) for a, b in zip(intact.backbone.parameters(), intact.target_backbone.parameters())]
    assert any(moved)  # the intact target lags behind


def test_barlow_twins_and_vicreg_without_their_term_leave_it_out_of_the_loss():
    output = build("barlow_twins", off=True)(views(), step=0)
    assert output.terms["off-diagonal"] > 0
    assert output.loss.item() == pytest.approx(output.terms["on-diagonal"].item(), rel=1e-6)
    output = build("vicreg", off=True)(views(), step=0)
    assert output.terms["variance"] > 0.1
    expected = 25 * output.terms["invariance"] + output.terms["covariance"]
    assert output.loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_dino_without_centring_leaves_the_center_unused_and_without_sharpening_uses_the_student_temperature():
    def loss_with_center(method, center):
        method.center.copy_(center)
        torch.manual_seed(1)
        return method(views(), step=0)

    center = torch.randn(1, 256, generator=torch.Generator().manual_seed(3))
    intact, off = build("dino"), build("dino", off=True)
    assert intact.teacher_temperature() == pytest.approx(0.04)
    assert off.teacher_temperature() == pytest.approx(off.params.student_temp)
    off.epoch = 100  # after the warm-up too
    assert off.teacher_temperature() == pytest.approx(0.1)

    first, second = loss_with_center(off, torch.zeros(1, 256)), loss_with_center(off, center)
    assert first.loss.item() == pytest.approx(second.loss.item(), rel=1e-6)
    off.center.zero_()
    off(views(), step=0)
    assert torch.count_nonzero(off.center) == 0  # never updated
    assert second.terms["teacher temperature"].item() == pytest.approx(0.1)

    first, second = loss_with_center(intact, torch.zeros(1, 256)), loss_with_center(intact, center)
    assert abs(first.loss.item() - second.loss.item()) > 1e-3
    assert torch.count_nonzero(intact.center) > 0


@pytest.mark.parametrize("off", [False, True])
def test_swav_without_sinkhorn_gives_unbalanced_codes(off, monkeypatch):
    from ssl_engine.methods import swav

    seen = {}
    real = swav.swapped_prediction_loss

    def spy(codes, scores, temperature):  # the real loss, its codes kept
        seen["codes"], seen["scores"] = codes, scores
        return real(codes, scores, temperature)

    monkeypatch.setattr(swav, "swapped_prediction_loss", spy)
    method = build("swav", off=off, num_prototypes=8)
    method(views(batch=32), step=0)
    for code, score in zip(seen["codes"], seen["scores"]):
        assert torch.allclose(code.sum(dim=1), torch.ones(32), atol=1e-5)
        share = code.sum(dim=0) / (32 / 8)  # each prototype's share of the batch, 1 when balanced
        if off:
            assert torch.allclose(code, torch.softmax(score.detach() / method.params.epsilon, dim=1), atol=1e-6)
            assert share.max() - share.min() > 1.0
        else:
            assert share.max() - share.min() < 0.5


def _gradient_of_first_image(method, batch_views):
    batch_views = [v.clone().requires_grad_(True) for v in batch_views]
    method(batch_views, step=0).loss.backward()
    return torch.cat([v.grad[0].flatten() for v in batch_views])


@pytest.mark.parametrize("name", ["simclr", "moco_v3"])
@pytest.mark.parametrize("off", [False, True])
def test_contrastive_methods_without_negatives_score_each_image_alone(name, off):
    method = build(name, off=off).eval()  # BatchNorm at its running statistics: no coupling through the batch
    first, others = views(seed=0), views(seed=1)
    changed = [torch.cat([a[:1], b[1:]]) for a, b in zip(first, others)]
    same = torch.allclose(_gradient_of_first_image(method, first), _gradient_of_first_image(method, changed), atol=1e-7)
    assert same == off


@pytest.mark.parametrize("off", [False, True])
def test_moco_v2_without_negatives_never_reads_its_queue(off):
    method = build("moco_v2", off=off).eval()
    losses = []
    for seed in (0, 1):
        method.queue.copy_(nn.functional.normalize(torch.randn(method.queue.shape,
                                                               generator=torch.Generator().manual_seed(seed)), dim=1))
        losses.append(method(views(), step=0).loss.item())
    assert math.isclose(*losses, rel_tol=1e-6) == off


# -- every method trains without its safeguard -------------------------------------------
@pytest.mark.parametrize("name", GUARDED)
def test_each_method_trains_without_its_safeguard(tmp_path, name):
    config = run_config(tmp_path, name, "train.epochs=1").without_safeguard().validate()
    trainer = Trainer(config)
    step_losses = []
    trainer.subscribe(lambda e: step_losses.append(e.loss) if isinstance(e, StepMetrics) else None,
                      EventRates(metrics_every_steps=1))
    summary = trainer.run()
    assert summary["steps"] == 2 and len(step_losses) == 2
    assert all(math.isfinite(loss) for loss in step_losses)
    assert ExperimentConfig.load(trainer.run_dir / "config.toml") == config
