"""Exercise fp8_quantize — FP8 row-wise scaling and an FP8 matrix product (02's moe_impl "grouped_fp8": fast/fp8.py,
quantize_rows and scaled_grouped_mm_reference).

A float8 e4m3 number has 4 exponent bits and 3 mantissa bits: it reaches ±448 and keeps 4 significant
bits. Before rounding a row of activations or weights to float8, divide it by a scale so that its largest
|value| lands at most at 448:

    amax  = max |x| over the row (the last dim)                        # (...,)
    scale = 2 ** ceil(log2(amax / 448))     a power of two, rounded UP   # (...,), float32
    q     = (x / scale) rounded to float8_e4m3fn                         # (..., K), never above 448

Rounding the scale UP to a power of two does two things: x / scale never exceeds 448 (so nothing overflows),
and multiplying q back by the scale is exact. A row of zeros would give log2(0) = -inf: keep amax at least
a tiny number (02 uses 1e-30) so that the row stays zeros.

Example: the row [100, 3, 0.5] has amax 100; 100/448 = 0.223 → scale 2^-2 = 0.25 → x/scale = [400, 12, 2];
float8 has no 400 (its neighbours are 384 and 416; the tie goes to the even one): q = [384, 12, 2], which
means 96, 3, 0.5.

Then an FP8 matrix product out = x @ wᵀ, as the expert GEMMs compute it (one expert, no groups):

    xq, x_scale = quantize_rows(x)        # x (M, K): one scale per row of x
    wq, w_scale = quantize_rows(w)        # w (N, K): one scale per row of w (= per output column)
    out = (xq @ wqᵀ, computed in float32) · x_scale[i] · w_scale[j]      # (M, N) float32

The scales run along K, the dimension the product sums over, so they can be applied to the result.

Shapes: quantize_rows(x (..., K) float) → (q (..., K) torch.float8_e4m3fn, scale (...,) float32);
fp8_matmul(x (M, K), w (N, K)) → (M, N) float32.

Check:     python -m exercises.check fp8_quantize   (compares with fast/fp8.py's quantize_rows and scaled_grouped_mm_reference)
Solution:  exercises/solutions/fp8_quantize.py
"""
from __future__ import annotations

import torch

FP8_MAX = 448.0


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (..., K) → (q (..., K) float8_e4m3fn, scale (...,) float32) with x ≈ q · scale."""
    raise NotImplementedError("TODO in exercises/fp8_quantize.py: amax per row, scale = 2^ceil(log2(amax / 448)), "
                              "q = (x / scale) as torch.float8_e4m3fn")


def fp8_matmul(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x (M, K), w (N, K) → x @ wᵀ (M, N) float32 computed from the FP8 rows of x and w and their scales."""
    raise NotImplementedError("TODO in exercises/fp8_quantize.py: quantize_rows both, multiply the float8 values "
                              "as float32, then scale row i by x_scale[i] and column j by w_scale[j]")
