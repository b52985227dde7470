"""Exercise shard_loader — the training loader's windows, their seeded order, and resuming (lesson:
04_data.py, section 5: ShardLoader.epoch_order, batch_windows, get_batch, __iter__, state_dict). About 30 lines.

04 writes the token stream into shards (1-D uint16 arrays). Training reads them back as batches
(x, y) of shape (B, T), int64, where y is x shifted by one: y[b, t] is the token that follows x[b, t],
the one the model must predict. You write that loader for one process (no ranks), given the training
shards as arrays, in the order the manifest lists them.

Windows: a window is T + 1 consecutive tokens of ONE shard, starting at a multiple of T: 0, T, 2T, ...
Consecutive windows share one token at their edges (the last token of one is the first of the next), so
every token is predicted once. A shard of n tokens holds (n − 1) // T windows (a window needs T + 1 tokens;
the leftover tail is not used). x is a window's first T tokens, y its last T.

Order of an epoch (the same for every run with the same seed):
    rng = np.random.default_rng(seed + epoch)
    first the shards: shard_order = rng.permutation(number of shards);
    then, for each shard s in that order, that shard's windows: rng.permutation(windows of s)
    (draw them from the same rng, shard after shard, in shard order). Concatenated, this is the list of
    every window of the epoch. Batch g of the epoch is windows g·B … g·B + B − 1 of that list; an epoch
    has (total windows) // B batches (the remainder is skipped), and epoch e + 1 starts a new order.

Resuming: iterating the loader yields the batches of epoch 0 from batch 0, then of epoch 1, ... without
end, starting from the loader's position (epoch, batch). state_dict() returns {"epoch": e, "batch": g},
the position of the batch the NEXT call to next() will return; a fresh loader given that dict through
load_state_dict() must continue with exactly that batch (a run killed and restarted from a checkpoint
sees the batches it would have seen).

Shapes: shards a list of 1-D numpy arrays (uint16); B, T, seed ints → get_batch(epoch, batch) returns
(x, y), two (B, T) int64 torch tensors; len(loader) is the number of batches per epoch.

Check:     python -m exercises.check shard_loader   (builds a small shard folder with a manifest in a temp
           dir and compares every batch, len, and a resume across an epoch boundary with 04's ShardLoader)
Solution:  exercises/solutions/shard_loader.py
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch


class ShardLoader:
    """Batches (x, y) of shape (B, T), int64, y = x shifted by one, in a seeded order; resumable."""

    def __init__(self, shards: list[np.ndarray], B: int, T: int, seed: int = 0):
        raise NotImplementedError("TODO in exercises/shard_loader.py: ShardLoader — keep the shards and "
                                  "settings, count the windows and batches, start at (epoch 0, batch 0)")

    def __len__(self) -> int:
        """Batches per epoch."""
        raise NotImplementedError("TODO in exercises/shard_loader.py: __len__ — the number of batches per epoch")

    def get_batch(self, epoch: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) of batch `batch` in epoch `epoch`: two (B, T) int64 tensors."""
        raise NotImplementedError("TODO in exercises/shard_loader.py: get_batch — the windows of this batch "
                                  "in the epoch's seeded order (see the docstring)")

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless: epoch after epoch, starting from the current position."""
        raise NotImplementedError("TODO in exercises/shard_loader.py: __iter__ — yield the batches from the "
                                  "current position on, epoch after epoch")

    def state_dict(self) -> dict:
        """{"epoch": e, "batch": g}: the position of the batch the next next() returns."""
        raise NotImplementedError("TODO in exercises/shard_loader.py: state_dict")

    def load_state_dict(self, state: dict) -> None:
        """Continue from a saved position."""
        raise NotImplementedError("TODO in exercises/shard_loader.py: load_state_dict")
