"""A relative position bias shared by all of a ViT's blocks, as in BEiT (Bao et al., ICLR 2022)
and the SimMIM code's ViT (Xie et al., CVPR 2022), which use it instead of absolute embeddings.

Each head learns one scalar per 2-D offset between two patches, (2G - 1)^2 of them on a G x G
grid, plus three for the class token (class -> patch, patch -> class, class -> class). The scalar
is added to the attention logit of every pair of tokens at that offset, in every block:

    attention = softmax(q k^T / sqrt(d) + B),   B[h, i, j] = table[index(i, j), h]

The table starts at zero, as in both codes, so a fresh network attends as if it had no positions.
On another grid (crops of another size) offsets beyond the table's are clamped to its edge.
"""

from __future__ import annotations

import torch
from torch import nn


class RelativePositionBias(nn.Module):
    def __init__(self, grid: int, heads: int):
        super().__init__()
        self.grid = grid
        self.table = nn.Parameter(torch.zeros((2 * grid - 1) ** 2 + 3, heads))
        self.register_buffer("index", relative_position_index(grid, grid), persistent=False)

    def forward(self, grid: int, keep: torch.Tensor | None = None) -> torch.Tensor:
        """The attention bias for a `grid` x `grid` image: (1, heads, 1 + P, 1 + P), or with
        `keep` (N, K) patch indices (the tokens `VisionTransformer.embed` keeps) (N, heads, 1 + K, 1 + K)."""
        index = self.index if grid == self.grid else relative_position_index(grid, self.grid).to(self.table.device)
        if keep is None:
            return self.table[index].permute(2, 0, 1).unsqueeze(0)
        tokens = torch.cat([keep.new_zeros(len(keep), 1), keep + 1], dim=1)          # class token first
        index = index[tokens.unsqueeze(2), tokens.unsqueeze(1)]                       # (N, 1 + K, 1 + K)
        return self.table[index].permute(0, 3, 1, 2)


def relative_position_index(grid: int, table_grid: int) -> torch.Tensor:
    """(1 + P, 1 + P) long: row i, column j is the table row of query token i attending to key
    token j (token 0 the class token, then the patches row by row) on a `grid` x `grid` image,
    for a table made for `table_grid`."""
    rows, columns = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    rows, columns = rows.flatten(), columns.flatten()
    reach = table_grid - 1
    down = (rows[:, None] - rows[None, :]).clamp(-reach, reach) + reach
    across = (columns[:, None] - columns[None, :]).clamp(-reach, reach) + reach
    offsets = (2 * table_grid - 1) ** 2
    index = torch.full((1 + grid * grid, 1 + grid * grid), offsets + 2, dtype=torch.long)  # class -> class
    index[1:, 1:] = down * (2 * table_grid - 1) + across
    index[0, 1:] = offsets        # class -> patch
    index[1:, 0] = offsets + 1    # patch -> class
    return index
