"""02 — the linnet-497M model: a Mixture-of-Experts transformer (8 experts, top-2), written to be read.

Built in this order: 1 the config (everything follows from `depth`); 2 counting parameters and FLOPs; 3 the
small parts (RMSNorm, token shift, RoPE); 4 attention (token shift → qkv → RoPE → QK-norm → causal grouped-query
attention); 5 the MoE (a softmax router picks 2 of 8 SwiGLU experts; a readable loop and the dropless grouped-GEMM
path, which a test proves equal; the balance loss); 6 the block and the model, with generation, and linnet+'s
three switches as plain `if`s; 7 linnet's checkpoint layout (per-expert keys ↔ stacked experts); 8 looking
inside (attention maps, the largest attention logit); 9 why each choice, measured on a tiny model trained for
seconds; 10 plots; 11 main.

    python 02_model.py --preset tiny       # a depth-2 model on a CPU: the parameter table and the plots (seconds)
    python 02_model.py                     # linnet-497M built on the meta device (no memory): the real counts
    python 02_model.py --checkpoint DIR --prompt "Hello!"        # load weights (an export, linnet's own) and sample
    python 02_model.py --export out/05_train/latest.pt --out DIR  # a 05 checkpoint as linnet's published folder

Writes six plots to out/02_model/. The tests match tests/data/original_reference.pt, the original code's outputs.
Fast twins live in fast/ (RoPE + QK-norm in one kernel, FP8 experts; `LLMConfig.rope_impl`, `moe_impl` choose),
checkpoint files in house/checkpoints.py. Not here: a serving engine (generation is a plain loop, its KV cache
grown by concatenation), the token-id range check on a GPU (CUDA's own assert fires instead).
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import house
from fast import fp8, loss as fused_loss, moe as fused_moe
from fast import rope_qk_norm as fused_rope
from house import checkpoints

tokenizer_lib = importlib.import_module("01_tokenizer")   # load_tokenizer, for sampling from a checkpoint


# --- 1. The config: everything follows from `depth` ------------------------------------------------

def round_up(x: int, multiple: int) -> int:
    """Smallest multiple of `multiple` that is >= x. >>> round_up(5461, 64)  → 5504; round_up(512, 64) → 512"""
    return (x + multiple - 1) // multiple * multiple


MOE_IMPLS = ("auto", "reference", "grouped", "grouped_fp8", "fused")   # section 5 (fast/fp8.py, fast/moe.py)
ROPE_IMPLS = LOSS_IMPLS = ("auto", "reference", "fused")       # sections 4 and 6 (fast/rope_qk_norm.py, fast/loss.py)


@dataclass
class LLMConfig:
    """linnet's config, positional order the original's: LLMConfig(depth, block_size, vocab_size, n_experts,
    n_active_experts). Fields left None are derived from `depth` once, in __post_init__ (any can be given):

    >>> c = LLMConfig(depth=12)
    >>> c.n_layer, c.n_head, c.n_kv_head, c.n_embd, c.ffn_dim
    (12, 12, 4, 768, 2048)

    `vocab_size` is padded up to a multiple of 64. How it runs, not what it is: `moe_impl` (section 5), `rope_impl`
    (section 4; "auto" = the fast/ kernel on CUDA), `loss_impl` (section 6). The last three are linnet+'s (section 6)."""
    depth: int = 12
    block_size: int = 1024
    vocab_size: int = 32768
    n_experts: int = 8
    n_active_experts: int = 2
    n_layer: int | None = None
    n_head: int | None = None
    n_kv_head: int | None = None
    n_embd: int | None = None
    head_dim: int = 64
    ffn_dim: int | None = None
    rope_base: float = 50000.0
    moe_impl: str = "auto"
    rope_impl: str = "auto"
    loss_impl: str = "auto"
    balance_coef: float = 0.01
    qk_norm: bool = True          # linnet: True. False only for the experiment of section 9 (no weights change)
    zero_init_out: bool = False   # linnet+: output projections start at 0 (each block starts as the identity)
    x0_mix: bool = False          # linnet+: each block reads a·x + b·x0 (x0 = the embedding), a, b learned
    logit_softcap: float = 0.0    # linnet+: logits = c·tanh(logits / c); 0 = off (linnet)

    def __post_init__(self):
        d = self.depth
        if not isinstance(d, int) or d < 1:
            raise ValueError(f"depth must be a positive integer, got {d!r}")
        self.n_layer = d if self.n_layer is None else self.n_layer
        self.n_head = d if self.n_head is None else self.n_head
        self.n_kv_head = (max(1, d // 3 if d % 3 == 0 else d // 2)
                          if self.n_kv_head is None else self.n_kv_head)
        self.n_embd = self.head_dim * d if self.n_embd is None else self.n_embd
        self.ffn_dim = round_up(int(8 / 3 * self.n_embd), 64) if self.ffn_dim is None else self.ffn_dim
        self.vocab_size = round_up(self.vocab_size, 64)
        if self.n_head * self.head_dim != self.n_embd:
            raise ValueError(f"n_head·head_dim must equal n_embd: {self.n_head}·{self.head_dim} != {self.n_embd}")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head ({self.n_head}) must be a multiple of n_kv_head ({self.n_kv_head})")
        if not 1 <= self.n_active_experts <= self.n_experts:
            raise ValueError(f"n_active_experts must be in 1..n_experts ({self.n_experts}), got {self.n_active_experts}")
        for name, allowed in (("moe_impl", MOE_IMPLS), ("rope_impl", ROPE_IMPLS), ("loss_impl", LOSS_IMPLS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.loss_impl == "fused" and self.logit_softcap:
            raise ValueError("loss_impl 'fused' (fast/loss.py) has no logit_softcap: use 'auto' or 'reference'")

    def to_dict(self) -> dict:
        """Plain dict (JSON-able) with every field, derived ones included: what a checkpoint stores."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LLMConfig":
        """Inverse of to_dict. Keys that are not fields (e.g. extra keys in a Hub config.json) are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# Laptop-sized shapes (LLMConfig(**shape)): TINY_REFERENCE_SHAPE, one linnet's own LLMConfig can build from its five
# numbers (02's tiny preset, the tests); TINY_TRAINING_SHAPE, what 05's tiny preset trains (~0.3M parameters at
# vocab 1,024: 64 wide, head_dim 32); TINY_LESSON_SHAPE (section 9), the same reading bytes.
TINY_REFERENCE_SHAPE = dict(depth=2, block_size=64, vocab_size=512, n_experts=4, n_active_experts=2)
TINY_TRAINING_SHAPE = dict(depth=2, n_experts=4, n_active_experts=2, n_embd=64, n_head=2, n_kv_head=1,
                           head_dim=32, ffn_dim=128)


# --- 2. Counting parameters and FLOPs (no model needed) --------------------------------------------

PARTS = ("embedding", "attention", "experts", "router", "norms+conv")   # what count_parameters splits into


def count_parameters(config: LLMConfig) -> dict:
    """Parameters by part, from the config alone. Embedding is counted once (tied with lm_head). "active" is what
    one token touches: everything but the experts it was not routed to.

    >>> p = count_parameters(LLMConfig(depth=12)); p["total"], p["active"]
    (497145600, 157406976)"""
    c = config
    C, L, F_, E = c.n_embd, c.n_layer, c.ffn_dim, c.n_experts
    kv = c.n_kv_head * c.head_dim
    per_expert = 2 * F_ * C + C * F_                     # swiglu.w_v (2F×C) + c_proj (C×F)
    parts = {
        "embedding": c.vocab_size * C,                    # wte == lm_head
        "attention": L * ((C + 2 * kv) * C + C * C),      # c_attn + c_proj
        "experts": L * E * per_expert,
        "router": L * E * C,
        "norms+conv": L * (2 * C + 3 * C) + C,            # ln1, ln2, l_conv (C×1×3) per block; ln_f
    }
    total = sum(parts.values())
    active = total - L * (E - c.n_active_experts) * per_expert
    return {**parts, "total": total, "active": active, "active_experts": L * c.n_active_experts * per_expert}


def flops_per_token(config: LLMConfig, seq_len: int | None = None) -> int:
    """Training FLOPs per token, PaLM/nanoGPT convention: 6·N_active + 12·n_layer·T·n_embd.

    >>> flops_per_token(LLMConfig(depth=12), 1024)   # 0.944 G (weights) + 0.113 G (attention)
    1057688064"""
    T = config.block_size if seq_len is None else seq_len
    return 6 * count_parameters(config)["active"] + 12 * config.n_layer * T * config.n_embd


# --- 3. The small parts: RMSNorm, token shift, RoPE ---------------------------------------------------

class RMSNorm(nn.Module):
    """x · rsqrt(mean(x²) + 1e-6) · weight, weight starting at 1 (no bias, no mean): F.rms_norm, one kernel."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):  # (..., C)
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def token_shift(x, weight, history=None, before=None):
    """Causal depthwise conv with kernel 3: out[t] = w0·x[t-2] + w1·x[t-1] + w2·x[t], per channel.

    `nn.Conv1d(C, C, 3, groups=C, bias=False)` on x left-padded with 2 zeros, as three shifted multiply-adds
    (a test checks they agree). `history` (B, 2, C): the two inputs before x when generating with a cache.
    x: (B, T, C); weight: (C, 1, 3) → (B, T, C). One channel, weights (w0, w1, w2) = (0.25, 0.5, 1):

    >>> x = torch.tensor([[[1.0], [10.0], [100.0], [1000.0]]])               # (1, 4, 1)
    >>> token_shift(x, torch.tensor([[[0.25, 0.5, 1.0]]]))[0, :, 0].tolist()  # out[3] = 2.5 + 50 + 1000
    [1.0, 10.5, 105.25, 1052.5]

    So every token enters attention mixed with the two before it (a cheap local n-gram feature). `before`
    (B, T, 2), for rows packing several sequences (06): the rows of the two tokens before, in its own (-1: none)."""
    B, T, C = x.shape
    w = weight.to(x.dtype).view(C, 3)                      # (C, 3)
    if before is not None:
        padded = torch.cat([x.new_zeros(B, 1, C), x], dim=1)                     # row 0: "no token"
        one, two = (padded.gather(1, (before[..., i] + 1)[..., None].expand(B, T, C)) for i in (0, 1))
        return two * w[:, 0] + one * w[:, 1] + x * w[:, 2]
    if history is None:
        padded = F.pad(x, (0, 0, 2, 0))                    # (B, T+2, C): two zero rows in front
    else:
        padded = torch.cat([history.to(x.dtype), x], dim=1)
    return padded[:, 0:T] * w[:, 0] + padded[:, 1:T + 1] * w[:, 1] + padded[:, 2:T + 2] * w[:, 2]


class RotaryEmbedding(nn.Module):
    """RoPE, "rotate half" convention: dims i and i+head_dim/2 form a pair rotated by angle pos·inv_freq[i].

    inv_freq[i] = base^(-2i/head_dim): with base 50000 and head_dim 64 the 32 frequencies run from 1 (a turn
    every 6.3 tokens) down to ≈ 2.8e-5 (a turn every ~220k tokens). inv_freq is saved (linnet's checkpoint has
    it); the cos/sin of every angle up to `max_len` are computed once into two tables, sliced per call.

    Tables, as nanochat: cos/sin made inside a compiled graph are recomputed in every kernel that uses them.

    >>> cos, sin = RotaryEmbedding(head_dim=4, base=4.0, max_len=8)(T=3)   # inv_freq [1, 0.5]; positions 0, 1, 2
    >>> [round(v, 4) for v in sin[2].tolist()]    # position 2, pairs (0, 2) and (1, 3): sin 2.0, sin 1.0
    [0.9093, 0.8415, 0.9093, 0.8415]"""

    def __init__(self, head_dim: int, base: float, max_len: int = 1024):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))  # (hd/2,)
        self.register_buffer("inv_freq", inv_freq, persistent=True)
        self.max_len = max_len
        self.build_tables()

    def build_tables(self):
        """cos and sin of pos·inv_freq[i] for positions 0..max_len-1, each (max_len, head_dim), in fp32. Built
        again by load_linnet_state_dict, so the tables follow the inv_freq a checkpoint brings (linnet's may be
        rounded to bf16); a model cast to bf16 (06 evaluates so) reads bf16 tables, as nanochat does."""
        pos = torch.arange(self.max_len, device=self.inv_freq.device, dtype=torch.float32)  # (max_len,)
        angles = pos[:, None] * self.inv_freq.float()[None, :]           # (max_len, hd/2)
        angles = torch.cat([angles, angles], dim=-1)                     # (max_len, hd): pairs are i and i+hd/2
        self.register_buffer("cos_table", angles.cos(), persistent=False)
        self.register_buffer("sin_table", angles.sin(), persistent=False)

    def forward(self, T: int, offset: int = 0):
        """cos, sin for positions offset..offset+T-1, each (T, head_dim)."""
        if offset + T > self.max_len:
            raise ValueError(f"positions up to {offset + T} but RoPE tables hold {self.max_len}: "
                             f"keep offset + T <= block_size")
        return self.cos_table[offset:offset + T], self.sin_table[offset:offset + T]


def rotate_half(x):
    """(x1, x2) → (-x2, x1) on the two halves of the last dim."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x, cos, sin):
    """x: (..., T, [heads,] hd); cos, sin: (T, [1,] hd), broadcast. Rotated in fp32, returned in x's dtype."""
    return (x.float() * cos + rotate_half(x.float()) * sin).to(x.dtype)


# --- 4. Attention: token shift → qkv → RoPE → QK-norm → causal GQA ---------------------------------

@dataclass
class LayerCache:
    """What a block remembers to read the next token without the prompt again: keys and values (B, n_kv_head,
    t, hd) after RoPE and QK-norm, and its last two inputs (B, 2, C), which the token shift looks back at."""
    k: torch.Tensor | None = None
    v: torch.Tensor | None = None
    shift: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return 0 if self.k is None else self.k.shape[2]


def rope_qk_norm_reference(qkv, cos, sin, n_head: int, n_kv_head: int, positions=None, qk_norm: bool = True):
    """qkv (B, T, (nh + 2·nkv)·hd) → q (B, T, nh, hd), k and v (B, T, nkv, hd): RoPE on q and k with the angles
    in row t of cos, sin (T, hd) (rows positions[b, t] when positions (B, T) is given), then QK-norm. The plain
    ops; fast/rope_qk_norm.py is the same maths in one GPU kernel (same arguments, a test compares them)."""
    B, T, _ = qkv.shape
    hd = cos.shape[-1]
    q, k, v = qkv.split([n_head * hd, n_kv_head * hd, n_kv_head * hd], dim=-1)
    q, k, v = q.view(B, T, n_head, hd), k.view(B, T, n_kv_head, hd), v.view(B, T, n_kv_head, hd)
    if positions is None:
        cos, sin = cos[:, None, :], sin[:, None, :]                        # (T, 1, hd): same angles for all heads
    else:
        cos, sin = cos[positions][:, :, None, :], sin[positions][:, :, None, :]   # (B, T, 1, hd)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    # QK-norm: parameter-free LayerNorm over head_dim, AFTER RoPE (linnet's order); no weights, so no keys.
    if qk_norm:
        q = F.layer_norm(q, (hd,), eps=1e-5).to(v.dtype)
        k = F.layer_norm(k, (hd,), eps=1e-5).to(v.dtype)
    return q, k, v


class CausalSelfAttention(nn.Module):
    def __init__(self, config: LLMConfig):
        super().__init__()
        C, hd = config.n_embd, config.head_dim
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.n_kv_head, hd
        self.qk_norm = config.qk_norm
        self.l_conv = nn.Conv1d(C, C, kernel_size=3, groups=C, bias=False)  # weight (C, 1, 3); default init
        self.c_attn = nn.Linear(C, C + 2 * config.n_kv_head * hd, bias=False)  # fused q | k | v
        self.c_proj = nn.Linear(C, C, bias=False)
        self.rotary_emb = RotaryEmbedding(hd, config.rope_base, config.block_size)
        self.rope_impl = config.rope_impl  # "fused": the same maths in one GPU kernel (fast/rope_qk_norm.py)

    def project(self, x, cache: LayerCache | None = None, packed=None):
        """Steps 1–5 of the block: returns q (B, n_head, T, hd), k and v (B, n_kv_head, T, hd). `packed`: see forward."""
        history = None if cache is None else cache.shift
        positions, before = (None, None) if packed is None else packed[:2]
        x = token_shift(x, self.l_conv.weight, history, before)           # (B, T, C)
        q, k, v = self.qkv_heads(self.c_attn(x), offset=0 if cache is None else cache.length, positions=positions)
        # Attention wants heads before time: transposed views, no copy (SDPA reads them as they are).
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)   # (B, nh, T, hd), (B, nkv, T, hd) ×2

    def qkv_heads(self, qkv, offset: int = 0, positions=None):
        """Steps 3–4: qkv (B, T, C + 2·kv) → q (B, T, nh, hd), k and v (B, T, nkv, hd), q and k rotated (RoPE) at
        positions offset..offset+T-1 (or `positions` (B, T), 06's packed rows) and QK-normed: the plain ops, or
        fast/rope_qk_norm.py's kernel (`LLMConfig.rope_impl` chooses)."""
        rotary = self.rotary_emb
        cos, sin = rotary(qkv.shape[1], offset) if positions is None else (rotary.cos_table, rotary.sin_table)
        use_kernel = fused_rope.use_fused(self.rope_impl, qkv, self.head_dim)
        run = fused_rope.rope_qk_norm if use_kernel else rope_qk_norm_reference
        return run(qkv, cos, sin, self.n_head, self.n_kv_head, positions, self.qk_norm)

    def forward(self, x, cache: LayerCache | None = None, packed=None):  # x (B, T, C)
        """`cache`: generation (keys and values of the tokens before). `packed`: (positions (B, T), before (B, T, 2),
        mask (B, 1, T, T)) for rows that hold several sequences (06 scores a context once, its endings after it):
        each token's RoPE position, the two tokens its token shift reads, the keys it may see."""
        B, T, C = x.shape
        past = 0 if cache is None else cache.length
        q, k, v = self.project(x, cache, packed)
        if cache is not None:                                   # append this step, keep conv history
            cache.k = k if cache.k is None else torch.cat([cache.k, k], dim=2)
            cache.v = v if cache.v is None else torch.cat([cache.v, v], dim=2)
            prev = x.new_zeros(B, 2, C) if cache.shift is None else cache.shift
            cache.shift = torch.cat([prev, x], dim=1)[:, -2:].detach()
            k, v = cache.k, cache.v
        # enable_gqa: query head h reads KV head h // (n_head / n_kv_head), without copying k and v
        if past == 0 and packed is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        else:  # new tokens at positions past..past+T-1 see every key up to their own position (or as packed says)
            mask = packed[2] if packed is not None else \
                torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            repeat = self.n_head // self.n_kv_head                   # a mask and GQA: every SDPA kernel takes this
            k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).reshape(B, T, C)                 # (B, T, nh·hd)
        return self.c_proj(y)


# --- 5. Mixture of experts: router, two ways to run the experts, balance loss ----------------------

def swiglu(h):
    """h (N, 2F) = [gate | value] → silu(gate) · value (N, F). Gate rows come first in w_v."""
    gate, value = h.chunk(2, dim=-1)
    return F.silu(gate) * value


def route(router_logits, k: int):  # (N, E) → probs (N, E) fp32, top_w (N, k), top_e (N, k)
    """The router's decision: softmax over the E experts, keep the k most probable, renormalise their
    weights to sum to 1 (linnet: E = 8, k = 2).

    >>> probs, top_w, top_e = route(torch.tensor([[2.0, 1.0, 0.0, -1.0]]), k=2)
    >>> top_e.tolist(), [round(w, 3) for w in top_w[0].tolist()]   # softmax 0.644, 0.237 → renormalised
    ([[0, 1]], [0.731, 0.269])"""
    probs = F.softmax(router_logits.float(), dim=-1)        # (N, E) in fp32
    top_w, top_e = probs.topk(k, dim=-1)                    # (N, k)
    return probs, top_w / top_w.sum(dim=-1, keepdim=True), top_e


def balance_loss(probs):  # (N, E) → scalar
    """linnet's load-balance loss: E · Σ_e (mean over tokens of prob_e)², 1.0 when the mean router probability
    is uniform, up to E when every token prefers one expert (not Switch's, which weighs by tokens routed).

    >>> balance_loss(torch.full((5, 8), 1 / 8)).item(), balance_loss(torch.eye(8)[[0, 0]]).item()
    (1.0, 8.0)"""
    mean_prob = probs.mean(dim=0)                           # (E,)
    return probs.shape[-1] * (mean_prob ** 2).sum()


def moe_reference(x, w_v, c_proj, top_e, top_w):
    """The readable MoE: for each expert, gather its tokens, run its SwiGLU, add back weight·output.

    x (N, C); w_v (E, 2F, C); c_proj (E, C, F); top_e, top_w (N, k) → (N, C). The original linnet code's loop:
    how many tokens expert e got is a host sync per expert, fine to read, slow on a GPU."""
    y = torch.zeros_like(x)
    for e in range(w_v.shape[0]):
        token, slot = torch.nonzero(top_e == e, as_tuple=True)         # tokens that picked e
        h = swiglu(x[token] @ w_v[e].to(x.dtype).T)                    # (n_e, F)
        out = h @ c_proj[e].to(x.dtype).T                              # (n_e, C)
        y.index_add_(0, token, out * top_w[token, slot, None].to(x.dtype))
    return y


def sort_slots(flat_e, E: int):
    """The token-slots sorted by expert (stable) and the number of slots per expert, on the device, with no
    host sync: flat_e (S,) → order (S,), counts (E,) int64. moe_grouped and expert_rows_padded start here."""
    order = torch.argsort(flat_e, stable=True)                          # slots grouped by expert
    counts = torch.zeros(E, dtype=torch.int64, device=flat_e.device).scatter_add_(0, flat_e, torch.ones_like(flat_e))
    return order, counts


def moe_grouped(x, w_v, c_proj, top_e, top_w):
    """The fast MoE, same maths, dropless and free of host syncs (so torch.compile keeps one graph).

    1. sort the N·k token-slots by expert; count slots per expert on the device (scatter_add);
    2. offsets = cumsum(counts) tell F.grouped_mm where each expert's rows end;
    3. two grouped GEMMs (w_v, then c_proj) with SwiGLU between;
    4. un-permute, weight, sum each token's k slots. grouped_mm: 16-byte strides, bf16 on CUDA. Twins: fast/."""
    N, C = x.shape
    E, k = w_v.shape[0], top_e.shape[1]
    order, counts = sort_slots(top_e.reshape(-1), E)                    # (N·k,), (E,)
    offsets = torch.cumsum(counts, 0).to(torch.int32)                   # (E,) end of each group
    x_sorted = x[order // k]                                            # (N·k, C) token of each slot
    h = F.grouped_mm(x_sorted, w_v.to(x.dtype).transpose(-2, -1), offs=offsets)   # (N·k, 2F)
    y_sorted = F.grouped_mm(swiglu(h), c_proj.to(x.dtype).transpose(-2, -1), offs=offsets)  # (N·k, C)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=x.device)      # slot i sits at row inverse[i]
    y_slots = y_sorted[inverse].view(N, k, C)                           # (N, k, C)
    return (y_slots * top_w.unsqueeze(-1).to(x.dtype)).sum(dim=1)       # (N, C)


def compute_dtype(x):
    """The dtype matmuls run in: autocast's (bf16) when autocast is on, else x's own."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


class MoE(nn.Module):
    """Router + E SwiGLU experts, stacked: w_v (E, 2F, C) [gate rows, then value rows], c_proj (E, C, F); linnet
    keeps a Linear per expert, stacked here so one grouped GEMM runs them all (section 7 converts)."""

    def __init__(self, config: LLMConfig):
        super().__init__()
        C, Fd, E = config.n_embd, config.ffn_dim, config.n_experts
        self.n_experts, self.top_k, self.impl = E, config.n_active_experts, config.moe_impl
        self.router = nn.Linear(C, E, bias=False)
        self.w_v = nn.Parameter(torch.empty(E, 2 * Fd, C))
        self.c_proj = nn.Parameter(torch.empty(E, C, Fd))

    def choose_impl(self, x) -> str:
        """"auto": in bf16 grouped, or fused when training on a Hopper GPU with quack (fast/moe.py); grouped in fp32
        on an eager CPU; else the loop (grouped_mm's CUDA kernel and its compile-time shape function take bf16 only)."""
        if self.impl != "auto":
            return self.impl
        if compute_dtype(x) == torch.bfloat16:
            return "fused" if x.is_cuda and torch.is_grad_enabled() and fused_moe.quack_ready() else "grouped"
        if x.device.type == "cpu" and not torch.compiler.is_compiling():
            return "grouped"
        return "reference"

    def forward(self, x, expert_weights=None):  # x (B, T, C) → (B, T, C), plus the router's numbers
        """`expert_weights`: a (w_v, c_proj) pair instead of the parameters (fast/moe.py: bf16 copies per step)."""
        B, T, C = x.shape
        x_flat = x.reshape(B * T, C)                            # (N, C)
        probs, top_w, top_e = route(self.router(x_flat), self.top_k)   # (N, E), (N, k), (N, k)
        xc = x_flat.to(compute_dtype(x))
        run = {"grouped": moe_grouped, "reference": moe_reference, "grouped_fp8": fp8.moe_grouped_fp8,
               "fused": fused_moe.moe_fused}[self.choose_impl(x)]
        w_v, c_proj = (self.w_v, self.c_proj) if expert_weights is None else expert_weights
        y = run(xc, w_v, c_proj, top_e, top_w).view(B, T, C)

        balance = balance_loss(probs)                           # 1.0 when the mean is uniform
        mean_prob = probs.mean(dim=0)                           # (E,)
        flat_e = top_e.reshape(-1)
        tokens_per_expert = torch.zeros(self.n_experts, device=x.device).scatter_add_(
            0, flat_e, torch.ones(flat_e.shape, device=x.device))  # (E,) token-slots routed to e
        entropy = -(probs * torch.log(probs.clamp_min(1e-20))).sum(-1).mean()
        return y, dict(balance=balance, tokens_per_expert=tokens_per_expert, mean_prob=mean_prob, entropy=entropy)


# --- 6. The block and the model ----------------------------------------------------------------------
# linnet exactly, with linnet+'s three switches off: later recipe changes from public speed-runs (modded-nanogpt,
# nanochat), each an LLMConfig field and a plain `if`: zero_init_out (init_weights), x0_mix (Block), logit_softcap
# (LLM.head). BENCHMARKS.md "linnet+" measures them.

class Block(nn.Module):
    """Pre-norm residual block: x + Attention(RMSNorm(x)), then x + MoE(RMSNorm(x)). linnet+'s x0_mix: it first
    reads a·x + b·x0 (x0 the token embedding, (a, b) learned, from (1, 0)): any layer can see the token itself."""

    def __init__(self, config: LLMConfig):
        super().__init__()
        self.ln1 = RMSNorm(config.n_embd)
        self.ln2 = RMSNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.moe = MoE(config)
        self.x0_lambdas = nn.Parameter(torch.tensor([1.0, 0.0])) if config.x0_mix else None

    def forward(self, x, cache: LayerCache | None = None, expert_weights=None, x0=None, packed=None):  # (B, T, C)
        if self.x0_lambdas is not None:
            x = self.x0_lambdas[0] * x + self.x0_lambdas[1] * x0
        x = x + self.attn(self.ln1(x), cache, packed)
        moe_out, router = self.moe(self.ln2(x), expert_weights)
        return x + moe_out, router


class LLM(nn.Module):
    """linnet: token embedding → depth × Block → RMSNorm → lm_head (tied to the embedding). The loss: cross-entropy
    (targets == -1 ignored), plus balance_coef · the layers' mean balance loss in training mode only (linnet's way).
    After every forward `router_stats` holds detached device tensors (no host sync): tokens_per_expert (n_layer,
    E), mean_prob (n_layer, E), entropy (n_layer,) in nats."""

    def __init__(self, config: LLMConfig):
        super().__init__()
        self.config = config
        C, V = config.n_embd, config.vocab_size
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(V, C),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=RMSNorm(C),
        ))
        self.lm_head = nn.Linear(C, V, bias=False)
        self.transformer.wte.weight = self.lm_head.weight          # tied: one (V, C) matrix
        self.router_stats: dict = {}
        self.init_weights()

    @torch.no_grad()
    def init_weights(self):
        """N(0, 0.02) for every Linear and the experts, 0.02/√(2·n_layer) for each block's two output projections
        (linnet+'s zero_init_out: 0, as modded-nanogpt and nanochat); conv keeps PyTorch's default; norms 1."""
        std, out_std = 0.02, 0.02 / math.sqrt(2 * self.config.n_layer)
        nn.init.normal_(self.lm_head.weight, 0.0, std)              # also the embedding (tied)
        for block in self.transformer.h:
            nn.init.normal_(block.attn.c_attn.weight, 0.0, std)
            nn.init.normal_(block.attn.c_proj.weight, 0.0, out_std)
            nn.init.normal_(block.moe.router.weight, 0.0, std)
            nn.init.normal_(block.moe.w_v, 0.0, std)
            nn.init.normal_(block.moe.c_proj, 0.0, out_std)
            if self.config.zero_init_out:                            # linnet+: each block starts as the identity
                block.attn.c_proj.weight.zero_()
                block.moe.c_proj.zero_()

    def check_input(self, idx):
        if idx.dim() != 2:
            raise ValueError(f"idx must be (batch, time) token ids, got shape {tuple(idx.shape)}")
        T = idx.shape[1]
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} is longer than block_size {self.config.block_size}: "
                             f"crop the input to the last {self.config.block_size} tokens")
        # The value check needs the numbers: free on the CPU, a host sync on a GPU, impossible in a graph.
        if idx.device.type == "cpu" and not torch.compiler.is_compiling() and idx.numel():
            lo, hi = int(idx.min()), int(idx.max())
            if lo < 0 or hi >= self.config.vocab_size:
                raise ValueError(f"token id {hi if hi >= self.config.vocab_size else lo} is outside the "
                                 f"vocabulary 0..{self.config.vocab_size - 1}: the tokenizer and the model disagree")

    def forward(self, idx, targets=None, caches: list[LayerCache] | None = None, expert_weights=None):
        """idx (B, T) → (logits (B, T, V), or None where fast/loss.py makes the loss; loss or None). `caches`:
        one LayerCache per layer (generation); `expert_weights`: one (w_v, c_proj) pair per layer (fast/moe.py)."""
        self.check_input(idx)
        x, routers = self.hidden(idx, caches, expert_weights)        # (B, T, C)
        impl = self.config.loss_impl      # "auto": fast/loss.py (the loss a chunk at a time, no logits) when training
        if impl == "auto":                # in bf16 where quack runs (there it pays: BENCHMARKS.md), else 02's head
            impl = "fused" if (x.is_cuda and x.requires_grad and compute_dtype(x) == torch.bfloat16
                               and not self.config.logit_softcap and fused_moe.quack_ready()) else "reference"
        fused = targets is not None and impl == "fused"
        logits = None if fused else self.head(x)                     # (B, T, V), or none at all
        self.router_stats = {k: torch.stack([r[k] for r in routers]).detach() for k in routers[0] if k != "balance"}
        loss = None
        if targets is not None:
            loss = (fused_loss.linear_cross_entropy(x.flatten(0, 1), self.lm_head.weight, targets.flatten()) if fused
                    else F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1))
            if self.training:
                balance = torch.stack([r["balance"] for r in routers]).sum() / self.config.n_layer
                loss = loss + self.config.balance_coef * balance
        return logits, loss

    def head(self, x):  # (..., C) → (..., V)
        """The tied lm_head; linnet+'s logit_softcap c squashes every logit into (−c, c): c·tanh(logits / c)."""
        logits = self.lm_head(x)
        cap = self.config.logit_softcap
        return cap * torch.tanh(logits / cap) if cap else logits

    def hidden(self, idx, caches: list[LayerCache] | None = None, expert_weights=None, packed=None):
        """Embedding → blocks → final norm: the one walk over the blocks, shared by training, generation, section 8's
        probes and 06's scorer. idx (B, T) → x (B, T, C), each layer's router numbers. `packed`: see the attention."""
        x0 = x = self.transformer.wte(idx)                           # (B, T, C)
        routers = []
        for i, block in enumerate(self.transformer.h):
            x, router = block(x, None if caches is None else caches[i],
                              None if expert_weights is None else expert_weights[i], x0, packed)
            routers.append(router)
        return self.transformer.ln_f(x), routers

    # --- generation -------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, prompt, enc=None, max_new_tokens: int = 100, temperature: float = 1.0,
                 top_k: int | None = 50, use_cache: bool = True, seed: int | None = None, eos_id: int | None = None):
        """Continue `prompt` (text, encoded with `enc`, or token ids): temperature 0 = greedy; top_k keeps the k
        likeliest tokens; `seed` repeats a sample; stops at `eos_id`. With the cache each step feeds one token;
        past block_size a fresh cache reads the last block_size tokens again."""
        if isinstance(prompt, str) and enc is None:
            raise ValueError("a text prompt needs enc= (a tokenizer with encode/decode), or pass token ids")
        encoded = enc.encode(prompt) if isinstance(prompt, str) else prompt
        ids = [int(i) for i in getattr(encoded, "ids", encoded)]       # a tokenizers.Encoding, or a list of ids
        if not ids:
            raise ValueError("the prompt is empty: give at least one token")
        device, was_training = next(self.parameters()).device, self.training
        gen = torch.Generator(device=device).manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, (1,))))
        self.eval()
        try:
            out = self._sample(ids, max_new_tokens, temperature, top_k, use_cache, gen, eos_id, device)
        finally:
            self.train(was_training)
        return enc.decode(out) if isinstance(prompt, str) else out

    def _sample(self, ids, max_new_tokens, temperature, top_k, use_cache, gen, eos_id, device) -> list[int]:
        """generate's loop: `ids` and the new tokens after them."""
        block, ids = self.config.block_size, list(ids)
        caches, feed = None, ids[-block:]
        for _ in range(max_new_tokens):
            if not use_cache or caches is None or caches[0].length >= block:
                caches = [LayerCache() for _ in self.transformer.h] if use_cache else None
                feed = ids[-block:]                                    # (re)read the whole window
            logits = self(torch.tensor([feed], device=device), caches=caches)[0][0, -1].float()   # (V,)
            if temperature == 0:
                nxt = int(logits.argmax())
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                nxt = int(torch.multinomial(F.softmax(logits, -1), 1, generator=gen))
            ids.append(nxt)
            feed = [nxt]
            if eos_id is not None and nxt == eos_id:
                break
        return ids

    # --- loading published weights ------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path, config: LLMConfig | None = None, device: str = "cpu", moe_impl: str = "auto",
                        rope_impl: str = "auto") -> "LLM":
        """Build and load a model from a pytorch_model.bin / .safetensors file or a folder holding one. Its config:
        `config`, else config.json's (checked against the weights), else the one an export keeps in its weights,
        else the tensors' shapes (linnet's own file; block_size 1024 assumed). A missing path raises
        FileNotFoundError (house.NotFound); a file that does not fit, house.UserError."""
        make = lambda fields: LLMConfig.from_dict({**fields, "moe_impl": moe_impl, "rope_impl": rope_impl})  # noqa: E731
        sd, config = checkpoints.read_weights(path, make, config)      # weights only: a file cannot run code
        with torch.device(device):
            model = cls(config)
        return load_linnet_state_dict(model, sd)


