"""Which threads run PyTorch's parallel CPU kernels: the training thread, not the UI thread.

PyTorch's CPU kernels run on OpenMP, and each thread that runs a parallel op gets its own team
of OpenMP threads. Measured here (2 cores, libgomp): once the UI thread has run one parallel op
(the augmentation preview does), small ops in the training thread run 2-3x slower, and a
training step with batched augmentation about 17% slower, than with the UI thread kept serial.
So the window makes the UI thread serial at start, and each worker thread asks for all cores.
"""

from __future__ import annotations

import torch

_CORES = torch.get_num_threads()  # what PyTorch chose for this machine, before any change


def keep_this_thread_serial() -> None:
    """For the UI thread: its own tensor work (8 preview images) runs on one core."""
    torch.set_num_threads(1)


def use_all_cores_in_this_thread() -> None:
    """For a worker thread (training, loading data): every core PyTorch would use by default."""
    torch.set_num_threads(_CORES)
