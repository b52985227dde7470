"""Exercise rope — rotary position embedding, linnet's way (lesson: 02_model.py, section 3, RotaryEmbedding).

RoPE tells attention where a token is by ROTATING its query and key vectors: the dims are grouped
into head_dim/2 pairs, and the pair number i at position p is turned by the angle

    angle[p, i] = p · inv_freq[i],      inv_freq[i] = base ** (-2i / head_dim),   i = 0 .. head_dim/2 - 1

(base 50000 in linnet: pair 0 turns 1 radian per token, the last pair about once every 220k tokens).
Since q·k then depends only on the DIFFERENCE of the two positions, attention sees relative positions.

linnet uses the "rotate half" convention: pair i is (dim i, dim i + head_dim/2) — NOT neighbours
(i, i+1) as in the RoPE paper. With x1 = x[..., :hd/2] and x2 = x[..., hd/2:] (angles broadcast):

    out[..., :hd/2] = x1·cos(angle) - x2·sin(angle)
    out[..., hd/2:] = x2·cos(angle) + x1·sin(angle)

Shapes: x is (B, H, T, head_dim) — batch, heads, time, dims; token t sits at position offset + t
(offset > 0 when generating with a KV cache: the new token comes after the cached ones). Return a
tensor of the same shape and dtype. Compute the angles in float32.

Example: head_dim 4, base 50000 → inv_freq = [1, 50000**-0.5 ≈ 0.00447]; the token at position 1 has
x = [1, 0, 0, 0] (pair 0 = dims 0 and 2) turned by 1 radian: [cos 1, 0, sin 1, 0] = [0.5403, 0, 0.8415, 0].

Check:     python -m exercises.check rope   (compares with 02's RotaryEmbedding + apply_rope)
Solution:  exercises/solutions/rope.py
"""
from __future__ import annotations

import torch


def rope(x: torch.Tensor, offset: int = 0, base: float = 50000.0) -> torch.Tensor:
    """Rotate every (i, i + head_dim/2) pair of x (B, H, T, head_dim) by position · base^(-2i/head_dim)."""
    raise NotImplementedError("TODO in exercises/rope.py: build inv_freq (head_dim/2,), angles (T, head_dim/2) "
                              "for positions offset..offset+T-1, then rotate each pair (i, i + head_dim/2)")