# --- 7. linnet's checkpoint layout: per-expert keys ↔ stacked experts --------------------------------------
# linnet's pytorch_model.bin keeps each expert as its own Linear (`moe.experts.{e}.swiglu.w_v.weight`); this model
# stacks them (`moe.w_v`, (E, 2F, C)). Loading stacks, exporting splits; the files are house/checkpoints.py's.

def load_linnet_state_dict(model: LLM, sd: dict) -> LLM:
    """Load linnet's published layout (or our stacked one) into `model`: experts stacked, the tied pair filled from
    either name, every key and shape checked (a house.UserError names a mismatch), RoPE's tables rebuilt."""
    model.load_state_dict(checkpoints.stacked_state_dict(sd, model.state_dict(), model.config.rope_base), strict=True)
    for block in model.transformer.h:
        block.attn.rotary_emb.build_tables()
    return model


def export_linnet_state_dict(model: LLM) -> dict:
    """Our model → linnet's published layout, in the key order of docs/checkpoint_keys.json: every expert as
    `moe.experts.{e}.swiglu.w_v.weight` (2F, C) and `.c_proj.weight` (C, F), both tied names on one tensor."""
    return checkpoints.per_expert_state_dict(model.state_dict())


def load_any_checkpoint(path) -> tuple[LLM, str | None]:
    """(CPU model, its training tokenizer's sha256 or None) of a 05 latest.pt, an export or linnet's own file."""
    training = checkpoints.read_training_checkpoint(path)            # None: not a 05 checkpoint
    if training is None:
        return LLM.from_pretrained(path), None
    model = LLM(checkpoints.saved_model_config(training, path, LLMConfig))   # an unknown field: refused in one line
    return load_linnet_state_dict(model, training["model"]), training.get("tokenizer_sha256")


