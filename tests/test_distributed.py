"""gather_with_grad: two gloo processes on the CPU compute the loss and the gradient of one
process on the whole batch."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ssl_engine import distributed, losses

WORLD_SIZE = 2
GLOBAL_BATCH_SIZE = 8
DIMENSION = 5

LOSSES = {
    "info_nce": lambda z1, z2: losses.info_nce(z1, z2, 0.3),
    "barlow_twins": lambda z1, z2: losses.barlow_twins(z1, z2, 5e-3),
    "vicreg": lambda z1, z2: losses.vicreg(z1, z2),
}


def global_batch():
    generator = torch.Generator().manual_seed(1234)
    z1 = torch.randn(GLOBAL_BATCH_SIZE, DIMENSION, generator=generator)
    z2 = z1 + 0.5 * torch.randn(GLOBAL_BATCH_SIZE, DIMENSION, generator=generator)
    return z1, z2


def local_rows(rank):
    local_batch_size = GLOBAL_BATCH_SIZE // WORLD_SIZE
    return slice(rank * local_batch_size, (rank + 1) * local_batch_size)


def run_rank(rank, init_method, results_folder):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=WORLD_SIZE)
    try:
        z1, z2 = global_batch()
        results = {
            "rank": distributed.rank(),
            "world_size": distributed.world_size(),
            "is_distributed": distributed.is_distributed(),
            "is_main_process": distributed.is_main_process(),
            "gathered_no_grad": distributed.gather_no_grad(z1[local_rows(rank)]),
            "mean_of_ranks": distributed.all_reduce_mean(torch.tensor([float(rank)])),
        }
        for name, loss_function in LOSSES.items():
            local_z1 = z1[local_rows(rank)].clone().requires_grad_()
            local_z2 = z2[local_rows(rank)].clone().requires_grad_()
            gathered_z1 = distributed.gather_with_grad(local_z1)
            gathered_z2 = distributed.gather_with_grad(local_z2)
            loss = loss_function(gathered_z1, gathered_z2)
            loss.backward()
            results[name] = {
                "loss": loss.detach(),
                # what DDP does to the parameter gradients: average over the ranks
                "grad_z1": local_z1.grad / WORLD_SIZE,
                "grad_z2": local_z2.grad / WORLD_SIZE,
            }
        torch.save(results, results_folder / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory):
    if not dist.is_available():
        pytest.skip("torch.distributed is not available in this torch build")
    if not dist.is_gloo_available():
        pytest.skip("the gloo backend is not available in this torch build")
    folder = tmp_path_factory.mktemp("gather")
    init_method = f"file://{folder / 'rendezvous'}"
    mp.spawn(run_rank, args=(init_method, folder), nprocs=WORLD_SIZE, join=True)
    return [torch.load(folder / f"rank{rank}.pt") for rank in range(WORLD_SIZE)]


def test_rank_queries_inside_a_process_group(rank_results):
    for rank, results in enumerate(rank_results):
        assert results["rank"] == rank
        assert results["world_size"] == WORLD_SIZE
        assert results["is_distributed"]
        assert results["is_main_process"] == (rank == 0)


def test_gather_no_grad_and_all_reduce_mean(rank_results):
    z1, _ = global_batch()
    for results in rank_results:
        torch.testing.assert_close(results["gathered_no_grad"], z1)
        torch.testing.assert_close(results["mean_of_ranks"], torch.tensor([0.5]))


@pytest.mark.parametrize("name", list(LOSSES))
def test_gathered_loss_and_gradients_equal_the_single_process_ones(rank_results, name):
    z1, z2 = global_batch()
    z1.requires_grad_()
    z2.requires_grad_()
    single_process_loss = LOSSES[name](z1, z2)
    single_process_loss.backward()
    for rank, results in enumerate(rank_results):
        torch.testing.assert_close(results[name]["loss"], single_process_loss.detach())
        torch.testing.assert_close(results[name]["grad_z1"], z1.grad[local_rows(rank)])
        torch.testing.assert_close(results[name]["grad_z2"], z2.grad[local_rows(rank)])


def test_helpers_without_a_process_group():
    assert not distributed.is_distributed()
    assert distributed.rank() == 0
    assert distributed.world_size() == 1
    assert distributed.is_main_process()
    x = torch.randn(3, 2, requires_grad=True)
    assert distributed.gather_with_grad(x) is x
    gathered = distributed.gather_no_grad(x)
    assert not gathered.requires_grad
    torch.testing.assert_close(gathered, x.detach())
    mean = distributed.all_reduce_mean(x)
    assert not mean.requires_grad
    torch.testing.assert_close(mean, x.detach())
