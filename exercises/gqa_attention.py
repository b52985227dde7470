"""Exercise gqa_attention — linnet's causal grouped-query attention (lesson: 02_model.py, section 4,
CausalSelfAttention.project and .forward). About 25 lines.

You get h (B, T, C): the block's input after the token-shift conv (the check does that part for you), and
the two weight matrices of the attention block. You return what CausalSelfAttention.forward returns. In
order, as linnet does it:

1. Projection. c_attn_w is ONE fused (C + 2·n_kv_head·hd, C) matrix: h·c_attn_wᵀ gives, along the last
   dim, the queries (C = n_head·hd values), then the keys (n_kv_head·hd), then the values (n_kv_head·hd).
   Cut each into heads of hd = C / n_head dims and put the head dim before time: q (B, n_head, T, hd),
   k and v (B, n_kv_head, T, hd).
2. RoPE on q and k (your `rope` exercise): dims i and i + hd/2 form a pair rotated by the angle
   position·base^(-2i/hd), positions 0..T-1.
3. QK-norm, AFTER RoPE: a LayerNorm over the hd dims of every q and k vector, without weight or bias,
   eps 1e-5.
4. Grouped-query attention: there are fewer KV heads than query heads; g = n_head / n_kv_head query
   heads share one KV head, and query head i reads KV head ⌊i / g⌋ (neighbours share: with 4 query heads
   on 2 KV heads, query heads 0, 1 read KV head 0 and query heads 2, 3 read KV head 1).
5. Causal attention per head: scores = q·kᵀ / √hd (T × T); a query at position t may only look at keys
   at positions 0..t (its own included), so every score of a later key is removed before the softmax
   (it must get probability exactly 0); softmax over the keys; output = the probability-weighted
   sum of the value vectors.
6. Put the heads back side by side (B, T, n_head·hd = C) and apply the output projection c_proj_w (C, C).

Write the scores, the mask and the softmax yourself: the check refuses torch's
scaled_dot_product_attention here (02 uses it; this exercise is what it does inside).

Worked sizes (linnet): C = 768, n_head = 12, n_kv_head = 4, hd = 64, so c_attn_w is (1280, 768) and
every KV head serves 3 query heads.

Shapes: h (B, T, C) float32; c_attn_w (C + 2·n_kv_head·hd, C); c_proj_w (C, C) → y (B, T, C) float32.

Check:     python -m exercises.check gqa_attention   (compares with 02's CausalSelfAttention on the same
           weights: one token first, then plain multi-head, then GQA, and a test that the future
           cannot change the past)
Solution:  exercises/solutions/gqa_attention.py
"""
from __future__ import annotations

import torch


def gqa_attention(h: torch.Tensor, c_attn_w: torch.Tensor, c_proj_w: torch.Tensor, n_head: int, n_kv_head: int,
                  rope_base: float = 50000.0) -> torch.Tensor:
    """Causal grouped-query attention of the token-shifted input h (B, T, C) → (B, T, C)."""
    raise NotImplementedError("TODO in exercises/gqa_attention.py: linnet's attention block, steps 1-6 of "
                              "the docstring")