def export_pretrained(checkpoint, out_dir, tokenizer=None, overwrite: bool = False) -> Path:
    """A 05 checkpoint → linnet's published folder (LLM.from_pretrained loads it), with the run's tokenizer (01's)."""
    tokenizer = Path(tokenizer) if tokenizer is not None else house.OUT_DIR / "01_tokenizer" / "tokenizer.json"
    checkpoints.check_export(checkpoint, out_dir, overwrite)
    tokenizer_lib.load_tokenizer(tokenizer)                          # one line if missing or corrupt
    model, trained_with = load_any_checkpoint(checkpoint)            # every key and shape checked
    checkpoints.check_made_with(checkpoint, trained_with, tokenizer)
    sd, config = export_linnet_state_dict(checkpoints.check_finite(model, checkpoint)), model.config.to_dict()
    return checkpoints.write_export_folder(out_dir, sd, config, tokenizer, tokenizer_lib.EOT, tokenizer_lib.PAD, trained_with)


def original_code_line(config: LLMConfig) -> str:
    """Whether linnet's own code loads an export and computes the same (house/checkpoints.py says why not)."""
    five = {k: getattr(config, k) for k in checkpoints.LINNET_ARGS}
    return checkpoints.original_code_line(config.to_dict(), LLMConfig(**five).to_dict())


