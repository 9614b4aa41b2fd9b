"""BEiT: the loss against a hand computation of token cross-entropy on the masked patches, the
k-means tokenizer (built once from the training set's patches, kept in checkpoints), the token
usage histogram, the pictures, the paper's recipe, and a short ViT run that resumes exactly."""

import dataclasses
import math

import pytest
import torch

from ssl_engine import losses
from ssl_engine.augment.presets import preset_views
from ssl_engine.config import ExperimentConfig
from ssl_engine.errors import ConfigError
from ssl_engine.methods.beit import PATCHES_PER_IMAGE, BEiT, BEiTParams, _PatchSample
from ssl_engine.models.backbones import build_backbone
from ssl_engine.models.vit import VisionTransformer, patchify
from ssl_engine.train import Trainer
from ssl_engine.checkpoint import load_checkpoint
from tests.helpers import assert_same_state, stopped_run, tiny_config


def small_beit(image_size=16, **changes):
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=image_size, patch_size=4, dim=24, depth=1, heads=2, name="vit_tiny")
    return BEiT(vit, dataclasses.replace(BEiTParams(codebook_size=8), **changes), total_steps=100)


def images(n=6, size=16, seed=1):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def dataset_features(training_images):
    """What the Trainer hands before_epoch: `encoder` run on the (normalised) training set."""
    return lambda encoder=None: encoder(training_images)


def fitted_beit(**changes):
    method = small_beit(**changes)
    method.before_epoch(0, dataset_features(images(n=40, seed=2)))
    return method


def hand_distances(x, codebook, normalize=True):
    """(N, P, K) explicit Euclidean distances, in float64, of each 4 px patch to each codebook entry."""
    patches = patchify(x, 4).double()
    if normalize:
        patches = (patches - patches.mean(dim=-1, keepdim=True)) / (patches.var(dim=-1, keepdim=True) + 1e-6).sqrt()
    return torch.cdist(patches, codebook.double().unsqueeze(0).expand(len(x), -1, -1))


def assert_nearest_tokens(tokens, x, codebook, normalize=True):
    """`tokens` (N, P) name each patch's nearest codebook entry: the hand computation's choice,
    or one as near up to float32 rounding (a near-tie that another machine's kernels, or the
    tokenizer's |a|^2 - 2ab + |b|^2 form, may break the other way)."""
    distances = hand_distances(x, codebook, normalize)
    assert tokens.shape == distances.shape[:2] and tokens.dtype == torch.long
    chosen = distances.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    assert (chosen <= distances.min(dim=-1).values * (1 + 1e-5) + 1e-6).all()


def test_beit_needs_a_vision_transformer():
    with pytest.raises(ConfigError, match="beit masks ViT patches: backbone.name must be vit_tiny or vit_small"):
        BEiT(build_backbone("small_cnn", image_size=16), BEiTParams(), total_steps=10)


def test_masked_token_cross_entropy_is_the_mean_over_masked_patches_only():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 7, generator=generator)
    tokens = torch.randint(0, 7, (3, 5), generator=generator)
    mask = torch.rand(3, 5, generator=generator) < 0.5
    mask[0, 0] = True
    terms = [-math.log(math.exp(logits[i, j, tokens[i, j]]) / sum(math.exp(v) for v in logits[i, j].tolist()))
             for i in range(3) for j in range(5) if mask[i, j]]
    loss = losses.masked_token_cross_entropy(logits, tokens, mask)
    assert loss.item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)
    # visible patches' scores and tokens do not count
    changed_logits, changed_tokens = logits.clone(), tokens.clone()
    changed_logits[~mask] = torch.randn(int((~mask).sum()), 7)
    changed_tokens[~mask] = (tokens[~mask] + 1) % 7
    assert losses.masked_token_cross_entropy(changed_logits, changed_tokens, mask).item() == pytest.approx(loss.item())


