"""BatchNorm over the global batch: two gloo processes, each with half the batch, give the
outputs, gradients and running statistics of one process's BatchNorm on the whole batch; the
swap keeps the parameters and skips the submodules a method keeps per process."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from ssl_engine import distributed
from ssl_engine.models.batch_norm import GlobalBatchNorm, synchronise_batch_norm

WORLD_SIZE = 2
BATCH = 12


def network():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(6, 5, bias=False), nn.BatchNorm1d(5, momentum=None), nn.BatchNorm1d(5, affine=False))


def batch():
    generator = torch.Generator().manual_seed(1)
    # a mean far from 0, so that a per-process mean would differ visibly from the global one
    return 3 + torch.randn(BATCH, 3, 8, 8, generator=generator), torch.randn(BATCH, 5, generator=generator)


def loss_of(outputs, targets):
    return ((distributed.gather_with_grad(outputs) - targets) ** 3).mean()


def run_rank(rank, init_method, folder):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=WORLD_SIZE)
    try:
        model = synchronise_batch_norm(network(), torch.device("cpu"))
        ddp = nn.parallel.DistributedDataParallel(model)
        images, targets = batch()
        rows = slice(rank * BATCH // WORLD_SIZE, (rank + 1) * BATCH // WORLD_SIZE)
        outputs = ddp(images[rows])
        loss_of(outputs, targets).backward()
        torch.save({"outputs": distributed.gather_no_grad(outputs),
                    "grads": {n: p.grad for n, p in model.named_parameters()},
                    "buffers": dict(model.named_buffers())}, folder / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory):
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("this torch build has no gloo backend")
    folder = tmp_path_factory.mktemp("batch_norm")
    mp.spawn(run_rank, args=(f"file://{folder / 'rendezvous'}", folder), nprocs=WORLD_SIZE, join=True)
    return [torch.load(folder / f"rank{rank}.pt") for rank in range(WORLD_SIZE)]


def test_two_processes_normalise_as_one(rank_results):
    model = network()
    images, targets = batch()
    outputs = model(images)
    loss_of(outputs, targets).backward()
    for results in rank_results:
        torch.testing.assert_close(results["outputs"], outputs.detach(), rtol=1e-5, atol=1e-5)
        for name, parameter in model.named_parameters():
            if name in ("0.bias",):  # a bias right before a BatchNorm: its exact gradient is 0
                torch.testing.assert_close(results["grads"][name], parameter.grad, rtol=0, atol=1e-5)
                continue
            # DDP averages over the processes; gather_with_grad's backward scales to match
            torch.testing.assert_close(results["grads"][name], parameter.grad, rtol=1e-4, atol=1e-6)
        for name, buffer in model.named_buffers():
            torch.testing.assert_close(results["buffers"][name], buffer, rtol=1e-5, atol=1e-6)


def test_per_process_statistics_would_differ(rank_results):
    """The check above can fail: one process normalising half the batch alone is far off."""
    model = network()
    images, _ = batch()
    whole = model(images).detach()
    halves = torch.cat([network()(part) for part in images.chunk(WORLD_SIZE)]).detach()
    assert (halves - whole).abs().max() > 1e-2


class _Method(nn.Module):
    local_batch_norm = ("key",)

    def __init__(self):
        super().__init__()
        self.online = network()
        self.key = network()


@pytest.mark.parametrize("device, kind", [("cpu", GlobalBatchNorm), ("cuda", nn.SyncBatchNorm)])
def test_the_swap_keeps_parameters_and_statistics_and_skips_local_modules(device, kind):
    method = _Method()
    method.online[1].running_mean.fill_(0.25)
    method.eval()
    weight, running_mean = method.online[1].weight, method.online[1].running_mean
    state = {k: v.clone() for k, v in method.state_dict().items()}
    synchronise_batch_norm(method, torch.device(device))  # builds modules only: no GPU needed
    assert type(method.online[1]) is kind and type(method.online[6]) is kind and type(method.online[7]) is kind
    assert type(method.key[1]) is nn.BatchNorm2d and type(method.key[6]) is nn.BatchNorm1d
    assert method.online[1].weight is weight and method.online[1].running_mean is running_mean
    assert not method.online[1].training and method.online[6].momentum is None
    assert method.online[7].weight is None
    assert method.state_dict().keys() == state.keys()
    for key, value in method.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_in_one_process_it_is_a_plain_batch_norm():
    torch.manual_seed(3)
    plain = nn.BatchNorm2d(4)
    swapped = synchronise_batch_norm(nn.Sequential(nn.BatchNorm2d(4)), torch.device("cpu"))[0]
    x = torch.randn(6, 4, 5, 5) * 2 + 1
    torch.testing.assert_close(swapped(x), plain(x))
    torch.testing.assert_close(swapped.running_var, plain.running_var)