# --- 8. Looking inside: what each attention layer computes -----------------------------------------------
# The probes walk no blocks themselves: they listen to the model's own forward (`LLM.hidden`). A forward pre-hook
# records what each attention module is handed; q and k are recomputed from it as the module does.

@torch.no_grad()
def attention_inputs(model: LLM, idx) -> list[torch.Tensor]:
    """What every layer's attention reads on idx (B, T): one (B, T, C) tensor per layer, from one forward."""
    inputs = []
    hooks = [block.attn.register_forward_pre_hook(lambda module, args: inputs.append(args[0]))
             for block in model.transformer.h]
    try:
        model.hidden(idx)
    finally:
        for hook in hooks:
            hook.remove()
    return inputs


def attention_scores(attn: CausalSelfAttention, x):
    """q·kᵀ/√head_dim (B, n_head, T, T) of one attention module on its input x (B, T, C), GQA's keys repeated."""
    q, k, _ = attn.project(x)
    k = k.repeat_interleave(attn.n_head // attn.n_kv_head, dim=1)      # (B, nh, T, hd)
    return q @ k.transpose(-2, -1) / math.sqrt(attn.head_dim)          # (B, nh, T, T)


@torch.no_grad()
def attention_weights(model: LLM, idx, layer: int = 0):
    """Softmax attention probabilities (B, n_head, T, T) of block `layer` — what SDPA computes inside."""
    scores = attention_scores(model.transformer.h[layer].attn, attention_inputs(model, idx)[layer])
    T = idx.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=idx.device).tril()
    return scores.masked_fill(~causal, float("-inf")).softmax(-1)


