"""Muon's step with one Newton–Schulz call per shape: the fast twin of 03_muon.py's per-parameter loop.

What it speeds up: 03's plain `Muon(batched=False)` runs `muon_update_` once per parameter (momentum, then
`newton_schulz`, then the step). A small matrix's Newton–Schulz is 15 tiny matmuls whose launches cost more
than their arithmetic on a GPU; linnet has 12 same-shaped c_attn, c_proj and router matrices and 12
same-shaped stacks of each expert tensor. Here every group of same-shaped parameters shares ONE call on a
stacked (n, A, B) — or (n, E, A, B) — bf16 tensor: 12 c_attn → one (12, 1280, 768) call, the 12 layers' w_v
stacks → one (12, 8, 4096, 768) call; linnet's 60 Muon tensors take 5 calls instead of 60.

The plain twin it must equal: 03's `muon_update_` (same maths, same state_dict; only the launches differ).
tests/test_03_muon.py checks that both give the same weights and momentum buffers, and that a checkpoint of
one resumes on the other. 03 chooses with an ordinary keyword: `Muon(..., batched=True)` (the default).

Where its measured gain is written: BENCHMARKS.md, "Throughput II, first levers: batched Muon and a faster
HellaSwag scorer" (the optimizer step on an H200) and "CPU figures" (where it does not pay).

It takes the per-parameter maths as callables (03's `momentum_direction_`, `orthogonalize`,
`orthogonal_step_`), so the arithmetic lives in one place, the lesson.
"""
from __future__ import annotations

import torch


def group_by_shape(params: list) -> list[list[int]]:
    """Indices of `params` grouped by (shape, dtype, device), in first-seen order.

    >>> group_by_shape([torch.empty(4, 2), torch.empty(2, 4), torch.empty(4, 2)])
    [[0, 2], [1]]"""
    groups = {}
    for i, p in enumerate(params):
        groups.setdefault((tuple(p.shape), p.dtype, p.device), []).append(i)
    return list(groups.values())


def muon_update_batched_(params: list, bufs: list, group: dict, *, direction_, orthogonalize, step_) -> None:
    """03's `muon_update_(p, p.grad, buf, group)` for every p, with one `orthogonalize` call per shape.

    `direction_(grad, buf, group)` updates the momentum buffer in place and returns the matrix to
    orthogonalise; `orthogonalize(X, group)` is Newton–Schulz on a (..., A, B) batch; `step_(p, O, group)`
    applies weight decay and the step along O. Each direction is written straight into its slot of a bf16
    stack — the same rounding as the `G.bfloat16()` that newton_schulz starts with — so the stack costs 2
    bytes per element and no fp32 copy of all the directions is ever held. (Peak extra memory: newton_schulz's
    few bf16 copies of the largest shape group, 12 × linnet's w_v: ≈ 0.6 GB each.)"""
    for same_shape in group_by_shape(params):
        first = params[same_shape[0]]
        X = torch.empty(len(same_shape), *first.shape, dtype=torch.bfloat16, device=first.device)  # (n, [E,] A, B)
        for slot, i in enumerate(same_shape):
            X[slot].copy_(direction_(params[i].grad, bufs[i], group))
        O = orthogonalize(X, group)                                                           # (n, [E,] A, B)
        for slot, i in enumerate(same_shape):
            step_(params[i], O[slot], group)
