"""The checks of 04_data.py's exercise: shard_loader."""
from __future__ import annotations

import copy
import importlib
import json
from pathlib import Path

import numpy as np
import torch

from exercises.checker.report import Wrong, call, check_returns, check_shape, describe, fresh_seed, run_seed


# --- shard_loader (04_data.py, section 5: ShardLoader.epoch_order, batch_windows, get_batch, state_dict) ------

def write_shard_folder(data_dir: Path, sizes: list[int], seed: int) -> list[np.ndarray]:
    """Shards of random uint16 tokens + a manifest.json, written the way 04 writes them (np.save of a 1-D
    uint16 array, one record per shard: index, file, split, tokens, sha256); shard 0 is the val split.
    Returns the train shards' arrays, in manifest order."""
    data_lib = importlib.import_module("04_data")
    gen = np.random.default_rng(seed)
    records, arrays = [], []
    for index, n in enumerate(sizes):
        tokens = gen.integers(0, 60_000, size=n).astype(np.uint16)     # random ids: every window is unique
        path = data_dir / data_lib.shard_name(index)
        np.save(path, tokens)
        records.append({"index": index, "file": path.name, "split": "val" if index == 0 else "train",
                        "tokens": n, "sha256": importlib.import_module("house.shards").sha256_file(path)})
        arrays.append(tokens)
    (data_dir / "manifest.json").write_text(json.dumps({"shards": records}), encoding="utf-8")
    return arrays[1:]


def find_window(shards: list[np.ndarray], row: np.ndarray) -> tuple[int, int] | None:
    """(shard, start) where `row` occurs as consecutive tokens, or None."""
    for s, tokens in enumerate(shards):
        if len(tokens) >= len(row):
            views = np.lib.stride_tricks.sliding_window_view(tokens.astype(np.int64), len(row))
            hits = np.nonzero((views == row).all(axis=1))[0]
            if len(hits):
                return s, int(hits[0])
    return None


LOADER_ORDER_HINT = ("the epoch's order: rng = np.random.default_rng(seed + epoch); rng.permutation(number of "
                     "shards) first, then rng.permutation(windows of s) for each shard s in that order; batch g "
                     "is windows g·B … g·B + B − 1 of that list")


def compare_batch(got, expected: tuple[torch.Tensor, torch.Tensor], shards: list[np.ndarray], T: int,
                  case: str, what: str = "get_batch") -> None:
    """Raise Wrong unless `got` is 04's (x, y); say which window each wrong row of x really is."""
    int64 = lambda t: isinstance(t, torch.Tensor) and t.dtype == torch.int64
    check_returns(got, [("x", "an int64 tensor (B, T)", int64), ("y", "an int64 tensor (B, T)", int64)], case, what)
    (x, y), (ex, ey) = got, expected
    check_shape(x, ex, case, "x")
    check_shape(y, ey, case, "y")
    if torch.equal(x, ey) and torch.equal(y, ex):
        raise Wrong(case, "x and y are swapped", "x is a window's first T tokens, y its last T (the next tokens)")
    for b in range(ex.shape[0]):
        if torch.equal(x[b], ex[b]):
            continue
        at, want = find_window(shards, x[b].numpy()), find_window(shards, ex[b].numpy())
        detail = (f"x[{b}] is not the window expected: expected tokens {want[1]}…{want[1] + T - 1} of train shard "
                  f"{want[0]}, got " + (f"tokens {at[1]}…{at[1] + T - 1} of train shard {at[0]}" if at else
                                        f"{x[b, :6].tolist()}…, which is not T consecutive tokens of any shard"))
        if at and at[1] % T and at[1] % (T + 1) == 0:
            hint = ("windows start at multiples of T (0, T, 2T, …): each is T + 1 tokens, so consecutive windows "
                    "share one token at their edges — yours start at multiples of T + 1")
        elif at and at[1] % T:
            hint = "a window starts at a multiple of T"
        else:
            hint = LOADER_ORDER_HINT
        raise Wrong(case, detail, hint)
    if not torch.equal(y, ey):
        b = int(torch.nonzero((y != ey).any(dim=1))[0])
        hint = ("y is x itself: y must be x shifted by one — y[b, t] is the token AFTER x[b, t]" if torch.equal(y[b], x[b])
                else "y is shifted the wrong way: y[b, t] is the token AFTER x[b, t] (the window's last T tokens), "
                "not the one before" if torch.equal(y[b, 1:], x[b, :-1]) else
                "y is the window's last T tokens: y[b, t] = the token after x[b, t]")
        raise Wrong(case, f"x is right; y[{b}]: expected {ey[b, :6].tolist()}…, got {y[b, :6].tolist()}…", hint)