@torch.no_grad()
def max_attention_logit(model: LLM, idx) -> float:
    """The largest |q·k|/√head_dim any head of any layer computes on idx (causal positions): what softmax sees.
    QK-norm bounds it by √head_dim (8 for linnet); without it nothing does, and a logit of 30 makes softmax one-hot."""
    T = idx.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=idx.device).tril()
    return max(float(attention_scores(block.attn, x).abs().masked_fill(~causal, 0).max())
               for block, x in zip(model.transformer.h, attention_inputs(model, idx)))


# --- 9. Why each choice: measured -----------------------------------------------------------------------
# Each choice of linnet next to a number that shows what it buys: the first four from the config alone, the last
# ones from the tiny model trained for seconds on real text (bytes as token ids).

def kv_cache_bytes(config: LLMConfig, seq_len: int | None = None, batch: int = 1, dtype_bytes: int = 2) -> int:
    """GQA: bytes of keys + values a generating model keeps, 2 · n_layer · n_kv_head · head_dim · T · batch · bytes:
    query heads share a K/V head, so the cache shrinks. linnet (12 heads, 4 KV heads) at T = 1024, then with 12:

    >>> kv_cache_bytes(LLMConfig(depth=12), 1024), kv_cache_bytes(LLMConfig(depth=12, n_kv_head=12), 1024)
    (12582912, 37748736)
    >>> 37748736 // 12582912      # 12 MiB instead of 36 MiB per sequence: 3× more sequences fit in memory
    3"""
    T = config.block_size if seq_len is None else seq_len
    return 2 * config.n_layer * config.n_kv_head * config.head_dim * T * batch * dtype_bytes


