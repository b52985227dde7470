"""Worked solution for exercises/shard_loader.py (lesson: 04_data.py, section 5)."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch


class ShardLoader:
    """Batches (x, y) of shape (B, T), int64, y = x shifted by one, in a seeded order; resumable."""

    def __init__(self, shards: list[np.ndarray], B: int, T: int, seed: int = 0):
        self.shards, self.B, self.T, self.seed = shards, B, T, seed
        self.windows_per_shard = [max(0, (len(s) - 1) // T) for s in shards]    # a window needs T + 1 tokens
        self.batches_per_epoch = sum(self.windows_per_shard) // B
        self.epoch, self.batch = 0, 0

    def __len__(self) -> int:
        """Batches per epoch."""
        return self.batches_per_epoch

    def epoch_order(self, epoch: int) -> np.ndarray:
        """(n_windows, 2) rows of (shard, start token) in the order of `epoch`."""
        rng = np.random.default_rng(self.seed + epoch)
        rows = []
        for s in rng.permutation(len(self.shards)):          # the shards first, then each one's windows
            n = self.windows_per_shard[s]
            rows.append(np.stack([np.full(n, s), rng.permutation(n) * self.T], axis=1))
        return np.concatenate(rows)

    def get_batch(self, epoch: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) of batch `batch` in epoch `epoch`: two (B, T) int64 tensors."""
        rows = self.epoch_order(epoch)[batch * self.B:(batch + 1) * self.B]
        windows = np.stack([self.shards[s][start:start + self.T + 1] for s, start in rows]).astype(np.int64)
        windows = torch.from_numpy(windows)                                      # (B, T + 1)
        return windows[:, :-1], windows[:, 1:]               # y[b, t] is the token after x[b, t]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless: epoch after epoch, starting from the current position."""
        while True:
            while self.batch < self.batches_per_epoch:
                x, y = self.get_batch(self.epoch, self.batch)
                self.batch += 1                              # before yielding: the state names the NEXT batch
                yield x, y
            self.epoch, self.batch = self.epoch + 1, 0

    def state_dict(self) -> dict:
        """{"epoch": e, "batch": g}: the position of the batch the next next() returns."""
        return {"epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a saved position."""
        self.epoch, self.batch = state["epoch"], state["batch"]