def check_shard_loader(ex) -> None:
    import tempfile
    data_lib = importlib.import_module("04_data")
    cases = [([300, 160, 176, 193], 4, 16, 0, "3 train shards of 160, 176 and 193 tokens, B 4, T 16, seed 0"),
             ([50, 97], 3, 8, 7, "one train shard of 97 tokens (12 windows of 8 + 1), B 3, T 8, seed 7"),
             ([40, 10, 129, 64], 2, 16, 3, "train shards of 10 (no window: fewer than T + 1 tokens), 129 and 64 "
                                            "tokens, B 2, T 16, seed 3")]
    fresh = np.random.default_rng(fresh_seed("shard_loader"))
    sizes = [int(n) for n in fresh.integers(20, 120, size=int(fresh.integers(2, 4)))]
    cases.append(([30] + sizes, 2, 8, int(fresh.integers(0, 100)), f"train shards of {sizes} tokens, B 2, T 8, "
                  f"fresh seed {run_seed()}"))
    with tempfile.TemporaryDirectory() as tmp:
        for i, (sizes, B, T, seed, why) in enumerate(cases):
            data_dir = Path(tmp) / f"shards_{i}"
            data_dir.mkdir()
            shards = write_shard_folder(data_dir, sizes, seed=100 + i if i < 3 else fresh_seed("shards"))
            real = data_lib.ShardLoader(data_dir, "train", B, T, seed=seed)
            case = f"ShardLoader(<{why}>, B={B}, T={T}, seed={seed})"
            mine = call(ex.ShardLoader, case, [s.copy() for s in shards], B, T, seed)
            n = call(len, f"len({case})", mine)
            if n != len(real):
                raise Wrong(case, f"len(loader): expected {len(real)} batches per epoch, got {n}",
                            "a shard of n tokens holds (n − 1) // T windows (each needs T + 1 tokens); an epoch "
                            "has (all windows) // B batches")
            for epoch, batch in [(e, g) for e in (0, 1) for g in range(len(real))]:
                where = f"{case}.get_batch(epoch {epoch}, batch {batch})"
                compare_batch(call(mine.get_batch, where, epoch, batch), real.get_batch(epoch, batch), shards, T, where)
            check_resume(ex, real, shards, B, T, seed, case)


def check_resume(ex, real, shards: list[np.ndarray], B: int, T: int, seed: int, case: str) -> None:
    """Iterate both loaders past an epoch boundary, save the student's state, resume a fresh loader from it."""
    n_epoch = len(real)
    # stops where a repeated, a skipped and a restarted batch are three different batches come first
    for stop in dict.fromkeys(s for s in (n_epoch + 2, 3, n_epoch - 1, n_epoch, 1) if s > 0):
        real.load_state_dict({**real.state_dict(), "epoch": 0, "batch": 0})
        mine = call(ex.ShardLoader, case, [s.copy() for s in shards], B, T, seed)
        real_it, mine_it = iter(real), call(iter, case, mine)
        for k in range(stop):
            where = f"{case}: batch {k} of iterating from the start ({n_epoch} batches per epoch)"
            compare_batch(call(next, where, mine_it), next(real_it), shards, T, where, "next(iter(loader))")
        where = (f"{case}: iterate {stop} batches, state = loader.state_dict(), then a NEW loader, "
                 f"load_state_dict(state), next(iter(new))")
        state = copy.deepcopy(call(mine.state_dict, where))
        if not isinstance(state, dict):
            raise Wrong(where, f"state_dict should return a dict, got {describe(state)}")
        fresh = call(ex.ShardLoader, where, [s.copy() for s in shards], B, T, seed)
        call(fresh.load_state_dict, where, state)
        got = call(next, where, call(iter, where, fresh))
        expected = next(real_it)
        position = divmod(stop, n_epoch)             # (epoch, batch) of the batch that must come next
        same = lambda e, g: (isinstance(got, (tuple, list)) and len(got) == 2 and
                             all(torch.equal(a, b) for a, b in zip(got, real.get_batch(e, g))))
        slips = [(divmod(stop - 1, n_epoch), "the batch the run had ALREADY seen (the state was taken before "
                  "moving on): count a batch as used before yielding it"),
                 (divmod(stop + 1, n_epoch), "the batch AFTER the next one: one batch is skipped — the state "
                  "names the batch that next() returns next, and resuming starts there"),
                 ((position[0], 0), "the FIRST batch of the epoch: resuming restarted the epoch — keep the "
                  "saved batch index too"),
                 ((0, 0), "the first batch of epoch 0: the saved position was not used")]
        for (e, g), what in slips:
            if (e, g) != position and same(e, g) and not same(*position):   # (equal batches by chance: fine)
                raise Wrong(where, f"the resumed loader returned batch {g} of epoch {e}, expected batch "
                            f"{position[1]} of epoch {position[0]} (your state: {state})", f"it returned {what}")
        compare_batch(got, expected, shards, T, where, "next(iter(resumed loader))")


CHECKS = {"shard_loader": check_shard_loader}