def tied_embedding_savings(config: LLMConfig) -> int:
    """Tied embeddings: lm_head reuses the (vocab, n_embd) embedding matrix, so one matrix is stored, not two.
    >>> tied_embedding_savings(LLMConfig(depth=12))   # 32768 × 768: an untied linnet would hold 522,311,424
    25165824"""
    return config.vocab_size * config.n_embd


def moe_vs_dense(config: LLMConfig, seq_len: int | None = None) -> dict:
    """MoE: parameters stored vs FLOPs per trained token, next to a dense model holding the same total.
    >>> r = moe_vs_dense(LLMConfig(depth=12), 1024)
    >>> r["total"], r["active"], r["flops_moe"], r["flops_dense"]
    (497145600, 157406976, 1057688064, 3096119808)
    >>> round(r["flops_dense"] / r["flops_moe"], 2)   # top-2 of 8: the 497M model trains at ~1/3 the cost
    2.93"""
    T = config.block_size if seq_len is None else seq_len
    p = count_parameters(config)
    attention = 12 * config.n_layer * T * config.n_embd
    return dict(total=p["total"], active=p["active"], flops_moe=flops_per_token(config, T),
                flops_dense=6 * p["total"] + attention)


def rope_offset_similarity(base: float, head_dim: int = 64, max_offset: int = 1024):
    """RoPE base: how alike a query looks to itself d tokens away, d = 0..max_offset-1 → (max_offset,).

    With q = k and equal energy in every pair, the cosine similarity at offset d is mean_i cos(d · inv_freq[i]):
    fast pairs spin and average out, slow pairs stay near 1 and tell "far" from "very far" (16 of 32 pairs turn
    less than once in 1024 tokens at base 50,000, 14 at 10,000). The curve wiggles, so compare bases over a
    range: over d = 512…1023 the mean is 0.20 at base 10,000 and 0.32 at 50,000 (plot_rope_bases).

    >>> [round(rope_offset_similarity(b)[512:].mean().item(), 2) for b in (10000.0, 50000.0)]
    [0.2, 0.32]"""
    rotary = RotaryEmbedding(head_dim, base, max_len=max_offset)
    return rotary.cos_table[:, : head_dim // 2].mean(dim=1)             # (max_offset,)


def tiny_text_bytes(max_bytes: int = 300_000):
    """Real text as byte ids (int64, each < 256), for the tiny model to learn from in seconds: Shakespeare
    from the corpus that ships in embedded/corpus when present, else this file's own source code."""
    source = house.EMBEDDED_CORPUS_DIR / "shakespeare.jsonl.zst"
    data = house.first_bytes([source], max_bytes) if source.is_file() else Path(__file__).read_bytes()[:max_bytes]
    return torch.tensor(list(data), dtype=torch.long)                  # (n_bytes,)


# The model section 9 trains: 05's tiny training shape (64 wide, 2 layers, 4 experts top-2, head_dim 32),
# reading bytes (vocab 256) in 64-byte windows: ~0.1M parameters, a few seconds for 200 steps on one core.
TINY_LESSON_SHAPE = dict(TINY_TRAINING_SHAPE, block_size=64, vocab_size=256)


def train_tiny(steps: int = 200, batch: int = 8, lr: float = 3e-3, seed: int = 0, data=None,
               track_logits: bool = False, **overrides) -> tuple[LLM, dict]:
    """Train TINY_LESSON_SHAPE (plus `overrides`, e.g. qk_norm=False) with plain AdamW on random windows of
    real text (tiny_text_bytes), bytes as tokens: seconds on a CPU; steps=0 returns the random init. Returns
    (model in eval mode, history): "loss" per step and, with track_logits, "max_logit" (max_attention_logit).
    Measured (seeds 0, 1, 2): the loss falls from 5.53 to 2.26 ± 0.02 nats per byte in 200 steps (mean of the
    last 20); the max attention logit stays ≤ 5.5 (under √32) with QK-norm, peaks at 24 ± 6 without it."""
    torch.manual_seed(seed)
    model = LLM(LLMConfig(**{**TINY_LESSON_SHAPE, **overrides})).train()
    data, T = tiny_text_bytes() if data is None else data, model.config.block_size
    gen, history = torch.Generator().manual_seed(seed), dict(loss=[], max_logit=[])
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)            # tensors this small: one thread beats several fighting over the CPU
    try:
        for _ in range(steps):
            start = torch.randint(0, len(data) - T - 1, (batch,), generator=gen)
            window = torch.stack([data[s:s + T + 1] for s in start.tolist()])      # (B, T+1)
            if track_logits:
                history["max_logit"].append(max_attention_logit(model, window[:, :-1]))
            _, loss = model(window[:, :-1], window[:, 1:])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history["loss"].append(loss.item())
    finally:
        torch.set_num_threads(threads)
    return model.eval(), history


def real_text_batch(model: LLM, n: int = 8, seed: int = 0):
    """n windows of real text (bytes), block_size long each → (n, T): what the router-load plot feeds in."""
    data, T = tiny_text_bytes(), model.config.block_size
    start = torch.randint(0, len(data) - T, (n,), generator=torch.Generator().manual_seed(seed + 1))
    return torch.stack([data[s:s + T] for s in start.tolist()])


# --- 10. Plots: each returns a figure; main saves it with house.save_plot ---------------------------------