def test_loss_is_the_cross_entropy_of_the_tokens_of_the_masked_patches():
    method = fitted_beit()
    x = images()
    output = method([x], step=3)
    mask = method.step_masks(x, 3)  # the step's masks: the same draw forward made
    assert mask.shape == (6, 16) and (mask.sum(dim=1) == 6).all()  # round(0.4 x 16) of each row, in blocks
    tokens = method.tokenizer(x)
    assert_nearest_tokens(tokens, x, method.tokenizer.codebook)
    with torch.no_grad():
        encoded = method.backbone.tokens(x, mask=mask)[:, 1:]
        logits = encoded @ method.head.weight.T + method.head.bias                    # (6, 16, 8)
        log_p = logits.log_softmax(dim=-1)
        expected = torch.stack([-log_p[i, j, tokens[i, j]] for i in range(6) for j in range(16) if mask[i, j]]).mean()
        accuracy = (logits.argmax(dim=-1) == tokens)[mask].float().mean()
    assert output.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert output.terms["token cross-entropy"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert output.terms["token accuracy"].item() == pytest.approx(accuracy.item())
    assert output.embeddings is None and method.matrices(output) == {}
    # a masked patch's pixels reach only its target, never the encoder
    i, j = [int(v) for v in mask.nonzero()[0]]
    changed = x.clone()
    changed[i, :, 4 * (j // 4):4 * (j // 4) + 4, 4 * (j % 4):4 * (j % 4) + 4] += 5.0
    with torch.no_grad():
        assert torch.equal(method.backbone.embed(changed, mask=mask), method.backbone.embed(x, mask=mask))


def test_token_usage_counts_the_targets_of_the_masked_patches():
    method = fitted_beit()
    x = images()
    output = method([x], step=0)
    usage = method.histograms(output)["token usage"]
    mask, tokens = method.step_masks(x, 0), method.tokenizer(x)
    assert_nearest_tokens(tokens, x, method.tokenizer.codebook)
    assert usage.shape == (8,) and usage.sum().item() == mask.sum().item() == 36
    assert torch.equal(usage, torch.bincount(tokens[mask], minlength=8).float())
    assert 0 <= int(method.tokenizer(x).min()) and int(method.tokenizer(x).max()) < 8  # ids in range


def test_the_codebook_is_k_means_of_sampled_training_patches_built_once():
    training = images(n=30, size=32, seed=2)
    method = small_beit(image_size=32)
    assert not method.tokenizer.fitted and method.tokenizer.codebook.abs().sum() == 0
    with pytest.raises(RuntimeError, match="needs its codebook"):
        method([training[:4]], step=0)
    # the sample: PATCHES_PER_IMAGE distinct patches of each image's 64
    sample = _PatchSample(method.tokenizer, torch.Generator().manual_seed(0))(training)
    assert sample.shape == (30, PATCHES_PER_IMAGE * 48)
    every = method.tokenizer.descriptors(training)                                   # (30, 64, 48)
    for image, chosen in zip(every, sample.reshape(30, PATCHES_PER_IMAGE, 48)):
        found = [int(torch.cdist(patch[None], image).argmin()) for patch in chosen]
        assert len(set(found)) == PATCHES_PER_IMAGE and torch.allclose(image[found], chosen)

    calls = []

    def features(encoder=None):
        calls.append(encoder)
        return encoder(training)

    method.before_epoch(0, features)
    codebook = method.tokenizer.codebook.clone()
    assert method.tokenizer.fitted and len(calls) == 1 and isinstance(calls[0], _PatchSample)
    assert codebook.shape == (8, 48) and torch.isfinite(codebook).all() and codebook.abs().sum() > 0
    # standardised patches: k-means centroids are means of standardised descriptors, so each is
    # near zero mean (exactly zero, as every descriptor's mean is)
    assert codebook.mean(dim=1).abs().max() < 1e-4
    method.before_epoch(1, features)  # kept: no second clustering
    assert len(calls) == 1 and torch.equal(method.tokenizer.codebook, codebook)
    # the same seed (torch's at construction) builds the same codebook
    again = small_beit(image_size=32)
    again.before_epoch(0, features)
    assert torch.equal(again.tokenizer.codebook, codebook)


def test_a_codebook_larger_than_the_sample_is_a_config_problem():
    method = small_beit(codebook_size=50)
    with pytest.raises(ConfigError, match=r"method.codebook_size \(50\) must be at most the number of training "
                                          r"patches sampled for the tokenizer \(48"):
        method.before_epoch(0, dataset_features(images(n=3)))


def test_gradients_reach_the_mask_token_the_encoder_and_the_head():
    method = fitted_beit()
    method([images()], step=0).loss.backward()
    for parameter in (method.backbone.mask_token, method.backbone.patch_embed.weight, method.head.weight):
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0
    assert list(method.tokenizer.parameters()) == []  # the tokenizer is fixed: buffers only


@pytest.mark.parametrize("normalize", [True, False])
def test_pictures_show_the_mask_the_tokens_and_the_tokenizers_view(normalize):
    method = fitted_beit(normalize_patches=normalize)
    x = images(n=3)
    pictures = method.pictures(x)
    assert set(pictures) == {"mask", "tokens", "token_reconstruction"}
    assert pictures["mask"].shape == pictures["tokens"].shape == (3, 1, 16, 16)
    assert pictures["token_reconstruction"].shape == (3, 3, 16, 16)
    mask = pictures["mask"]
    assert set(mask.unique().tolist()) == {0.0, 1.0} and mask.mean() == pytest.approx(6 / 16)
    assert torch.equal(method.pictures(x)["mask"], mask)  # a fixed seed: the same masks every call
    tokens = method.tokenizer(x)
    assert_nearest_tokens(tokens, x, method.tokenizer.codebook, normalize)
    assert torch.allclose(pictures["tokens"][:, 0, ::4, ::4].reshape(3, 16), tokens / 7)
    codebook = method.tokenizer.codebook
    patches = patchify(x, 4)
    entries = codebook[tokens]
    if normalize:  # back to each true patch's mean and deviation
        entries = entries * (patches.var(dim=-1, keepdim=True) + 1e-6).sqrt() + patches.mean(dim=-1, keepdim=True)
    assert torch.allclose(patchify(pictures["token_reconstruction"], 4), entries, atol=1e-5)
    # before the codebook exists there is only the mask
    assert set(small_beit().pictures(x)) == {"mask"}


def test_the_recipe_is_the_papers():
    config = ExperimentConfig.for_method("beit")
    assert config.backbone.name == "vit_tiny" and config.method.params == BEiTParams()
    assert (BEiTParams().mask_ratio, BEiTParams().codebook_size) == (0.4, 512)
    (view,) = config.augment.views
    assert view == preset_views("beit", 32)[0]
    assert (view.crop_scale_min, view.crop_scale_max, view.flip_p) == (0.08, 1.0, 0.5)
    assert (view.jitter_p, view.brightness, view.contrast, view.saturation, view.hue) == (1.0, 0.4, 0.4, 0.4, 0.0)
    assert view.grayscale_p == view.blur_p == view.solarize_p == 0
    optim = config.optim
    assert (optim.name, optim.lr, optim.weight_decay, optim.momentum, optim.warmup_epochs, optim.grad_clip) == \
        ("adamw", 1.5e-3 / 8, 0.05, 0.9, 10.0, 3.0)
    assert optim.min_lr_ratio == pytest.approx(1e-5 / 1.5e-3)


def test_trains_on_vit_tiny_and_a_stopped_run_resumes_with_the_same_codebook(tmp_path):
    # 20 training images in batches of 10: 2 steps an epoch, ViT-tiny with 8 px patches at 32 px,
    # a codebook of 16 tokens from the 20 x 16 training patches
    def config(folder):
        return tiny_config(tmp_path / folder, "beit", "train.eval_subset=16", "data.test_fraction=0.8",
                           epochs=2, count=100, batch=10)

    straight = Trainer(config("a"))
    summary = straight.run()
    assert summary["steps"] == 4 and math.isfinite(summary["final_loss"])
    saved = load_checkpoint(straight.run_dir)["method"]
    assert saved["tokenizer.codebook"].shape == (16, 192) and bool(saved["tokenizer.fitted"])
    assert saved["tokenizer.codebook"].abs().sum() > 0 and saved["head.weight"].shape == (16, 192)

    first, summary = stopped_run(config("b"))
    assert summary["steps"] == 2
    at_stop = load_checkpoint(first.run_dir)["method"]["tokenizer.codebook"]
    resumed = Trainer(config("b"), resume=first.run_dir)
    assert resumed.run()["steps"] == 4
    assert torch.equal(at_stop, load_checkpoint(first.run_dir)["method"]["tokenizer.codebook"])
    assert_same_state(saved, load_checkpoint(first.run_dir)["method"])
