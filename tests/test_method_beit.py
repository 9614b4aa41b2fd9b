"""BEiT: the loss against a hand computation of token cross-entropy on the masked patches, the
k-means tokenizer (built once from the training set's patches, kept in checkpoints), the token
usage histogram and the pictures. What every method keeps (a ViT only, the paper's recipe, an
exact resume, masks) is in test_method_contract.py."""

import dataclasses
import math

import pytest
import torch

from ssl_engine import losses
from ssl_engine.errors import ConfigError
from ssl_engine.methods.beit import PATCHES_PER_IMAGE, BEiT, BEiTParams, _PatchSample
from ssl_engine.models.vit import VisionTransformer, patchify


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


def test_gradients_reach_the_head_and_the_tokenizer_has_nothing_to_train():
    method = fitted_beit()
    method([images()], step=0).loss.backward()
    assert method.head.weight.grad is not None and method.head.weight.grad.abs().sum() > 0
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


def test_a_run_builds_its_codebook_once_and_a_resumed_run_keeps_it(method_runs):
    # tests.method_runs: 20 training images of 16 px, 4 px patches, a codebook of 16 tokens
    run = method_runs.resumed("beit")
    saved = run.straight_state()["method"]
    assert saved["tokenizer.codebook"].shape == (16, 48) and bool(saved["tokenizer.fitted"])
    assert saved["tokenizer.codebook"].abs().sum() > 0 and saved["head.weight"].shape == (16, 192)
    assert run.straight.dataset_passes == 1  # the training set's patches sampled once, in epoch 0
    assert run.resumed.dataset_passes == 0   # the resumed run took the codebook from the checkpoint
    at_stop = run.stopped_state()["method"]["tokenizer.codebook"]
    assert torch.equal(at_stop, run.resumed_state()["method"]["tokenizer.codebook"])