def plot_param_budget(config: LLMConfig):
    """Two stacked bars: every stored parameter by part, and the ones a single token computes with."""
    import matplotlib.pyplot as plt
    p = count_parameters(config)
    active = {**{k: p[k] for k in PARTS}, "experts": p["active_experts"]}
    fig, ax = plt.subplots(figsize=(7, 4))
    colors = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b2"]
    for col, (label, numbers) in enumerate((("all parameters", p), ("active per token", active))):
        bottom = 0
        for part, color in zip(PARTS, colors):
            label = f"{part}: {p[part] / 1e6:.2f}M" if col == 0 else None
            ax.bar(col, numbers[part] / 1e6, bottom=bottom, color=color, label=label)
            if numbers[part] / max(p["total"], 1) > 0.15:                 # small parts: see the legend
                ax.text(col, bottom + numbers[part] / 2e6, f"{part}\n{numbers[part] / 1e6:.1f}M",
                        ha="center", va="center", fontsize=8, color="white")
            bottom += numbers[part] / 1e6
        ax.text(col, bottom, f"{bottom:.1f}M", ha="center", va="bottom")
    ax.set_xticks([0, 1], ["all parameters (stored)", "active per token (computed)"])
    ax.set_ylabel("millions of parameters")
    ax.set_title(f"depth {config.depth}: experts hold most parameters, but each token uses only "
                 f"{config.n_active_experts} of {config.n_experts}", fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    return fig


def plot_rope_frequencies(config: LLMConfig):
    """Left: the wavelength of each RoPE pair (log scale); right: the cos table, pair × position."""
    import matplotlib.pyplot as plt
    T = min(config.block_size, 256)
    rotary = RotaryEmbedding(config.head_dim, config.rope_base, max_len=T)
    wavelength = 2 * math.pi / rotary.inv_freq                        # (hd/2,) tokens per full turn
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.semilogy(wavelength.numpy(), "o-")
    a.axhline(config.block_size, color="red", ls="--", label=f"block_size {config.block_size}")
    a.set(xlabel="pair index i (dims i and i+32)", ylabel="wavelength in tokens (2π / inv_freq)")
    a.set_title(f"RoPE base {config.rope_base:g}: wavelengths from 6 tokens to ~10^5", fontsize=9)
    a.legend()
    cos = rotary.cos_table[:, : config.head_dim // 2]                 # (T, hd/2): cos(position · inv_freq[i])
    im = b.imshow(cos.T.numpy(), aspect="auto", cmap="RdBu", interpolation="nearest", vmin=-1, vmax=1)
    fig.colorbar(im, ax=b, label="cos(angle)")
    b.set(xlabel="position", ylabel="pair index i")
    b.set_title("cos(position · inv_freq): fast pairs see nearby order, slow ones far", fontsize=9)
    return fig


def plot_attention_map(models: dict, text: str, head: int = 0):
    """Layer 0's attention probabilities on the bytes of `text`, one panel per model ({label: LLM}), e.g.
    random init next to trained: the same head, side by side, each with a colour bar."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 5.5), squeeze=False)
    for ax, (label, model) in zip(axes[0], models.items()):
        ids = list(text.encode("utf-8"))[: model.config.block_size]   # bytes as token ids (< 256)
        probs = attention_weights(model, torch.tensor([ids]), layer=0)[0, head]   # (T, T)
        im = ax.imshow(probs.numpy(), cmap="viridis", vmin=0, vmax=1)
        fig.colorbar(im, ax=ax, fraction=0.046, label="attention probability")
        ticks, words = word_ticks(bytes(ids).decode("utf-8", errors="replace"))   # one tick per word, readable
        ax.set_xticks(ticks, words, fontsize=8, rotation=90)
        ax.set_yticks(ticks, words, fontsize=8)
        ax.set(xlabel="key (attended-to byte)", ylabel="query byte")
        ax.set_title(f"{label}: layer 0, head {head} (zero above the diagonal = causal)", fontsize=9)
    fig.tight_layout()
    return fig


def word_ticks(text: str) -> tuple[list[int], list[str]]:
    """(position of each word's first byte, the word): tick labels for a byte-level axis.

    >>> word_ticks("The cat sat.")
    ([0, 4, 8], ['The', 'cat', 'sat.'])"""
    ticks, words, pos = [], [], 0
    for word in text.split(" "):
        if word:
            ticks.append(pos)
            words.append(word)
        pos += len(word.encode("utf-8")) + 1
    return ticks, words


def plot_router_load(stats_by_label: dict, config: LLMConfig, n_tokens: int):
    """The share of token-slots each expert got, per layer, one panel per model ({label: router_stats after
    a forward on the same n_tokens}), e.g. random init next to trained."""
    import matplotlib.pyplot as plt
    L, E = config.n_layer, config.n_experts
    fig, axes = plt.subplots(1, len(stats_by_label), figsize=((1.2 * E + 3) * len(stats_by_label), 0.6 * L + 2.5),
                             squeeze=False)
    for ax, (label, stats) in zip(axes[0], stats_by_label.items()):
        load = stats["tokens_per_expert"].float().cpu()                # (L, E) token-slots
        share = load / load.sum(dim=1, keepdim=True)
        im = ax.imshow(share.numpy(), cmap="magma", vmin=0, vmax=max(2 / E, float(share.max())))
        for (i, e), v in zip(torch.cartesian_prod(torch.arange(L), torch.arange(E)).tolist(), share.flatten().tolist()):
            ax.text(e, i, f"{v:.2f}", ha="center", va="center", fontsize=8, color="white" if v < 0.3 else "black")
        ax.set(xlabel="expert", ylabel="layer", xticks=range(E), yticks=range(L))
        ax.set_title(f"{label}, {n_tokens} tokens\n(perfect balance = {1 / E:.2f})", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, label="share of token-slots")
    return fig


def plot_rope_bases(bases=(10000.0, 50000.0), head_dim: int = 64, max_offset: int = 1024):
    """rope_offset_similarity for each base: how alike one vector looks to itself d tokens away."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4))
    far = max_offset // 2
    ax.axvspan(far, max_offset - 1, color="0.93", zorder=0)
    for base in bases:
        sim = rope_offset_similarity(base, head_dim, max_offset)
        ax.plot(sim.numpy(), lw=1, label=f"base {base:,.0f}: mean {sim[far:].mean().item():.2f} over d = "
                                          f"{far}…{max_offset - 1} (shaded)")
    ax.axhline(0, color="gray", lw=0.5)
    ax.set(xlabel="offset d between query and key (tokens)", ylabel="cos similarity of q·R(d)k (q = k)")
    ax.set_title(f"head_dim {head_dim}: a larger base keeps more slow pairs, so far offsets stay distinct "
                 f"from random", fontsize=9)
    ax.legend()
    return fig


def plot_qk_norm_logits(histories: dict):
    """Left: the max attention logit per training step; right: the loss, for each run ({label: history})."""
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for label, h in histories.items():
        a.plot(h["max_logit"], label=label)
        b.plot(h["loss"], label=label)
    a.axhline(math.sqrt(TINY_LESSON_SHAPE["head_dim"]), color="gray", ls="--", label="√head_dim: QK-norm's ceiling")
    a.set(yscale="log", xlabel="training step", ylabel="max |q·k| / √head_dim (log)")
    a.set_title("attention logits: capped with QK-norm, growing without", fontsize=9)
    b.set(xlabel="training step", ylabel="training loss (nats per byte)")
    b.set_title("the loss of the same two runs", fontsize=9)
    a.legend(fontsize=8)
    b.legend(fontsize=8)
    return fig


# --- 11. main ---------------------------------------------------------------------------------------------

PRESETS = {
    "tiny": TINY_REFERENCE_SHAPE,                                     # the shape of tiny_reference.pt
    "linnet": dict(depth=12, block_size=1024, vocab_size=32768, n_experts=8, n_active_experts=2),
}
SAMPLE_TEXT = "The cat sat on the mat. The cat sat on the mat again."


def print_parameter_table(config: LLMConfig):
    """Parameters and active parameters per part (checked against the module, built on the meta device: shapes
    only, no memory), and the FLOPs per trained token."""
    with torch.device("meta"):
        counted = sum(p.numel() for p in LLM(config).parameters())   # .parameters() skips the tied duplicate
    p, f = count_parameters(config), flops_per_token(config)
    assert counted == p["total"], "count_parameters disagrees with the module"
    print(f"{'part':<14}{'parameters':>15}{'active/token':>15}")
    for part in PARTS:
        print(f"{part:<14}{p[part]:>15,}{p['active_experts'] if part == 'experts' else p[part]:>15,}")
    print(f"{'total':<14}{p['total']:>15,}{p['active']:>15,}")
    print(f"FLOPs per trained token at T={config.block_size}: {f:,} ({f / 1e9:.3f} G)")


def print_why_numbers(config: LLMConfig):
    """Section 9's numbers that need only the config: GQA's cache, tied embeddings, MoE vs dense FLOPs."""
    r = moe_vs_dense(config)
    gqa, mha = kv_cache_bytes(config), kv_cache_bytes(LLMConfig(**{**config.to_dict(), "n_kv_head": config.n_head}))
    print(f"KV cache at T={config.block_size}, bf16: {gqa:,} bytes with {config.n_kv_head} KV heads, "
          f"{mha:,} with {config.n_head} ({mha / gqa:.0f}x)")
    print(f"tied embeddings save {tied_embedding_savings(config):,} parameters")
    print(f"MoE: {r['total']:,} stored, {r['active']:,} active; {r['flops_moe']:,} FLOPs per token vs "
          f"{r['flops_dense']:,} for a dense model of the same size ({r['flops_dense'] / r['flops_moe']:.2f}x)")


def train_for_plots(steps: int = 200):
    """The tiny lesson model at random init, and trained `steps` steps with and without QK-norm (section 9)."""
    random_init, _ = train_tiny(steps=0)
    trained, with_norm = train_tiny(steps, track_logits=True)
    _, without_norm = train_tiny(steps, track_logits=True, qk_norm=False)
    for label, h in (("with QK-norm", with_norm), ("without QK-norm", without_norm)):
        print(f"tiny model {label}: loss {h['loss'][0]:.2f} -> {h['loss'][-1]:.2f} in {steps} steps, "
              f"max attention logit {h['max_logit'][0]:.2f} -> {h['max_logit'][-1]:.2f}")
    return random_init, trained, {"with QK-norm (linnet)": with_norm, "without QK-norm": without_norm}


def save_plots(config: LLMConfig, out):
    """The plots that need only the config: the preset's parameter budget, RoPE frequencies, RoPE bases."""
    p = count_parameters(config)
    house.save_plot(plot_param_budget(config), out, "param_budget",
                    f"experts are {p['experts'] / p['total']:.0%} of the parameters, but only "
                    f"{config.n_active_experts} of {config.n_experts} run per token (right bar)")
    house.save_plot(plot_rope_frequencies(config), out, "rope_frequencies",
                    f"{config.head_dim // 2} RoPE wavelengths spaced geometrically from 6 tokens to far "
                    f"beyond the {config.block_size}-token window")
    house.save_plot(plot_rope_bases(), out, "rope_bases",
                    "over the far half of the window (shaded) base 50,000 (linnet) keeps a vector more like "
                    "itself than base 10,000 does (mean 0.32 vs 0.20); single offsets wiggle, so read the mean")


def save_trained_plots(random_init: LLM, trained: LLM, histories: dict, out):
    """Random init next to trained: attention and router load; and the QK-norm logit curves."""
    models = {"random init": random_init, f"trained {len(histories['without QK-norm']['loss'])} steps": trained}
    house.save_plot(plot_attention_map(models, SAMPLE_TEXT), out, "attention_map",
                    "random init: speckle with no structure; trained: bright columns, keys (the first byte, "
                    "spaces) that many later bytes look at")
    batch = real_text_batch(trained)
    stats = {}
    for label, model in models.items():
        model(batch)                                                 # fills model.router_stats
        stats[label] = model.router_stats
    load = trained.router_stats["tokens_per_expert"]
    share = load / load.sum(1, keepdim=True)
    house.save_plot(plot_router_load(stats, trained.config, batch.numel()), out, "router_load",
                    f"the same real text through both routers: trained, every expert still gets work "
                    f"(shares {share.min():.2f}–{share.max():.2f}; the balance loss keeps it from collapsing)")
    off, on = histories["without QK-norm"]["max_logit"], histories["with QK-norm (linnet)"]["max_logit"]
    house.save_plot(plot_qk_norm_logits(histories), out, "qk_norm_logits",
                    f"without QK-norm the largest attention logit climbs from {off[0]:.2f} to {max(off):.0f} "
                    f"(log scale); with it, it stays under √head_dim (max {max(on):.1f})")


def run_checkpoint(args):
    """--checkpoint: load a model (an export, linnet's weights, a 05 latest.pt) and continue --prompt with it."""
    tokenizer = checkpoints.pick_tokenizer(args.checkpoint, args.tokenizer, house.OUT_DIR / "01_tokenizer" / "tokenizer.json")
    enc = tokenizer_lib.load_tokenizer(tokenizer)                # one line if it is missing or corrupt
    model, trained_with = load_any_checkpoint(args.checkpoint)
    checkpoints.check_made_with(args.checkpoint, trained_with, tokenizer)
    if enc.get_vocab_size() > model.config.vocab_size:
        raise house.UserError(f"{tokenizer} has {enc.get_vocab_size():,} tokens but the model only "
                              f"{model.config.vocab_size:,}: pass the tokenizer the model was trained with")
    model = checkpoints.check_finite(model, args.checkpoint).to(house.default_device()).eval()
    print(model.generate(args.prompt, enc=enc, max_new_tokens=args.max_new_tokens, seed=args.seed))


def build_parser() -> argparse.ArgumentParser:
    parser = house.ArgumentParser(description="02 — the linnet-497M MoE transformer: where the parameters live, the "
                                  "FLOPs per token, and plots of the parameter budget, RoPE, attention and the router.")
    house.add_common_args(parser, "02_model")
    add = parser.add_argument
    add("--seed", type=house.seed, default=0, help="random seed for the tiny models' weights and data (default: 0)")
    add("--checkpoint", type=Path, default=None,
        help="load an exported folder, a pytorch_model.bin / .safetensors or a 05 latest.pt, and generate")
    add("--tokenizer", type=Path, default=None, help="tokenizer.json for --prompt / --export (default: an exported "
        "folder's own, else out/01_tokenizer/tokenizer.json; one that differs from the folder's own is refused)")
    add("--prompt", type=house.prompt, default="Hello!", help="prompt for --checkpoint (default: %(default)s)")
    add("--max-new-tokens", type=house.int_from_to(1, 10_000), default=50,
        help="tokens to generate with --checkpoint, at most 10,000 (default: 50)")
    add("--export", type=Path, default=None, metavar="CHECKPOINT", help="write a 05 latest.pt as linnet's published "
        "folder in --out: pytorch_model.bin, config.json, tokenizer.json, tokenizer_config.json")
    add("--overwrite", action="store_true", help="--export: replace an earlier export in --out (nothing else)")
    return parser


@house.speaks
def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.export is not None:
        export_pretrained(args.export, args.out, args.tokenizer, args.overwrite)
        print(f"exported {house.shown(args.export)} to {house.shown(args.out)}/: {', '.join(checkpoints.EXPORT_FILES)} "
              f"(load with LLM.from_pretrained)")
        return print(original_code_line(LLMConfig.from_dict(json.loads((args.out / "config.json").read_text()))))
    if args.checkpoint is not None:
        return run_checkpoint(args)
    house.check_writable(args.out)          # a read-only --out fails now, not after the forward pass
    t0 = time.time()
    torch.manual_seed(args.seed)
    config = LLMConfig(**PRESETS[args.preset])
    print(f"preset {args.preset}: {config}")
    print_parameter_table(config)            # linnet: 497,145,600 parameters, 157,406,976 active per token
    print_why_numbers(config)
    save_plots(config, args.out)
    save_trained_plots(*train_for_plots(), args.out)   # the tiny model whatever the preset: seconds on a CPU
    print(f"done in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
