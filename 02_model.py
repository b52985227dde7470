"""02 — the linnet-497M model: a Mixture-of-Experts transformer, written to be read and to run fast.

What you will learn
  * how one number, `depth`, fixes the whole architecture (12 → 768 wide, 12 heads, 4 KV heads, ffn 2048);
  * the attention block linnet uses: a causal "token-shift" convolution, one fused qkv projection,
    RoPE (base 50000), grouped-query attention, and QK-norm applied after RoPE;
  * the MoE feed-forward: a softmax router picks 2 of 8 SwiGLU experts per token, and the balance loss
    that keeps the router from collapsing onto one expert;
  * the same MoE computed twice: a readable loop over experts, and the fast dropless path that sorts
    token-slots by expert and runs two grouped GEMMs with no host synchronisation (a test proves they agree);
  * where the 497,145,600 parameters live, why only 157,406,976 of them work on each token, and how
    many FLOPs a trained token costs (1.058 GFLOP at depth 12, sequence 1024);
  * how to load linnet's published `pytorch_model.bin` (per-expert keys) into stacked expert weights and back;
  * (section 5b, optional) what changes when the expert GEMMs run in FP8: row-wise scales, 3 mantissa bits,
    and why on linnet's shapes it trains alike but is not faster yet (BENCHMARKS.md, "FP8 experts").
  * (appendix) why one GPU kernel for RoPE + QK-norm is 4.7× faster than the eager ops it replaces (1.47×
    faster than torch.compile's kernels): it reads and writes each byte once instead of about ten times.

How to run
  python 02_model.py --preset tiny     # a depth-2 model on the CPU: table, plots, a forward pass (seconds)
  python 02_model.py                   # linnet-497M built on the meta device (no memory): the real counts
  python 02_model.py --checkpoint DIR_OR_FILE --tokenizer tokenizer.json --prompt "Hello!"
                                       # load the published weights and sample from them

In code (what 05_train.py and 06_eval.py do):
  model_lib = importlib.import_module("02_model")
  net = model_lib.LLM(model_lib.LLMConfig(depth=12, vocab_size=32768))     # random init, linnet's recipe
  logits, loss = net(idx, targets)                                  # (B, T, V), scalar
  experts = model_lib.cast_expert_weights(net)            # 05 on a GPU: bf16 experts, once per step
  logits, loss = net(idx, targets, expert_weights=experts)          # ... shared by every micro-step
  net = model_lib.LLM.from_pretrained("path/to/pytorch_model.bin")      # the published weights
  print(net.generate("Hello!", enc=tokenizer, max_new_tokens=50))

What it writes (out/02_model/): param_budget.png, rope_frequencies.png, rope_bases.png, attention_map.png,
  router_load.png, qk_norm_logits.png (the last three from a tiny model trained for seconds).

Reference numbers (from linnet's model card and docs/ARCHITECTURE.md)
  parameters 497,145,600 unique (tied embedding), 157,406,976 active per token;
  FLOPs per trained token at T=1024: 6·157,406,976 + 12·12·1024·768 = 1,057,688,064;
  tests/data/original_reference.pt (outputs of the original code): logits, eval loss and train loss to ~1e-5.
  measured (BENCHMARKS.md: one H100, torch 2.11, bf16, depth 12, T 1024, random tokens), forward+backward
  of a 16×1024 micro-batch: grouped MoE compiled 287k tokens/s (30.7 % MFU, 19 GB), grouped eager 138k,
  the reference loop eager 57k; a full linnet training step (with Muon + AdamW, 03) 319.5k tokens/s
  (34.2 % MFU; bench/loss_equivalence.py shows the fast and the readable path train alike).
  The original code: 81.8k tokens/s for its full step (docs/PERFORMANCE.md).

Errors (one convention): what a user hands in as a FILE (a checkpoint that does not fit) ends with
`SystemExit("error: ...")` naming the mismatch; what calling code hands to the model (a bad config, a
sequence longer than block_size, a token id >= vocab_size) raises `ValueError` with one sentence —
a training loop should not be able to `sys.exit` from inside `forward`.
Targets equal to -1 are ignored by the loss (nanoGPT's convention: mask padding with -1).

Honest limits
  * the token-id range check runs on CPU tensors only (it needs the values: on a GPU it would cost a host
    sync per step); on CUDA an out-of-range id trips CUDA's own device-side assert instead;
  * the grouped MoE path needs bf16 on CUDA (fp32 CUDA runs use the reference path under "auto");
  * generation is a plain loop (one token per forward, KV cache grown by concatenation): correct and
    simple, not a serving engine. Past block_size it starts a fresh cache over the last block_size tokens.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import re
import sys
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

import house

tokenizer_lib = importlib.import_module("01_tokenizer")   # load_tokenizer, for sampling from a checkpoint


# --- 1. The config: everything follows from `depth` ------------------------------------------------

def round_up(x: int, multiple: int) -> int:
    """Smallest multiple of `multiple` that is >= x. >>> round_up(5461, 64)  → 5504; round_up(512, 64) → 512"""
    return (x + multiple - 1) // multiple * multiple


MOE_IMPLS = ("auto", "reference", "grouped", "grouped_fp8")   # section 5 (5b: grouped_fp8)
ROPE_IMPLS = ("auto", "reference", "fused")                    # section 4: the plain ops, or one GPU kernel


@dataclass
class LLMConfig:
    """linnet's config. Positional order is the original's: LLMConfig(depth, block_size, vocab_size,
    n_experts, n_active_experts). Fields left None are derived from `depth` in __post_init__:

    >>> c = LLMConfig(depth=12)
    >>> c.n_layer, c.n_head, c.n_kv_head, c.n_embd, c.ffn_dim
    (12, 12, 4, 768, 2048)

    Every derived field can be overridden (handy for tests). `vocab_size` is padded up to a multiple
    of 64 (32768 already is). `moe_impl`: "reference" (loop over experts), "grouped" (sorted token-slots
    + grouped GEMMs), "auto" (grouped, except fp32 on CUDA where grouped_mm does not run) or "grouped_fp8"
    (the grouped GEMMs in FP8, section 5b: a training switch; loading a checkpoint sets "auto" again).
    If you change `depth` on an existing config, build a new one: derived fields are filled only once.
    `qk_norm=False` drops QK-norm (no weights change): only for section 8's experiment; linnet has it on.
    The last three fields are linnet+ switches (appendix "linnet+", 05's --preset linnet-plus); all off = linnet."""
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
    balance_coef: float = 0.01
    qk_norm: bool = True          # linnet: True. False only for the experiment of section 8 (no weights change)
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
        if self.moe_impl not in MOE_IMPLS:
            raise ValueError(f"moe_impl must be one of {', '.join(MOE_IMPLS)}, got {self.moe_impl!r}")
        if self.rope_impl not in ROPE_IMPLS:
            raise ValueError(f"rope_impl must be one of {', '.join(ROPE_IMPLS)}, got {self.rope_impl!r}")


    def to_dict(self) -> dict:
        """Plain dict (JSON-able) with every field, derived ones included: what a checkpoint stores."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LLMConfig":
        """Inverse of to_dict. Keys that are not fields (e.g. extra keys in a Hub config.json) are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# Three laptop-sized shapes, one per purpose, each named where it is used (pass them as LLMConfig(**shape)):
# TINY_REFERENCE_SHAPE — a small shape linnet's own LLMConfig can build from its five numbers (02's tiny
# preset, its parameter table and the tests): depth 2, head_dim 64, 128 wide ...
TINY_REFERENCE_SHAPE = dict(depth=2, block_size=64, vocab_size=512, n_experts=4, n_active_experts=2)
# ... TINY_TRAINING_SHAPE — the model that 05's tiny preset trains and 06 scores as its random-weights control:
# ~0.3M parameters at vocab 1,024 (64 wide, head_dim 32, 2 layers, 4 experts top-2) ... and TINY_LESSON_SHAPE
# (section 8) — the same model reading bytes (vocab 256), for the experiments this lesson trains itself.
TINY_TRAINING_SHAPE = dict(depth=2, n_experts=4, n_active_experts=2, n_embd=64, n_head=2, n_kv_head=1,
                           head_dim=32, ffn_dim=128)


# --- 2. Counting parameters and FLOPs (no model needed) --------------------------------------------

PARTS = ("embedding", "attention", "experts", "router", "norms+conv")   # what count_parameters splits into


def count_parameters(config: LLMConfig) -> dict:
    """Parameters by part, from the config alone. Embedding is counted once (tied with lm_head).

    >>> p = count_parameters(LLMConfig(depth=12))
    >>> p["total"], p["active"]
    (497145600, 157406976)

    "active" is what one token touches: everything except the experts it was not routed to."""
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
    """x · rsqrt(mean(x²) + 1e-6) · weight, weight starting at 1 (no bias, no mean subtraction).
    F.rms_norm computes exactly this formula in one fused kernel."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):  # (..., C)
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def token_shift(x, weight, history=None):
    """Causal depthwise conv with kernel 3: out[t] = w0·x[t-2] + w1·x[t-1] + w2·x[t], per channel.

    Same numbers as `nn.Conv1d(C, C, 3, groups=C, bias=False)` on x left-padded with 2 zeros (the test
    checks it), written as three shifted multiply-adds, which is faster than a depthwise conv kernel.
    `history` (B, 2, C) are the two inputs before x when generating with a cache (zeros at the start).
    x: (B, T, C); weight: (C, 1, 3) → (B, T, C). One channel, weights (w0, w1, w2) = (0.25, 0.5, 1):

    >>> x = torch.tensor([[[1.0], [10.0], [100.0], [1000.0]]])               # (1, 4, 1)
    >>> token_shift(x, torch.tensor([[[0.25, 0.5, 1.0]]]))[0, :, 0].tolist()  # out[3] = 2.5 + 50 + 1000
    [1.0, 10.5, 105.25, 1052.5]

    So every token enters attention already mixed with the two before it (a cheap local n-gram feature)."""
    B, T, C = x.shape
    if history is None:
        padded = F.pad(x, (0, 0, 2, 0))                    # (B, T+2, C): two zero rows in front
    else:
        padded = torch.cat([history.to(x.dtype), x], dim=1)
    w = weight.to(x.dtype).view(C, 3)                      # (C, 3)
    return padded[:, 0:T] * w[:, 0] + padded[:, 1:T + 1] * w[:, 1] + padded[:, 2:T + 2] * w[:, 2]


class RotaryEmbedding(nn.Module):
    """RoPE, "rotate half" convention: dims i and i+head_dim/2 form a pair rotated by angle pos·inv_freq[i].

    inv_freq[i] = base^(-2i/head_dim): with base 50000 and head_dim 64 the 32 frequencies run from 1
    (a full turn every 6.3 tokens) down to 50000^(-62/64) ≈ 2.8e-5 (a turn every ~220k tokens). The buffer
    is saved in the state_dict because linnet's checkpoint has it (`rotary_emb.inv_freq`, shape [32]).
    The cos/sin of every angle for the first `max_len` positions are computed once, into two tables
    (not saved: derived from inv_freq); calling the module returns slices of them.

    >>> rotary = RotaryEmbedding(head_dim=4, base=4.0, max_len=8)    # inv_freq [1, 0.5]
    >>> cos, sin = rotary(T=3)                                       # positions 0, 1, 2: (3, 4) each
    >>> [round(v, 4) for v in sin[2].tolist()]    # position 2, pairs (0, 2) and (1, 3): sin 2.0, sin 1.0
    [0.9093, 0.8415, 0.9093, 0.8415]

    Why tables (nanochat does the same): under torch.compile, cos/sin made inside the graph are fused into
    every kernel that uses them and recomputed there, per element of q and k, forward and backward. That
    slowed RoPE's backward enough that reading tables instead took a full H100 step from 304.4k to 309.4k tokens/s
    (BENCHMARKS.md, rows 5 and 6);
    reading a (1024, 64) table costs almost nothing."""

    def __init__(self, head_dim: int, base: float, max_len: int = 1024):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))  # (hd/2,)
        self.register_buffer("inv_freq", inv_freq, persistent=True)
        self.max_len = max_len
        self.build_tables()

    def build_tables(self):
        """cos and sin of pos·inv_freq[i] for positions 0..max_len-1, each (max_len, head_dim), in fp32.

        Runs once here, and once more in load_linnet_state_dict, so that the tables follow the inv_freq a
        checkpoint brings (linnet's may be rounded to bf16). A model cast with .to(torch.bfloat16) (06 does,
        for evaluation) casts these buffers too and then reads bf16 cos/sin — as nanochat does."""
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
    """x: (..., T, [heads,] hd); cos, sin: (T, [1,] hd), broadcast over the rest. Rotation computed in fp32,
    returned in x's dtype."""
    return (x.float() * cos + rotate_half(x.float()) * sin).to(x.dtype)


# --- 4. Attention: token shift → qkv → RoPE → QK-norm → causal GQA ---------------------------------

@dataclass
class LayerCache:
    """What one block must remember to process the next token without re-reading the prompt:
    keys and values (B, n_kv_head, t, hd) after RoPE and QK-norm, and the last two block inputs
    (B, 2, C) that the token-shift conv looks back at."""
    k: torch.Tensor | None = None
    v: torch.Tensor | None = None
    shift: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return 0 if self.k is None else self.k.shape[2]


def rope_qk_norm_reference(qkv, cos, sin, n_head: int, n_kv_head: int, positions=None, qk_norm: bool = True):
    """qkv (B, T, (nh + 2·nkv)·hd) → q (B, T, nh, hd), k and v (B, T, nkv, hd): RoPE on q and k with the angles
    in row t of cos, sin (T, hd) (rows positions[b, t] when positions (B, T) is given), then QK-norm. The plain
    ops; `rope_qk_norm` (appendix) is the same maths in one GPU kernel (same arguments, a test compares them)."""
    B, T, _ = qkv.shape
    hd = cos.shape[-1]
    q, k, v = qkv.split([n_head * hd, n_kv_head * hd, n_kv_head * hd], dim=-1)
    q, k, v = q.view(B, T, n_head, hd), k.view(B, T, n_kv_head, hd), v.view(B, T, n_kv_head, hd)
    if positions is None:
        cos, sin = cos[:, None, :], sin[:, None, :]                        # (T, 1, hd): same angles for all heads
    else:
        cos, sin = cos[positions][:, :, None, :], sin[positions][:, :, None, :]   # (B, T, 1, hd)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    # QK-norm: parameter-free LayerNorm over head_dim, AFTER RoPE (linnet's order). It has no weights, so
    # qk_norm=False (section 8's experiment) keeps every checkpoint key; linnet always has it on.
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
        self.rope_impl = config.rope_impl  # the same maths in one GPU kernel where it can (appendix)

    def project(self, x, cache: LayerCache | None = None):
        """Steps 1–5 of the block: returns q (B, n_head, T, hd), k and v (B, n_kv_head, T, hd)."""
        history = None if cache is None else cache.shift
        x = token_shift(x, self.l_conv.weight, history)                    # (B, T, C)
        q, k, v = self.qkv_heads(self.c_attn(x), offset=0 if cache is None else cache.length)
        # Attention wants heads before time: transposed views, no copy (SDPA reads them as they are).
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)   # (B, nh, T, hd), (B, nkv, T, hd) ×2

    def qkv_heads(self, qkv, offset: int = 0, positions=None):
        """Steps 3–4: the fused projection qkv (B, T, C + 2·kv) → q (B, T, nh, hd), k and v (B, T, nkv, hd), q and
        k rotated (RoPE) at each token's position and QK-normed. Positions offset..offset+T-1, or `positions`
        (B, T) when given (06 packs several sequences in a row). `rope_qk_norm_reference` is the plain version;
        on a GPU `rope_qk_norm` (appendix) does the same in one kernel (set_rope_impl chooses)."""
        rotary = self.rotary_emb
        cos, sin = rotary(qkv.shape[1], offset) if positions is None else (rotary.cos_table, rotary.sin_table)
        run = rope_qk_norm if fused_rope_ok(self.rope_impl, qkv, self.head_dim) else rope_qk_norm_reference
        return run(qkv, cos, sin, self.n_head, self.n_kv_head, positions, self.qk_norm)

    def forward(self, x, cache: LayerCache | None = None):  # x (B, T, C)
        B, T, C = x.shape
        past = 0 if cache is None else cache.length
        q, k, v = self.project(x, cache)
        if cache is not None:                                   # append this step, keep conv history
            cache.k = k if cache.k is None else torch.cat([cache.k, k], dim=2)
            cache.v = v if cache.v is None else torch.cat([cache.v, v], dim=2)
            prev = x.new_zeros(B, 2, C) if cache.shift is None else cache.shift
            cache.shift = torch.cat([prev, x], dim=1)[:, -2:].detach()
            k, v = cache.k, cache.v
        # enable_gqa: query head h reads KV head h // (n_head / n_kv_head) — the same as
        # k.repeat_interleave(n_head // n_kv_head, dim=1), without materialising the copies.
        if past == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        else:  # new tokens at positions past..past+T-1 see every key up to their own position
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
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
    """linnet's load-balance loss: E · Σ_e (mean over tokens of prob_e)², 1.0 when the mean router
    probability is uniform and up to E when every token prefers one expert. (Not the Switch-Transformer
    loss, which multiplies the fraction of tokens actually routed to e by the mean probability.)

    >>> balance_loss(torch.full((5, 8), 1 / 8)).item(), balance_loss(torch.eye(8)[[0, 0]]).item()
    (1.0, 8.0)"""
    mean_prob = probs.mean(dim=0)                           # (E,)
    return probs.shape[-1] * (mean_prob ** 2).sum()


def moe_reference(x, w_v, c_proj, top_e, top_w):
    """The readable MoE: for each expert, gather its tokens, run its SwiGLU, add back weight·output.

    x (N, C); w_v (E, 2F, C); c_proj (E, C, F); top_e, top_w (N, k) → (N, C).
    Data-dependent shapes (how many tokens expert e got) make this a host sync per expert: fine to read,
    slow on a GPU — it is the loop the original linnet code ran."""
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
    4. un-permute with a gather by the inverse permutation, then weight and sum the k slots of each
       token (faster than index_add_, see docs/PERFORMANCE.md).
    grouped_mm wants 16-byte aligned strides (C and F multiples of 8 in bf16) and, on CUDA, bf16."""
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


# --- 5b. FP8 experts (optional: moe_impl="grouped_fp8", 05's --fp8): the same GEMMs in 8-bit floats ------
# The expert GEMMs are two thirds of linnet's FLOPs. Hopper's tensor cores multiply float8 numbers at twice
# the bf16 peak rate (here they reach ≈ 1.45× bf16's measured rate), so the experts can run in FP8 while
# everything else (master weights, optimizer, router, attention, norms, loss) stays as it is. What changes
# is rounding: float8_e4m3fn keeps 3 mantissa bits (bf16 keeps 7), so each input of the expert GEMMs is
# rounded to 4 significant bits — an error of up to 1/16, about one decimal digit — before the multiply;
# the products are summed at higher precision and the result comes back in bf16. The forward GEMMs and the
# gradients flowing back to the tokens use FP8; the weight gradients stay bf16. A float8 number only reaches
# ±448, so every row gets its own scale first (`quantize_rows`). The scale runs along the dimension the GEMM
# sums over (K in x @ wᵀ), so it can be applied to the result afterwards: out = (xq @ wqᵀ) · x_scale · w_scale.
# Measured on an H200 (BENCHMARKS.md, "FP8 experts"): over 200 steps FP8's loss stays within the bf16-vs-bf16
# noise, and its GEMMs run at ~1,000 TFLOP/s against bf16's ~690, saving ~7 ms per 32×1024 micro-step — but
# rounding the big activations to FP8 (find each row's largest value, scale, round) slows the kernels around
# the GEMMs by about as much, so the whole step is no faster (343k vs 345k tokens/s). FP8 pays where the
# GEMMs are large next to the activations they read (wider models), or where the rounding happens inside
# kernels that write those activations anyway — hand-written kernels this repo does not have yet.

FP8_MAX = 448.0   # the largest float8_e4m3fn value (4 exponent bits, 3 mantissa bits)


def quantize_rows(x):  # (..., K) → q (..., K) float8_e4m3fn, scale (...,) fp32, with x ≈ q · scale
    """Row-wise FP8: scale = amax(|row|) / 448, rounded UP to a power of two (so multiplying by it is exact
    and no value can overflow), then q = row / scale rounded to the nearest float8.

    >>> q, scale = quantize_rows(torch.tensor([[1.0, -0.3, 0.01], [100.0, 3.0, 0.5]]))
    >>> scale.tolist()                                   # 1/448 → 2^-8;  100/448 → 2^-2
    [0.00390625, 0.25]
    >>> (q.float() * scale[:, None]).tolist()            # -0.3 → -0.3125 and 100 → 96: 3 mantissa bits
    [[1.0, -0.3125, 0.009765625], [96.0, 3.0, 0.5]]

    A zero row gets a tiny scale and stays zero."""
    x = x.contiguous()
    amax = x.abs().amax(dim=-1).float()                                  # (...,)
    scale = power_of_two_scale(amax)                                     # (...,)
    q = (x.float() / scale.unsqueeze(-1)).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    return q, scale


def power_of_two_scale(amax):
    """The smallest power of two s with amax / s <= 448 (amax 0 → 2^-108: harmless, the row stays 0)."""
    return torch.exp2(torch.ceil(torch.log2(amax.clamp_min(1e-30) / FP8_MAX)))


def moe_grouped_fp8(x, w_v, c_proj, top_e, top_w):
    """moe_grouped with both expert GEMMs in FP8: their forward and their input gradient (the weight
    gradient stays bf16, see fp8_grouped_linear in the appendix for why).

    Same steps as moe_grouped, with two differences:
    1. each expert's rows are padded with zero rows to a multiple of 16 (`expert_rows_padded`), so every
       group starts on a 16-row boundary, as FP8 grouped kernels want;
    2. the GEMMs are `fp8_grouped_linear` (appendix): quantize_rows on the tokens and the weights, an FP8
       grouped GEMM on Hopper (torch._scaled_grouped_mm), the plain `scaled_grouped_mm_reference`
       (dequantise, multiply in fp32) anywhere else — so a CPU run shows the same rounding, not the speed.
    x (N, C); w_v (E, 2F, C) and c_proj (E, C, F), tensors or FP8Weights; top_e, top_w (N, k) → (N, C)."""
    N, C = x.shape
    w_v, c_proj = as_fp8_weight(w_v, x.dtype), as_fp8_weight(c_proj, x.dtype)   # or made once per step
    E, k = w_v.w.shape[0], top_e.shape[1]
    row_slot, offsets, slot_row = expert_rows_padded(top_e.reshape(-1), E)   # (M,), (E,), (N·k,)
    token = torch.where(row_slot < N * k, row_slot // k, N)             # (M,) token of each row; N = padding
    x_rows = torch.cat([x, x.new_zeros(1, C)])[token]                    # (M, C), padding rows are zeros
    h = fp8_grouped_linear(x_rows, offsets, w_v)                         # (M, 2F)
    y_rows = fp8_grouped_linear(swiglu(h), offsets, c_proj)              # (M, C)
    y_slots = y_rows[slot_row].view(N, k, C)                             # (N, k, C)
    return (y_slots * top_w.unsqueeze(-1).to(y_slots.dtype)).sum(dim=1).to(x.dtype)   # (N, C)


def expert_rows_padded(flat_e, E: int, align: int = 16):
    """Where each token-slot goes when the rows are sorted by expert and each expert's group is padded to a
    multiple of `align` rows. No host sync: the number of rows M = S + E·(align-1), rounded up to `align`,
    is fixed in advance (S = N·k slots); the last expert's group takes the rows left over.

    Returns row_slot (M,): the slot in each row (S for padding); offsets (E,) int32: where each group ends;
    slot_row (S,): the row of each slot.

    >>> row_slot, offsets, slot_row = expert_rows_padded(torch.tensor([1, 0, 1]), E=2, align=4)
    >>> row_slot.tolist(), offsets.tolist(), slot_row.tolist()   # expert 0: slot 1; expert 1: slots 0, 2
    ([1, 3, 3, 3, 0, 2, 3, 3, 3, 3, 3, 3], [4, 12], [4, 0, 5])"""
    S = flat_e.numel()
    M = (S + E * (align - 1) + align - 1) // align * align
    order, counts = sort_slots(flat_e, E)                               # (S,), (E,)
    padded = (counts + align - 1) // align * align                      # (E,) rows per group
    group_start = torch.cumsum(padded, 0) - padded                      # (E,) first row of each group
    sorted_start = torch.cumsum(counts, 0) - counts                     # (E,) first slot of each expert in `order`
    e_sorted = flat_e[order]
    rank = torch.arange(S, device=flat_e.device) - sorted_start[e_sorted]   # place of a slot within its expert
    slot_row = torch.empty_like(order)
    slot_row[order] = group_start[e_sorted] + rank                      # (S,)
    row_slot = torch.full((M,), S, dtype=torch.int64, device=flat_e.device)
    row_slot[slot_row] = torch.arange(S, device=flat_e.device)
    offsets = torch.cumsum(padded, 0)
    offsets[-1] = M                                                     # the last group takes the rest
    return row_slot, offsets.to(torch.int32), slot_row


def compute_dtype(x):
    """The dtype matmuls run in: autocast's (bf16) when autocast is on, else x's own."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


class MoE(nn.Module):
    """Router + E SwiGLU experts, stacked: w_v (E, 2F, C) [gate rows, then value rows], c_proj (E, C, F).

    Stacking (instead of linnet's per-expert Linear modules) lets one grouped GEMM run all experts;
    load_linnet_state_dict / export_linnet_state_dict convert between the two layouts."""

    def __init__(self, config: LLMConfig):
        super().__init__()
        C, Fd, E = config.n_embd, config.ffn_dim, config.n_experts
        self.n_experts, self.top_k, self.impl = E, config.n_active_experts, config.moe_impl
        self.router = nn.Linear(C, E, bias=False)
        self.w_v = nn.Parameter(torch.empty(E, 2 * Fd, C))
        self.c_proj = nn.Parameter(torch.empty(E, C, Fd))

    def choose_impl(self, x) -> str:
        """"auto": grouped in bf16 (CUDA or CPU) and in fp32 on an eager CPU (faster there than the loop).
        fp32 on CUDA, or fp32 under torch.compile, falls back to the reference loop: grouped_mm's CUDA
        kernel and its compile-time shape function accept bf16 only."""
        if self.impl != "auto":
            return self.impl
        if compute_dtype(x) == torch.bfloat16:
            return "grouped"
        if x.device.type == "cpu" and not torch.compiler.is_compiling():
            return "grouped"
        return "reference"

    def forward(self, x, expert_weights=None):  # x (B, T, C) → (B, T, C), plus the router's numbers
        """`expert_weights`: a (w_v, c_proj) pair to run the experts with instead of the fp32 parameters
        (cast_expert_weights makes them once per training step); None: the parameters themselves."""
        B, T, C = x.shape
        x_flat = x.reshape(B * T, C)                            # (N, C)
        probs, top_w, top_e = route(self.router(x_flat), self.top_k)   # (N, E), (N, k), (N, k)
        xc = x_flat.to(compute_dtype(x))
        run = {"grouped": moe_grouped, "reference": moe_reference, "grouped_fp8": moe_grouped_fp8}[self.choose_impl(x)]
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

class Block(nn.Module):
    """Pre-norm residual block: x + Attention(RMSNorm(x)), then x + MoE(RMSNorm(x))."""

    def __init__(self, config: LLMConfig):
        super().__init__()
        self.ln1 = RMSNorm(config.n_embd)
        self.ln2 = RMSNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.moe = MoE(config)

    def forward(self, x, cache: LayerCache | None = None, expert_weights=None):  # (B, T, C)
        x = x + self.attn(self.ln1(x), cache)
        moe_out, router = self.moe(self.ln2(x), expert_weights)
        return x + moe_out, router


class LLM(nn.Module):
    """linnet: token embedding → depth × Block → RMSNorm → lm_head (tied to the embedding).

    forward(idx (B, T) int64, targets (B, T) or None) → (logits (B, T, V), loss or None).
    loss = cross-entropy (targets == -1 ignored) + balance_coef · mean over layers of the balance loss
    in training mode; cross-entropy alone in eval mode (linnet's semantics).
    After every forward, `self.router_stats` holds detached device tensors (no host sync):
    tokens_per_expert (n_layer, E), mean_prob (n_layer, E), entropy (n_layer,) in nats."""

    def __new__(cls, config: LLMConfig | None = None, *args, **kwargs):
        """LLM(config) builds an LLMPlus when a linnet+ switch is on (appendix "linnet+"), so every loader
        works unchanged; with linnet's config it is this plain class."""
        if cls is LLM and isinstance(config, LLMConfig) and plus_switches(config):
            cls = LLMPlus
        return super().__new__(cls)

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
        """N(0, 0.02) for every Linear and the experts; 0.02/√(2·n_layer) for the two output projections
        of each block (attn.c_proj, the experts' c_proj); conv keeps PyTorch's default; norms 1."""
        std, out_std = 0.02, 0.02 / math.sqrt(2 * self.config.n_layer)
        nn.init.normal_(self.lm_head.weight, 0.0, std)              # also the embedding (tied)
        for block in self.transformer.h:
            nn.init.normal_(block.attn.c_attn.weight, 0.0, std)
            nn.init.normal_(block.attn.c_proj.weight, 0.0, out_std)
            nn.init.normal_(block.moe.router.weight, 0.0, std)
            nn.init.normal_(block.moe.w_v, 0.0, std)
            nn.init.normal_(block.moe.c_proj, 0.0, out_std)

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
        """idx (B, T) → (logits (B, T, V), loss or None). `caches`: one LayerCache per layer (generation);
        `expert_weights`: one (w_v, c_proj) pair per layer from cast_expert_weights (None: the parameters)."""
        self.check_input(idx)
        x, routers = self.hidden(idx, caches, expert_weights)        # (B, T, C)
        logits = self.head(x)                                        # (B, T, V)
        self.router_stats = {name: torch.stack([r[name] for r in routers]).detach()
                             for name in ("tokens_per_expert", "mean_prob", "entropy")}
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1)
            if self.training:
                balance = torch.stack([r["balance"] for r in routers]).sum() / self.config.n_layer
                loss = loss + self.config.balance_coef * balance
        return logits, loss

    def head(self, x):  # (..., C) → (..., V)
        """The tied lm_head (linnet+ with logit_softcap also squashes the logits: appendix "linnet+")."""
        return self.lm_head(x)

    def hidden(self, idx, caches: list[LayerCache] | None = None, expert_weights=None):
        """Everything before the lm_head: embedding → blocks → final norm. idx (B, T) → x (B, T, C) and
        the router numbers of each layer. 06 scores HellaSwag from here, applying the lm_head to few rows."""
        x = self.transformer.wte(idx)                                # (B, T, C)
        routers = []
        for i, block in enumerate(self.transformer.h):
            x, router = block(x, None if caches is None else caches[i],
                              None if expert_weights is None else expert_weights[i])
            routers.append(router)
        return self.transformer.ln_f(x), routers

    # --- generation -------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, prompt, enc=None, max_new_tokens: int = 100, temperature: float = 1.0,
                 top_k: int | None = 50, use_cache: bool = True, seed: int | None = None,
                 eos_id: int | None = None):
        """Continue `prompt` (a str, encoded with `enc`, or a list of token ids).

        temperature 0 = greedy; top_k keeps the k most likely tokens before sampling; `seed` makes the
        sampling repeatable. Returns text (prompt + continuation) when given a str, else the list of ids.
        `enc` is anything with encode/decode: a `tokenizers.Tokenizer` (encode returns an Encoding with
        .ids) or a tiktoken-style encoder returning a list. Stops early at `eos_id` if given."""
        if isinstance(prompt, str):
            if enc is None:
                raise ValueError("a text prompt needs enc= (a tokenizer with encode/decode), or pass token ids")
            encoded = enc.encode(prompt)
            ids = list(getattr(encoded, "ids", encoded))
        else:
            ids = [int(i) for i in prompt]
        if not ids:
            raise ValueError("the prompt is empty: give at least one token")
        device = next(self.parameters()).device
        gen = torch.Generator(device=device)
        gen.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, (1,))))  # global RNG
        was_training = self.training
        self.eval()
        try:
            out = self._sample(ids, max_new_tokens, temperature, top_k, use_cache, gen, eos_id, device)
        finally:
            self.train(was_training)
        return enc.decode(out) if isinstance(prompt, str) else out

    def _sample(self, ids, max_new_tokens, temperature, top_k, use_cache, gen, eos_id, device):
        block = self.config.block_size
        ids = list(ids)
        caches, feed = None, ids[-block:]
        for _ in range(max_new_tokens):
            if not use_cache or caches is None or caches[0].length >= block:
                caches = [LayerCache() for _ in self.transformer.h] if use_cache else None
                feed = ids[-block:]                                    # (re)read the whole window
            logits, _ = self(torch.tensor([feed], device=device), caches=caches)
            logits = logits[0, -1].float()                             # (V,)
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
    def from_pretrained(cls, path, config: LLMConfig | None = None, device: str = "cpu",
                        moe_impl: str = "auto") -> "LLM":
        """Build and load a model from a pytorch_model.bin / .safetensors file, or a directory holding
        one (plus an optional config.json, whose every claim the weights can show is checked against them).
        Without config.json: the config an export keeps inside its pytorch_model.bin, else (linnet's own file)
        depth, vocab, experts, widths read from the tensor shapes (block_size stays linnet's 1024, with a note)."""
        weights, config_json = find_checkpoint(path)
        sd = read_state_dict(weights)
        saved = saved_config(sd)                                        # an export's own record, or None
        if config is None and config_json is not None:
            config = read_config_json(config_json, sd, moe_impl)        # checked against the weights
        elif config is None and saved is not None:                     # an export whose config.json went missing
            config = config_from_claims(saved, weights, sd, moe_impl)
        elif config is None:
            config = infer_config(sd, moe_impl, path=weights)
        with torch.device(device):
            model = cls(config)
        load_linnet_state_dict(model, sd)
        return model


def cast_expert_weights(model, dtype=torch.bfloat16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One (w_v, c_proj) pair per layer, cast to `dtype` — made once per training step and handed to every
    micro-step as `model(idx, targets, expert_weights=...)`, instead of casting the fp32 expert weights
    again inside each micro-step (16 times per linnet step: 453M weights each time).

    Same maths: the copies are ordinary autograd nodes (w.to(bf16)), so each micro-step's backward flows
    through them into the fp32 .grad exactly as before (the cast saves nothing for backward, so every
    micro-step can backpropagate through it). 05's train_step does this on a GPU; the test checks that
    the gradients are bit-identical with and without it.

    With moe_impl "grouped_fp8" each weight also brings its two FP8 copies (section 5b, `fp8_weight`), so
    they too are made once per step.

    >>> [tuple(w.shape) for w in cast_expert_weights(LLM(LLMConfig(**TINY_REFERENCE_SHAPE)))[0]]
    [(4, 768, 128), (4, 128, 384)]"""
    pairs = [(block.moe.w_v.to(dtype), block.moe.c_proj.to(dtype)) for block in model.transformer.h]
    if model.config.moe_impl == "grouped_fp8":
        return [(fp8_weight(w_v), fp8_weight(c_proj)) for w_v, c_proj in pairs]
    return pairs


# --- 7. Looking inside: attention weights --------------------------------------------------------------

@torch.no_grad()
def attention_weights(model: LLM, idx, layer: int = 0):
    """Softmax attention probabilities (B, n_head, T, T) of block `layer` — what SDPA computes inside."""
    x = model.transformer.wte(idx)
    for block in model.transformer.h[:layer]:
        x, _ = block(x)
    attn = model.transformer.h[layer].attn
    q, k, _ = attn.project(model.transformer.h[layer].ln1(x))
    k = k.repeat_interleave(attn.n_head // attn.n_kv_head, dim=1)      # (B, nh, T, hd)
    scores = q @ k.transpose(-2, -1) / math.sqrt(attn.head_dim)       # (B, nh, T, T)
    T = idx.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=idx.device).tril()
    return scores.masked_fill(~causal, float("-inf")).softmax(-1)


# --- 8. Why each choice: measured -----------------------------------------------------------------------
# Each architecture choice of linnet, next to a number that shows what it buys. The first four need only the
# config (token shift's worked example is in its docstring, section 3); the last ones train the tiny model
# for a few seconds on real text (bytes as token ids) and compare.

def kv_cache_bytes(config: LLMConfig, seq_len: int | None = None, batch: int = 1, dtype_bytes: int = 2) -> int:
    """GQA: bytes of keys + values a generating model keeps, 2 · n_layer · n_kv_head · head_dim · T · batch · bytes.

    Grouped-query attention lets n_head / n_kv_head query heads share one K/V head, so the cache shrinks by
    that factor. linnet (depth 12: 12 query heads, 4 KV heads, head_dim 64) at T = 1024 in bf16, then the same
    model with one KV head per query head (plain multi-head attention):

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
    """MoE: parameters stored vs FLOPs per trained token, next to a dense model holding the same total
    (every weight used by every token; same attention term, from flops_per_token's formula).

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

    Take q = k with equal energy in every pair; RoPE rotates pair i by d·inv_freq[i], so the cosine
    similarity of q at position d with k at position 0 is mean_i cos(d · inv_freq[i]). Fast pairs spin and
    average out; slow pairs stay near 1 and are what distinguishes "far" from "very far". The slowest pair
    turns 1023 · base^(-62/64) radians across linnet's window: 0.136 at base 10,000, 0.029 at 50,000; 14 vs 16
    of the 32 pairs turn less than once in 1024 tokens. The curve wiggles (the pairs' cosines beat against
    each other), so compare bases over a range, not at one offset: over d = 512…1023 the mean similarity is
    0.20 at base 10,000 and 0.32 at 50,000, and base 50,000 is above base 10,000 at most of those offsets
    (plot_rope_bases).

    >>> [round(rope_offset_similarity(b)[512:].mean().item(), 2) for b in (10000.0, 50000.0)]
    [0.2, 0.32]"""
    rotary = RotaryEmbedding(head_dim, base, max_len=max_offset)
    return rotary.cos_table[:, : head_dim // 2].mean(dim=1)             # (max_offset,)


def tiny_text_bytes(max_bytes: int = 300_000):
    """Real text as byte ids (int64, each < 256), for the tiny model to learn from in seconds: Shakespeare
    from the corpus that ships in embedded/corpus when present, else this file's own source code."""
    source = house.EMBEDDED_CORPUS_DIR / "shakespeare.jsonl.zst"
    if source.is_file():
        chunks, total = [], 0
        for text in house.iter_texts([source]):
            chunks.append(text)
            total += len(text)
            if total >= max_bytes:
                break
        text = "\n".join(chunks)
    else:
        text = Path(__file__).read_text(encoding="utf-8")
    return torch.tensor(list(text.encode("utf-8")[:max_bytes]), dtype=torch.long)   # (n_bytes,)


@torch.no_grad()
def max_attention_logit(model: LLM, idx) -> float:
    """The largest |q·k|/√head_dim any head of any layer computes on idx (causal positions only): the
    number softmax sees. With QK-norm, q and k have norm √head_dim, so it can never pass √head_dim (8 for
    linnet's head_dim 64); without it nothing bounds it, and a logit of 30 makes softmax one-hot."""
    x, largest = model.transformer.wte(idx), 0.0
    T = idx.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=idx.device).tril()
    for block in model.transformer.h:
        q, k, _ = block.attn.project(block.ln1(x))
        k = k.repeat_interleave(block.attn.n_head // block.attn.n_kv_head, dim=1)   # (B, nh, T, hd)
        scores = (q @ k.transpose(-2, -1)).abs() / math.sqrt(block.attn.head_dim)    # (B, nh, T, T)
        largest = max(largest, float(scores.masked_fill(~causal, 0).max()))
        x, _ = block(x)
    return largest


# The model section 8 trains: 05's tiny training shape (64 wide, 2 layers, 4 experts top-2, head_dim 32),
# reading bytes (vocab 256) in 64-byte windows: ~0.1M parameters, a few seconds for 200 steps on one core.
TINY_LESSON_SHAPE = dict(TINY_TRAINING_SHAPE, block_size=64, vocab_size=256)


def train_tiny(steps: int = 200, batch: int = 8, lr: float = 3e-3, seed: int = 0, data=None,
               track_logits: bool = False, **overrides) -> tuple[LLM, dict]:
    """Train TINY_LESSON_SHAPE (plus `overrides`, e.g. qk_norm=False) with plain AdamW on random windows of
    real text (tiny_text_bytes), bytes as tokens. Seconds on a CPU; steps=0 returns the random init.

    Returns (model in eval mode, history) with history["loss"] (training loss per step, balance term
    included) and, if track_logits, history["max_logit"] (max_attention_logit on that step's batch).
    Measured (the embedded Shakespeare, seeds 0, 1, 2; 2026-12-04): the loss falls from 5.53 to 2.26 ± 0.02
    nats per byte in 200 steps (mean of the last 20 steps); the max attention logit stays ≤ 5.5 (under √32)
    with QK-norm but peaks at 24 ± 6 without it (27.4, 27.9, 17.1). At lr 1e-2 for 150 steps (notebook 02's
    knob cell) the peak without QK-norm is in the hundreds, and the seed decides how far: 253, 194, 139."""
    torch.manual_seed(seed)
    model = LLM(LLMConfig(**{**TINY_LESSON_SHAPE, **overrides})).train()
    data = tiny_text_bytes() if data is None else data
    gen = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    history = dict(loss=[], max_logit=[])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)            # tensors this small: one thread beats several fighting over the CPU
    try:
        train_steps(model, data, optimizer, history, steps, batch, gen, track_logits)
    finally:
        torch.set_num_threads(threads)
    return model.eval(), history


def train_steps(model: LLM, data, optimizer, history: dict, steps: int, batch: int, gen, track_logits: bool):
    """train_tiny's loop: a random batch of windows, forward, backward, AdamW step; the numbers into history."""
    T = model.config.block_size
    for _ in range(steps):
        start = torch.randint(0, len(data) - T - 1, (batch,), generator=gen)
        window = torch.stack([data[s:s + T + 1] for s in start.tolist()])          # (B, T+1)
        if track_logits:
            history["max_logit"].append(max_attention_logit(model, window[:, :-1]))
        _, loss = model(window[:, :-1], window[:, 1:])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history["loss"].append(loss.item())


def real_text_batch(model: LLM, n: int = 8, seed: int = 0):
    """n windows of real text (bytes), block_size long each → (n, T): what the router-load plot feeds in."""
    data, T = tiny_text_bytes(), model.config.block_size
    start = torch.randint(0, len(data) - T, (n,), generator=torch.Generator().manual_seed(seed + 1))
    return torch.stack([data[s:s + T] for s in start.tolist()])


# --- 9. Plots: each returns a figure; main saves it with house.save_plot ----------------------------------

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
    a.set_xlabel("pair index i (dims i and i+32)")
    a.set_ylabel("wavelength in tokens (2π / inv_freq)")
    a.set_title(f"RoPE base {config.rope_base:g}: wavelengths from 6 tokens to ~10^5", fontsize=9)
    a.legend()
    cos = rotary.cos_table[:, : config.head_dim // 2]                 # (T, hd/2): cos(position · inv_freq[i])
    im = b.imshow(cos.T.numpy(), aspect="auto", cmap="RdBu", interpolation="nearest", vmin=-1, vmax=1)
    fig.colorbar(im, ax=b, label="cos(angle)")
    b.set_xlabel("position")
    b.set_ylabel("pair index i")
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
        ax.set_xlabel("key (attended-to byte)")
        ax.set_ylabel("query byte")
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
        ax.set_xlabel("expert")
        ax.set_ylabel("layer")
        ax.set_xticks(range(E))
        ax.set_yticks(range(L))
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
    ax.set_xlabel("offset d between query and key (tokens)")
    ax.set_ylabel("cos similarity of q·R(d)k (q = k)")
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
    a.set_yscale("log")
    a.set_xlabel("training step")
    a.set_ylabel("max |q·k| / √head_dim (log)")
    a.set_title("attention logits: capped with QK-norm, growing without", fontsize=9)
    a.legend(fontsize=8)
    b.set_xlabel("training step")
    b.set_ylabel("training loss (nats per byte)")
    b.set_title("the loss of the same two runs", fontsize=9)
    b.legend(fontsize=8)
    return fig


# --- 10. main ---------------------------------------------------------------------------------------------

PRESETS = {
    "tiny": TINY_REFERENCE_SHAPE,                                     # the shape of tiny_reference.pt
    "linnet": dict(depth=12, block_size=1024, vocab_size=32768, n_experts=8, n_active_experts=2),
}
SAMPLE_TEXT = "The cat sat on the mat. The cat sat on the mat again."


def print_parameter_table(config: LLMConfig):
    """Parameters and active parameters per part, then the FLOPs per trained token."""
    p = count_parameters(config)
    print(f"{'part':<14}{'parameters':>15}{'active/token':>15}")
    for part in PARTS:
        active = p["active_experts"] if part == "experts" else p[part]
        print(f"{part:<14}{p[part]:>15,}{active:>15,}")
    print(f"{'total':<14}{p['total']:>15,}{p['active']:>15,}")
    f = flops_per_token(config)
    print(f"FLOPs per trained token at T={config.block_size}: {f:,} ({f / 1e9:.3f} G)")


def check_counts(config: LLMConfig, preset: str):
    """The module built on the meta device has exactly the parameters count_parameters predicts."""
    with torch.device("meta"):                    # shapes only: no memory, no init time
        meta_model = LLM(config)
    counted = sum(p.numel() for p in meta_model.parameters())   # .parameters() skips the tied duplicate
    assert counted == count_parameters(config)["total"], "count_parameters disagrees with the module"
    print_parameter_table(config)
    if preset == "linnet":
        p = count_parameters(config)
        assert (p["total"], p["active"]) == (497_145_600, 157_406_976), "linnet-497M's counts not reproduced"
        print("reproduced linnet-497M: 497,145,600 parameters, 157,406,976 active per token")


def run_tiny_forward():
    """A random-init tiny model, one forward pass on random bytes: the shapes, and the loss of guessing."""
    tiny = LLM(LLMConfig(**TINY_REFERENCE_SHAPE)).eval()
    idx = torch.randint(0, 256, (4, tiny.config.block_size + 1))
    idx, targets = idx[:, :-1], idx[:, 1:]                         # predict the next (random) byte
    logits, loss = tiny(idx, targets)
    print(f"tiny random model: logits {tuple(logits.shape)}, loss {loss.item():.3f} "
          f"(ln V = {math.log(tiny.config.vocab_size):.3f} for uniform guessing)")


def print_why_numbers(config: LLMConfig):
    """Section 8's config-only numbers for the preset: GQA's cache, tied embeddings, MoE vs dense FLOPs."""
    mha = LLMConfig(**{**config.to_dict(), "n_kv_head": config.n_head})
    gqa_b, mha_b = kv_cache_bytes(config), kv_cache_bytes(mha)
    print(f"KV cache at T={config.block_size}, bf16: {gqa_b:,} bytes with {config.n_kv_head} KV heads, "
          f"{mha_b:,} with {config.n_head} ({mha_b / gqa_b:.0f}x)")
    print(f"tied embeddings save {tied_embedding_savings(config):,} parameters")
    r = moe_vs_dense(config)
    print(f"MoE: {r['total']:,} stored, {r['active']:,} active; {r['flops_moe']:,} FLOPs per token vs "
          f"{r['flops_dense']:,} for a dense model of the same size ({r['flops_dense'] / r['flops_moe']:.2f}x)")


def train_for_plots(steps: int = 200):
    """The tiny lesson model at random init, and trained `steps` steps with and without QK-norm (section 8)."""
    t0 = time.time()
    random_init, _ = train_tiny(steps=0)
    trained, with_norm = train_tiny(steps, track_logits=True)
    _, without_norm = train_tiny(steps, track_logits=True, qk_norm=False)
    for label, h in (("with QK-norm", with_norm), ("without QK-norm", without_norm)):
        print(f"tiny model {label}: loss {h['loss'][0]:.2f} -> {h['loss'][-1]:.2f} in {steps} steps, "
              f"max attention logit {h['max_logit'][0]:.2f} -> {h['max_logit'][-1]:.2f}")
    print(f"trained 2 tiny models in {time.time() - t0:.1f} s")
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
    labels = list(models)
    house.save_plot(plot_attention_map(models, SAMPLE_TEXT), out, "attention_map",
                    "random init: speckle with no structure; trained: bright columns, keys (the first byte, "
                    "spaces) that many later bytes look at")
    batch = real_text_batch(trained)
    stats = {}
    for label, model in models.items():
        model(batch)                                                 # fills router_stats
        stats[label] = model.router_stats
    share = stats[labels[1]]["tokens_per_expert"] / stats[labels[1]]["tokens_per_expert"].sum(1, keepdim=True)
    house.save_plot(plot_router_load(stats, trained.config, batch.numel()), out, "router_load",
                    f"the same real text through both routers: trained, every expert still gets work "
                    f"(shares {share.min():.2f}–{share.max():.2f}; the balance loss keeps it from collapsing)")
    off, on = histories["without QK-norm"]["max_logit"], histories["with QK-norm (linnet)"]["max_logit"]
    house.save_plot(plot_qk_norm_logits(histories), out, "qk_norm_logits",
                    f"without QK-norm the largest attention logit climbs from {off[0]:.2f} to {max(off):.0f} "
                    f"(log scale); with it, it stays under √head_dim (max {max(on):.1f})")


def run_checkpoint(args):
    """--checkpoint: load a model (an exported folder, linnet's weights or a 05 latest.pt) and sample a
    continuation of --prompt. An exported folder's own tokenizer.json is used (pick_tokenizer)."""
    if not args.prompt:
        raise SystemExit("error: --prompt is empty: give the model some text to continue")
    tokenizer = pick_tokenizer(args.checkpoint, args.tokenizer, house.OUT_DIR / "01_tokenizer" / "tokenizer.json")
    if not tokenizer.is_file():
        raise SystemExit("error: --checkpoint needs --tokenizer PATH to a tokenizer.json (python 01_tokenizer.py writes one)")
    enc = tokenizer_lib.load_tokenizer(tokenizer)                # one clear line if it is missing or corrupt
    model, trained_with = load_any_checkpoint(args.checkpoint)
    if trained_with and trained_with != tokenizer_lib.tokenizer_sha256(tokenizer):
        raise SystemExit(f"error: {args.checkpoint} was trained with another tokenizer than {tokenizer}: "
                         f"pass the --tokenizer the run used")
    if enc.get_vocab_size() > model.config.vocab_size:
        raise SystemExit(f"error: {tokenizer} has {enc.get_vocab_size():,} tokens but the model only "
                         f"{model.config.vocab_size:,}: pass the tokenizer the model was trained with")
    model = check_finite(model, args.checkpoint).to(house.default_device()).eval()
    print(model.generate(args.prompt, enc=enc, max_new_tokens=args.max_new_tokens, seed=args.seed))


def build_parser() -> argparse.ArgumentParser:
    parser = house.ArgumentParser(
        description="02 — the linnet-497M MoE transformer. Prints where the parameters live and the FLOPs "
                    "per token, runs a random-init forward pass on a tiny model, and saves plots of the "
                    "parameter budget, the RoPE frequencies, a causal attention map and the router's load.")
    house.add_common_args(parser, "02_model")
    parser.add_argument("--seed", type=house.seed, default=0, help="random seed for the tiny model's weights and tokens (default: 0)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="an exported folder, a pytorch_model.bin / .safetensors, or a 05 latest.pt: load it "
                             "and generate")
    parser.add_argument("--tokenizer", type=Path, default=None,
                        help="tokenizer.json to encode --prompt (default: an exported folder's own, else "
                             "out/01_tokenizer/tokenizer.json; one that differs from the folder's own is refused)")
    parser.add_argument("--prompt", default="Hello!", help="prompt for --checkpoint generation (default: %(default)s)")
    parser.add_argument("--max-new-tokens", type=house.positive_int, default=50, help="tokens to generate with --checkpoint (default: 50)")
    parser.add_argument("--export", type=Path, default=None, metavar="CHECKPOINT",
                        help="write a 05 latest.pt as linnet's published folder in --out: pytorch_model.bin, "
                             "config.json, tokenizer.json, tokenizer_config.json, as linnet's own repo (--tokenizer, default "
                             "out/01_tokenizer/tokenizer.json)")
    parser.add_argument("--overwrite", action="store_true",
                        help="--export: replace an earlier export in --out (other weight files are still refused)")
    return parser


@house.speaks
def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.export is not None:
        export_pretrained(args.export, args.out, args.tokenizer, args.overwrite)
        print(f"exported {house.shown(args.export)} to {house.shown(args.out)}/: {', '.join(EXPORT_FILES)} "
              f"(load with LLM.from_pretrained)")
        written = LLMConfig.from_dict(json.loads((args.out / "config.json").read_text()))   # no second read of the weights
        return print(original_code_line(written))
    if args.checkpoint is not None:
        return run_checkpoint(args)
    house.check_writable(args.out)          # a read-only --out fails now, not after the forward pass
    t0 = time.time()
    torch.manual_seed(args.seed)
    config = LLMConfig(**PRESETS[args.preset])
    print(f"preset {args.preset}: {config}")
    check_counts(config, args.preset)
    print_why_numbers(config)
    run_tiny_forward()
    save_plots(config, args.out)
    save_trained_plots(*train_for_plots(), args.out)   # the tiny model whatever the preset: seconds on a CPU
    print(f"done in {time.time() - t0:.1f} s")


# --- Appendix: machinery ---------------------------------------------------------------------------------
# linnet's checkpoint layout <-> ours: finding, reading and converting checkpoint files. A student may skip
# this on first reading. 05 calls read_checkpoint_file, load_linnet_state_dict and export_linnet_state_dict;
# 06 calls read_checkpoint_file and check_finite (and LLM.from_pretrained, which uses find_checkpoint and
# infer_config); `--export` calls export_pretrained.

EXPERT_KEY = re.compile(r"^transformer\.h\.(\d+)\.moe\.experts\.(\d+)\.(swiglu\.w_v|c_proj)\.weight$")
LAYER_KEY = re.compile(r"^transformer\.h\.(\d+)\.")


def find_checkpoint(path) -> tuple[Path, Path | None]:
    """(weights file, config.json or None) for a file or a directory holding one."""
    path = Path(path)
    if not path.exists():
        raise SystemExit(f"error: {path} does not exist: pass a pytorch_model.bin, a .safetensors file or their directory")
    if path.is_file():
        cfg = path.parent / "config.json"
        return path, (cfg if cfg.is_file() else None)
    for name in ("pytorch_model.bin", "model.safetensors"):
        if (path / name).is_file():
            cfg = path / "config.json"
            return path / name, (cfg if cfg.is_file() else None)
    candidates = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")) + sorted(path.glob("*.pt"))
    if not candidates:
        raise SystemExit(f"error: no pytorch_model.bin or .safetensors file in {path}: download the weights first")
    cfg = path / "config.json"
    return candidates[0], (cfg if cfg.is_file() else None)


def read_training_checkpoint(path: Path) -> tuple["LLM", str | None]:
    """A 05 checkpoint (`latest.pt`: a dict with "model" and "config") as a CPU model built from its saved
    config, and the sha256 of the tokenizer it was trained with (None when the file does not say)."""
    checkpoint = read_checkpoint_file(path, weights_only=False)     # ours: optimizer and RNG states too
    if not (isinstance(checkpoint, dict) and "model" in checkpoint and "config" in checkpoint):
        raise SystemExit(f"error: {path} is not a 05_train checkpoint (no 'model' and 'config'): "
                         f"pass a 05 .pt, or a pytorch_model.bin / .safetensors")
    # the MoE path the run trained with (the loop, FP8) is not part of the model: load it on 02's default
    model = LLM(LLMConfig(**{**checkpoint["config"], "moe_impl": "auto"}))
    load_linnet_state_dict(model, checkpoint["model"])
    return model, checkpoint.get("tokenizer_sha256")


def load_any_checkpoint(path) -> tuple["LLM", str | None]:
    """(CPU model, sha256 of its training tokenizer or None) from any of: a 05 `latest.pt` (or the folder
    holding one), an exported folder, linnet's `pytorch_model.bin` / `.safetensors`."""
    path = Path(path)
    if path.is_dir() and (path / "latest.pt").is_file():          # a 05 output folder
        path = path / "latest.pt"
    if path.is_file() and path.suffix in (".pt", ".pth"):
        return read_training_checkpoint(path)
    return LLM.from_pretrained(path), None


def exported_tokenizer(path) -> Path | None:
    """The tokenizer.json an exported folder carries (`path` is the folder or a weights file in it)."""
    path = Path(path)
    if path.is_dir() or path.suffix in (".safetensors", ".bin"):
        own = (path if path.is_dir() else path.parent) / "tokenizer.json"
        return own if own.is_file() else None
    return None


def pick_tokenizer(checkpoint, given: Path | None, default: Path) -> Path:
    """The tokenizer to use with `checkpoint`: an exported folder's own tokenizer.json wins; a `given` one
    that differs from it (by sha256) is refused in one line. Without a folder tokenizer: `given`, else
    `default`."""
    own = exported_tokenizer(checkpoint)
    if own is None:
        return Path(given) if given is not None else Path(default)
    if given is not None and Path(given).resolve() != own.resolve():
        if not Path(given).is_file() or tokenizer_lib.tokenizer_sha256(given) != tokenizer_lib.tokenizer_sha256(own):
            raise SystemExit(f"error: {checkpoint} carries its own tokenizer.json, and --tokenizer {given} is another "
                             f"one: drop --tokenizer (the folder's own is used)")
    return own


def read_checkpoint_file(path: Path, weights_only: bool = True):
    """torch.load (or safetensors) a file onto the CPU, or stop with one line if it is not readable.

    `weights_only=False` is for our own training checkpoints (05), which also hold optimizer states and RNG
    states; a file from elsewhere should be read with the default `True` (it cannot run code on load)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        need_safetensors(f"reading {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as e:  # corrupt / truncated / not a checkpoint
        first_line = (str(e).strip().splitlines() or [""])[0][:200]
        raise SystemExit(f"error: cannot read {path} as a checkpoint ({type(e).__name__}: {first_line}): "
                         f"it is damaged or not a checkpoint — re-download or re-create it")


def read_state_dict(path: Path) -> dict:
    """A plain {name: tensor} dict from .safetensors or a torch.save file (a {"model": sd} wrapper too)."""
    obj = read_checkpoint_file(path)
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise SystemExit(f"error: {path} does not hold a state_dict (a dict of tensors)")
    return obj


def infer_config(sd: dict, moe_impl: str = "auto", path="the checkpoint") -> LLMConfig:
    """Read depth, vocab, widths and expert count off the tensor shapes of a linnet state_dict.

    head_dim is not a weight's shape: it comes from the RoPE buffer `inv_freq` (head_dim/2 entries)
    when the file has it, else linnet's 64. Shapes that do not fit it stop with one line (`path` names
    the file in it) instead of building a wrong model. block_size has no weight either: linnet's 1024 is
    assumed, and a note on stderr says so (a model trained on shorter windows should come with config.json)."""
    shapes = weight_shapes(sd)
    C, qkv_rows, head_dim = shapes["n_embd"], shapes["qkv_rows"], shapes.get("head_dim", 64)
    n_head, kv_rows = C // max(head_dim, 1), qkv_rows - C
    n_kv_head = kv_rows // (2 * head_dim)
    if head_dim < 2 or C % head_dim or kv_rows % (2 * head_dim) or n_kv_head < 1 or n_head % n_kv_head:
        raise SystemExit(f"error: {path} has no config.json and its shapes don't fit head_dim {head_dim} "
                         f"(width {C}, q|k|v rows {qkv_rows}): put linnet's config.json beside it")
    print(f"note: {house.shown(path)} has no config.json: shapes read from the weights, block_size 1024 "
          f"(linnet's) assumed", file=sys.stderr)
    n_layer = shapes["n_layer"]
    return LLMConfig(depth=n_layer, vocab_size=shapes["vocab_size"], n_experts=shapes["n_experts"], n_layer=n_layer,
                     n_embd=C, n_head=n_head, n_kv_head=n_kv_head, head_dim=head_dim, ffn_dim=shapes["ffn_dim"],
                     moe_impl=moe_impl)


def weight_shapes(sd: dict) -> dict:
    """What a linnet state_dict's tensors show of its config: n_layer, vocab_size, n_embd, n_experts, ffn_dim,
    qkv_rows (= n_embd + 2·n_kv_head·head_dim), and head_dim when the RoPE buffer is there."""
    sd = strip_prefixes(sd)
    emb = sd.get("transformer.wte.weight", sd.get("lm_head.weight"))
    if emb is None or "transformer.h.0.attn.c_attn.weight" not in sd:
        raise SystemExit("error: checkpoint has no transformer.wte.weight / lm_head.weight / first attention layer: "
                         "not a linnet checkpoint")
    layers = {int(m.group(1)) for k in sd if (m := LAYER_KEY.match(k))}
    if "transformer.h.0.moe.w_v" in sd:                               # our own stacked layout
        E, two_f, _ = sd["transformer.h.0.moe.w_v"].shape
    else:
        experts = {int(m.group(2)) for k in sd if (m := EXPERT_KEY.match(k))}
        E, two_f = len(experts), sd["transformer.h.0.moe.experts.0.swiglu.w_v.weight"].shape[0]
    out = dict(n_layer=len(layers), vocab_size=emb.shape[0], n_embd=emb.shape[1], n_experts=E, ffn_dim=two_f // 2)
    inv_freq = sd.get("transformer.h.0.attn.rotary_emb.inv_freq")
    if inv_freq is not None:
        out["head_dim"] = 2 * inv_freq.numel()
    out["qkv_rows"] = sd["transformer.h.0.attn.c_attn.weight"].shape[0]
    return out


CONFIG_JSON_TYPES = {"depth": int, "block_size": int, "vocab_size": int, "n_experts": int, "n_active_experts": int,
                     "n_layer": int, "n_head": int, "n_kv_head": int, "n_embd": int, "head_dim": int, "ffn_dim": int,
                     "rope_base": (int, float), "balance_coef": (int, float), "qk_norm": bool,
                     "zero_init_out": bool, "x0_mix": bool, "logit_softcap": (int, float)}


# linnet's published config.json also describes the model in words for the Hub (model_type "linnet", the
# architecture, the dtype, the pipeline tag): read, never used. Any other key a linnet config lacks is refused.
CONFIG_CARD_KEYS = ("model_type", "architectures", "torch_dtype", "pipeline_tag", "transformers_version", "attention",
                    "ffn", "normalization", "sequence_mixing", "sparsity", "optimizer")


def read_config_json(path: Path, sd: dict, moe_impl: str = "auto") -> LLMConfig:
    """config.json → LLMConfig, believed only where it can be checked (config_from_claims)."""
    try:
        claims = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SystemExit(f"error: cannot read {path} as JSON ({type(e).__name__}): re-export the folder "
                         f"(python 02_model.py --export) or remove config.json to read the shapes off the weights")
    return config_from_claims(claims, path, sd, moe_impl)


def config_from_claims(claims, source, sd: dict, moe_impl: str = "auto") -> LLMConfig:
    """A config dict (config.json, or the copy an export keeps inside pytorch_model.bin) → LLMConfig. Unknown
    keys and wrong types stop with one line; every field the weights show (weight_shapes) must agree with them;
    and when the weights file carries the config it was exported with (saved_config), every field must agree
    with that too — the only check for block_size, n_active_experts, qk_norm and the linnet+ switches, which
    have no weight of their own (linnet's own file carries none: they are range-checked by LLMConfig only)."""
    if not isinstance(claims, dict):
        raise SystemExit(f"error: {source} is not a JSON object of config fields: re-export the folder")
    if claims.get("model_type", "linnet") != "linnet":
        raise SystemExit(f"error: {source} is the config of a {claims['model_type']!r} model, not linnet: pass a linnet folder")
    claims = {k: v for k, v in claims.items() if k not in CONFIG_CARD_KEYS}
    unknown = sorted(set(claims) - set(CONFIG_JSON_TYPES))
    wrong = [k for k, v in claims.items() if k in CONFIG_JSON_TYPES and not config_value_ok(v, CONFIG_JSON_TYPES[k])]
    if unknown or wrong:
        what = f"keys a linnet config does not have ({', '.join(unknown[:4])})" if unknown else \
            f"a value of the wrong type ({wrong[0]} = {claims[wrong[0]]!r})"
        raise SystemExit(f"error: {source} has {what}: fix it, or re-export the folder with python 02_model.py --export")
    try:
        config = LLMConfig(**{**claims, "moe_impl": moe_impl})
    except (TypeError, ValueError) as e:
        raise SystemExit(f"error: {source} does not describe a linnet model ({e}): fix it or re-export the folder")
    shapes = weight_shapes(sd)
    claimed = {name: getattr(config, name) for name in shapes if name != "qkv_rows"}
    claimed["qkv_rows"] = config.n_embd + 2 * config.n_kv_head * config.head_dim
    saved = saved_config(sd)
    if saved is not None:                                          # the export's own record, inside the weights
        exported = LLMConfig(**{**{k: v for k, v in saved.items() if k not in CONFIG_CARD_KEYS}, "moe_impl": moe_impl})
        shapes.update({k: v for k, v in exported.to_dict().items() if k != "moe_impl"})
        claimed.update({k: v for k, v in config.to_dict().items() if k != "moe_impl"})
    for name, seen in shapes.items():
        if claimed[name] != seen:
            label = "q|k|v rows (n_embd + 2·n_kv_head·head_dim)" if name == "qkv_rows" else name
            raise SystemExit(f"error: {source} says {label} = {claimed[name]} but the weights have {seen}: the config "
                             f"belongs to another model: fix it or re-export the folder")
    return config


def saved_config(sd) -> dict | None:
    """The config an export keeps inside pytorch_model.bin (the state_dict's `_metadata`, which torch.save keeps
    and every `load_state_dict` ignores), or None (linnet's own file, a .safetensors, an older export)."""
    record = getattr(sd, "_metadata", None) or {}
    saved = record.get("", {}).get("linnet_config") if isinstance(record.get("", {}), dict) else None
    return saved if isinstance(saved, dict) else None


def config_value_ok(value, kind) -> bool:
    """True if a JSON value has the type a config field needs (a bool is not an int here; None = derive it)."""
    if value is None:
        return kind is int                                            # derived fields may be left to depth
    if isinstance(value, bool):
        return kind is bool
    return isinstance(value, kind)


def strip_prefixes(sd: dict) -> dict:
    """Drop wrappers' prefixes: `_orig_mod.` (torch.compile) and `module.` (DDP)."""
    out = {}
    for k, v in sd.items():
        for prefix in ("_orig_mod.", "module."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = v
    return out


def load_linnet_state_dict(model: LLM, sd: dict) -> LLM:
    """Load linnet's published layout (per-expert Linear keys, see docs/checkpoint_keys.json) — or our own
    stacked layout — into `model`. Tied weights may appear once or twice; `inv_freq` may be absent;
    bf16 or fp32 tensors are cast to the model's dtype. A checkpoint that does not fit ends the run
    with one line naming the mismatch (SystemExit)."""
    cfg = model.config
    sd = strip_prefixes(sd)
    layers = sorted({int(m.group(1)) for k in sd if (m := LAYER_KEY.match(k))})
    if len(layers) != cfg.n_layer:
        raise SystemExit(f"error: the checkpoint has {len(layers)} layers (depth {len(layers)}) but the model has "
                         f"n_layer={cfg.n_layer}: build the model with the checkpoint's depth (LLM.from_pretrained infers it)")
    converted, experts = {}, {}
    for k, v in sd.items():
        m = EXPERT_KEY.match(k)
        if m:
            experts[(int(m.group(1)), m.group(3), int(m.group(2)))] = v
        else:
            converted[k] = v
    for i in range(cfg.n_layer):                                       # per-expert → stacked (E, ...)
        for name, ours in (("swiglu.w_v", "w_v"), ("c_proj", "c_proj")):
            found = sorted(e for (layer, n, e) in experts if layer == i and n == name)
            if not found:
                continue
            if found != list(range(cfg.n_experts)):
                raise SystemExit(f"error: layer {i} of the checkpoint has experts {found} but the model has "
                                 f"n_experts={cfg.n_experts}: build the model with the checkpoint's expert count")
            converted[f"transformer.h.{i}.moe.{ours}"] = torch.stack([experts[(i, name, e)] for e in found])
    if "transformer.wte.weight" not in converted and "lm_head.weight" in converted:
        converted["transformer.wte.weight"] = converted["lm_head.weight"]
    converted.setdefault("lm_head.weight", converted.get("transformer.wte.weight"))
    expected = model.state_dict()
    for k, v in expected.items():                                      # inv_freq is derived: fill if absent
        if k.endswith("rotary_emb.inv_freq") and k not in converted:
            converted[k] = v
    missing = [k for k in expected if converted.get(k) is None]
    unexpected = [k for k in converted if k not in expected]
    if missing or unexpected:
        raise SystemExit(f"error: checkpoint keys do not match the model: missing {missing[:3]}, unexpected "
                         f"{unexpected[:3]}: is this a linnet checkpoint?")
    for k, v in expected.items():
        if tuple(converted[k].shape) != tuple(v.shape):
            raise SystemExit(f"error: checkpoint tensor {k} has shape {list(converted[k].shape)} but the model "
                             f"expects {list(v.shape)}: build the model with the checkpoint's config")
        if k.endswith("inv_freq") and v.device.type != "meta" and \
                not torch.allclose(converted[k].float().cpu(), v.float().cpu(), rtol=1e-2):
            raise SystemExit(f"error: checkpoint {k} differs from RoPE base {cfg.rope_base}: set rope_base to match")
    model.load_state_dict({k: converted[k] for k in expected}, strict=True)
    for block in model.transformer.h:                                  # RoPE's tables follow the loaded inv_freq
        block.attn.rotary_emb.build_tables()
    return model


def export_linnet_state_dict(model: LLM) -> dict:
    """Our model → linnet's published layout (key order and shapes of docs/checkpoint_keys.json):
    per-expert `moe.experts.{e}.swiglu.w_v.weight` (2F, C) and `.c_proj.weight` (C, F), the RoPE buffer,
    and both tied names (they share one tensor, as in the original state_dict)."""
    out = {"transformer.wte.weight": model.transformer.wte.weight.detach()}
    for i, block in enumerate(model.transformer.h):
        p = f"transformer.h.{i}."
        out[p + "ln1.weight"] = block.ln1.weight.detach()
        out[p + "ln2.weight"] = block.ln2.weight.detach()
        out[p + "attn.l_conv.weight"] = block.attn.l_conv.weight.detach()
        out[p + "attn.c_attn.weight"] = block.attn.c_attn.weight.detach()
        out[p + "attn.c_proj.weight"] = block.attn.c_proj.weight.detach()
        out[p + "attn.rotary_emb.inv_freq"] = block.attn.rotary_emb.inv_freq.detach()
        out[p + "moe.router.weight"] = block.moe.router.weight.detach()
        for e in range(block.moe.n_experts):
            out[p + f"moe.experts.{e}.swiglu.w_v.weight"] = block.moe.w_v[e].detach().clone()
            out[p + f"moe.experts.{e}.c_proj.weight"] = block.moe.c_proj[e].detach().clone()
    out["transformer.ln_f.weight"] = model.transformer.ln_f.weight.detach()
    out["lm_head.weight"] = model.lm_head.weight.detach()
    out.update(plus_state_dict(model))                          # linnet+ only (appendix); {} for linnet
    return out


def need_safetensors(what: str) -> None:
    """Stop with one line naming the package when safetensors is not installed (not "a damaged file")."""
    try:
        import safetensors.torch  # noqa: F401
    except ImportError:
        raise SystemExit(f"error: {what} needs the safetensors package, which is not installed: "
                         f"pip install safetensors (it is in requirements.txt)")


def save_pytorch_model_bin(sd: dict, path: Path, config: LLMConfig | None = None) -> Path:
    """Write {name: tensor} as linnet's published file: a plain torch state_dict (`torch.save`), atomically.
    The tied pair keeps one storage under both names, as the original `model.state_dict()` does, so the file
    loads with linnet's own `load_state_dict` and with ours. (linnet's published file is bf16; ours keeps the
    precision the run trained in, fp32, so exporting and loading again gives the same numbers.) `config`, when
    given, rides inside the file as the state_dict's `_metadata` (saved_config): loaders check config.json
    against it, and a folder whose config.json went missing still loads with the right block_size."""
    out = OrderedDict((k, v.detach().cpu()) for k, v in sd.items())
    if config is not None:                                             # kept for the loader's checks (saved_config)
        out._metadata = OrderedDict({"": {"linnet_config": published_config(config)}})
    with house.atomic_path(path) as tmp:
        torch.save(out, tmp)
        tmp.chmod(0o644)                                               # readable by whoever it is handed to
    return path


EXPORT_FILES = ("pytorch_model.bin", "config.json", "tokenizer.json", "tokenizer_config.json")   # what --export writes


def check_export_folder(out_dir: Path, overwrite: bool = False) -> None:
    """Refuse, before anything is written, a folder that holds model files: weights of another name would
    stay beside ours and a loader could read them instead (find_checkpoint), and an earlier export
    would be replaced. `overwrite` allows replacing an earlier export (the EXPORT_FILES) only."""
    if not out_dir.is_dir():
        return
    weights = {p.name for p in out_dir.iterdir() if p.suffix in (".bin", ".safetensors", ".pt", ".pth")}
    foreign = sorted(weights - {"pytorch_model.bin"})
    if foreign:
        raise SystemExit(f"error: {out_dir} already holds other weights ({', '.join(foreign)}) that loaders would "
                         f"read instead of the export: pass a new --out, or remove them")
    ours = [name for name in EXPORT_FILES if (out_dir / name).exists()]
    if ours and not overwrite:
        raise SystemExit(f"error: {out_dir} already holds an export ({', '.join(ours)}): pass a new --out, or "
                         f"--overwrite to replace those files")


def export_pretrained(checkpoint, out_dir, tokenizer=None, overwrite: bool = False) -> Path:
    """A 05 checkpoint (`latest.pt`) → linnet's published folder: pytorch_model.bin (linnet's key layout,
    docs/checkpoint_keys.json), config.json and tokenizer.json — what `LLM.from_pretrained(out_dir)` loads.
    `tokenizer` defaults to 01's; it must be the one the run was trained with. Every file is atomic; a
    folder holding other model files is refused first (check_export_folder)."""
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    if not checkpoint.is_file():
        raise SystemExit(f"error: no checkpoint at {checkpoint}: pass --export PATH to a 05 latest.pt")
    check_export_folder(out_dir, overwrite)
    ckpt = read_checkpoint_file(checkpoint, weights_only=False)      # ours: optimizer and RNG states too
    if not (isinstance(ckpt, dict) and "model" in ckpt and "config" in ckpt):
        raise SystemExit(f"error: {checkpoint} is not a 05_train checkpoint (no 'model' and 'config'): "
                         f"pass a latest.pt written by python 05_train.py")
    tokenizer = Path(tokenizer) if tokenizer is not None else house.OUT_DIR / "01_tokenizer" / "tokenizer.json"
    tokenizer_lib.load_tokenizer(tokenizer)                          # one line if missing or corrupt
    trained_with = ckpt.get("tokenizer_sha256")
    if trained_with and trained_with != tokenizer_lib.tokenizer_sha256(tokenizer):
        raise SystemExit(f"error: {checkpoint} was trained with another tokenizer than {tokenizer}: "
                         f"pass the --tokenizer the run used")
    config = LLMConfig.from_dict({**ckpt["config"], "moe_impl": "auto"})
    model = LLM(config)
    check_finite(load_linnet_state_dict(model, ckpt["model"]), checkpoint)   # every key, shape, value
    house.check_writable(out_dir)
    save_pytorch_model_bin(export_linnet_state_dict(model), out_dir / "pytorch_model.bin", config)
    house.write_json(out_dir / "config.json", published_config(config))
    house.write_json(out_dir / "tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": config.block_size, "unk_token": None,
        "bos_token": None, "eos_token": tokenizer_lib.EOT, "pad_token": tokenizer_lib.PAD,
        "add_prefix_space": False, "trim_offsets": True})
    with house.atomic_path(out_dir / "tokenizer.json") as tmp:         # the same bytes: the same sha256
        tmp.write_bytes(tokenizer.read_bytes())
    return out_dir


def published_config(config: LLMConfig) -> dict:
    """config.json as linnet's published repo writes it (model_type, architectures, the derived widths, dtype,
    pipeline tag), then the fields only this repo has (head_dim, QK-norm, the balance weight, linnet+)."""
    linnet_keys = ("depth", "n_layer", "n_head", "n_kv_head", "n_embd", "ffn_dim", "block_size", "vocab_size",
                   "n_experts", "n_active_experts", "rope_base")
    ours = {k: v for k, v in config.to_dict().items() if k not in linnet_keys and k not in ("moe_impl", "rope_impl")}
    return {"model_type": "linnet", "architectures": ["LLM"], **{k: getattr(config, k) for k in linnet_keys},
            "torch_dtype": "float32", "pipeline_tag": "text-generation", **ours}


def original_code_line(config: LLMConfig) -> str:
    """Whether linnet's own code can load an export: its LLMConfig(depth, block_size, vocab_size, n_experts,
    n_active_experts) derives every width from depth (head_dim 64, RoPE base 50,000, QK-norm on, no linnet+
    switch), so it builds exactly the shapes those five numbers express.

    >>> original_code_line(LLMConfig(depth=12)).split(": ")[1]
    'LLM(LLMConfig(depth=12, block_size=1024, vocab_size=32768, n_experts=8, n_active_experts=2)) + load_state_dict'"""
    five = {k: getattr(config, k) for k in ("depth", "block_size", "vocab_size", "n_experts", "n_active_experts")}
    derived = LLMConfig(**five)
    same = (all(getattr(derived, k) == getattr(config, k) for k in ("n_layer", "n_head", "n_kv_head", "n_embd",
                                                                   "head_dim", "ffn_dim", "rope_base"))
            and config.qk_norm and not plus_switches(config))
    if same:
        args = ", ".join(f"{k}={v}" for k, v in five.items())
        return f"linnet's own code loads it too: LLM(LLMConfig({args})) + load_state_dict"
    return ("linnet's own code cannot build this shape (its LLMConfig derives every width from depth, head_dim 64): "
            "load it with this repo's LLM.from_pretrained")


def check_finite(model: LLM, path) -> LLM:
    """Stop with one line if any weight is NaN or inf (what a diverged run saves), else return `model`."""
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise SystemExit(f"error: {path} holds non-finite weights (NaN/inf): it comes from a diverged run; "
                         f"use an earlier checkpoint")
    return model


# --- Appendix: the FP8 GEMMs of section 5b ------------------------------------------------------------------
# An operator whose forward and input-gradient GEMMs multiply in FP8, and the grouped GEMM it calls:
# the Hopper kernel (torch._scaled_grouped_mm) where it exists, the plain dequantise-and-multiply reference
# elsewhere; tests/test_fp8.py checks that the two agree (on a GPU) and that FP8 stays near bf16 (anywhere).

class FP8Weight(NamedTuple):
    """An expert weight w (E, N, K) with its two FP8 copies: rows over K (forward) and columns over N
    (input gradient). Gradients flow to w; the copies are made without autograd."""
    w: torch.Tensor
    q: torch.Tensor            # (E, N, K) float8
    scale: torch.Tensor        # (E, N)
    q_t: torch.Tensor          # (E, K, N) float8: wᵀ, rows over N
    scale_t: torch.Tensor      # (E, K)


def fp8_weight(w) -> FP8Weight:
    with torch.no_grad():
        return FP8Weight(w, *quantize_rows(w), *quantize_rows(w.transpose(-2, -1)))


def as_fp8_weight(w, dtype) -> FP8Weight:
    """w as given by cast_expert_weights (already an FP8Weight), or a plain tensor to quantise now."""
    return w if isinstance(w, FP8Weight) else fp8_weight(w.to(dtype))


def fp8_grouped_linear(x, offsets, weight: FP8Weight):
    """y = x_g @ w_eᵀ for the rows x_g of each expert's group e. x (M, K); offsets (E,) int32 ends of the
    groups, each a multiple of 16 rows; weight: w (E, N, K) with its FP8 copies → (M, N).

    forward   y      = x @ wᵀ    FP8: x rows scaled over K, w rows over K
    backward  grad_x = g @ w     FP8: g rows over N, w columns over N       (`fp8_grouped_linear_backward`)
              grad_w = gᵀ @ x    bf16, as in moe_grouped. In FP8 it needs both operands transposed and
                                 scaled per expert and column: in a first version those transposing kernels
                                 took ~21 ms per micro-step on an H200, where an FP8 grad_w GEMM could save
                                 ~3 ms (BENCHMARKS.md, "FP8 experts").
    x is quantised here, outside the op, so that torch.compile fuses it into the kernel that makes x."""
    xq, x_scale = quantize_rows(x)                                        # (M, K) float8, (M,)
    return fp8_grouped_linear_op(x, xq, x_scale, offsets, *weight)


# A custom operator with its own backward, not a torch.autograd.Function: with torch 2.11, torch.compile
# gave a Function whose output is computed from float8 tensors zero gradients (tests/test_fp8.py checks).
@torch.library.custom_op("linnet::fp8_grouped_linear", mutates_args=())
def fp8_grouped_linear_op(x: torch.Tensor, xq: torch.Tensor, x_scale: torch.Tensor, offsets: torch.Tensor,
                          w: torch.Tensor, wq: torch.Tensor, w_scale: torch.Tensor, wtq: torch.Tensor,
                          wt_scale: torch.Tensor) -> torch.Tensor:
    return scaled_grouped_mm(xq, x_scale, wq, w_scale, offsets, x.dtype)


@fp8_grouped_linear_op.register_fake
def _(x, xq, x_scale, offsets, w, wq, w_scale, wtq, wt_scale):
    return x.new_empty(x.shape[0], w.shape[1])


def fp8_grouped_linear_setup(ctx, inputs, output):
    x, _, _, offsets, w, _, _, wtq, wt_scale = inputs
    ctx.save_for_backward(x, offsets, w, wtq, wt_scale)


def fp8_grouped_linear_backward(ctx, grad):                              # grad (M, N)
    x, offsets, w, wtq, wt_scale = ctx.saved_tensors
    gq, g_scale = quantize_rows(grad)                                     # (M, N), (M,)
    grad_x = scaled_grouped_mm(gq, g_scale, wtq, wt_scale, offsets, x.dtype)              # (M, K)
    dtype = torch.bfloat16 if x.is_cuda else x.dtype                     # grouped_mm on CUDA: bf16 only
    grad_w = F.grouped_mm(grad.to(dtype).t(), x.to(dtype), offs=offsets)                  # (E, N, K)
    return grad_x, None, None, None, grad_w.to(w.dtype), None, None, None, None


fp8_grouped_linear_op.register_autograd(fp8_grouped_linear_backward, setup_context=fp8_grouped_linear_setup)


def fp8_kernel_available(t) -> bool:
    """torch._scaled_grouped_mm (row-wise FP8) runs on Hopper (compute capability 9.0) only."""
    return (t.is_cuda and hasattr(torch, "_scaled_grouped_mm")
            and torch.cuda.get_device_capability(t.device) == (9, 0))


def scaled_grouped_mm(a, a_scale, b, b_scale, offsets, out_dtype):
    """FP8 grouped GEMM: row i of a, in group e, times b[e]ᵀ, multiplied as float8 and then scaled by
    a_scale[i] · b_scale[e]. The Hopper kernel sums with fast accumulation (partial sums promoted to fp32
    less often: faster, slightly less exact than the reference's fp32 sums).
    a (M, K) float8, a_scale (M,); b (E, N, K) float8, b_scale (E, N); offsets (E,) → (M, N) out_dtype.
    The Hopper kernel wants a's rows contiguous (row-major) and the second operand's columns contiguous
    (column-major): it gets b.transpose(-2, -1), a view of b as stored, (E, N, K) with K contiguous."""
    if not fp8_kernel_available(a):
        return scaled_grouped_mm_reference(a, a_scale, b, b_scale, offsets, out_dtype)
    out = torch._scaled_grouped_mm(a, b.transpose(-2, -1), a_scale, b_scale, offs=offsets,
                                   out_dtype=torch.bfloat16, use_fast_accum=True)
    return out.to(out_dtype)


def scaled_grouped_mm_reference(a, a_scale, b, b_scale, offsets, out_dtype):
    """The plain version of scaled_grouped_mm: dequantise to fp32, one matmul per group (a host sync per
    group: for CPUs and tests)."""
    ends = offsets.tolist()
    a32 = a.float() * a_scale[:, None]                                   # (M, K)
    b32 = b.float() * b_scale[..., None]                                 # (E, N, K)
    out = torch.cat([a32[s:e] @ b32[g].T for g, (s, e) in enumerate(zip([0] + ends[:-1], ends))])
    return out.to(out_dtype)


# --- Appendix: fused RoPE + QK-norm (one GPU kernel: `rope_qk_norm`; section 4's `rope_qk_norm_reference`) --
# Section 4 rotates q and k in fp32 and normalises them: in eager PyTorch that is ~10 kernels per tensor, each
# a full pass over q or k in memory (upcast, two multiplies, the half swap, add, downcast, LayerNorm's upcast,
# the norm, its downcast). Their arithmetic is tiny; the passes are the cost. The kernel below reads each
# 64-wide head row of the qkv projection's output once in bf16, rotates and normalises the q and k rows in fp32
# registers, and writes q | k | v once: for linnet's qkv in one micro-step (32 × 1024 tokens × 1,280 × 2
# bytes = 84 MB) 168 MB of traffic, where the eager ops move ≈ 2.5 GB (q and k, 67 MB in bf16, twice that in
# fp32, read and written about ten times). Its backward recomputes the rotation from qkv (nothing else is
# kept) and applies LayerNorm's and the rotation's transposes in the same pass. Measured on an H200 (forward +
# backward of one layer): 0.54 ms, against 0.80 ms for inductor's kernels and 2.57 ms eager; the training step
# 1.4 GB lighter and +1.5 % (one same-start pair); 06's HellaSwag run 14.1 → 12.1 s (first version, same
# process). LINNET_ROPE=reference (environment) makes "auto" use the plain ops everywhere. It takes and
# gives dense tensors only: a kernel handed strided views must be told their strides, and torch.compile may
# lay a view out anew after those numbers were read. `set_rope_impl(model, "reference")` switches a model back
# to the plain ops (`rope_qk_norm_reference`, section 4); tests/test_rope_kernel.py checks the two agree (on a CPU through Triton's interpreter, on a
# GPU compiled, forward and backward). Measured: BENCHMARKS.md, "Throughput III". Triton ships with CUDA builds
# of PyTorch; on a CPU-only install this section defines no kernel and section 4 runs the plain ops.

try:
    import triton
    import triton.language as tl
except ImportError:                 # the CPU wheel of torch has no triton: section 4's plain path runs
    triton = None

ROPE_PLAIN_FROM_ENV = os.environ.get("LINNET_ROPE") == "reference"   # read once: "auto" then takes the plain ops
ROPE_ROWS_PER_PROGRAM = 64          # head rows (of head_dim values) one program handles


def set_rope_impl(model: nn.Module, impl: str) -> nn.Module:
    """Choose how every attention layer of `model` runs RoPE + QK-norm: "fused" (the Triton kernel; CUDA with
    triton, or Triton's CPU interpreter), "reference" (section 4's plain ops), or "auto" (fused on a CUDA
    tensor when triton is installed, else plain — the default)."""
    if impl not in ROPE_IMPLS:
        raise ValueError(f"rope impl must be one of {', '.join(ROPE_IMPLS)}, got {impl!r}")
    for module in model.modules():
        if isinstance(module, CausalSelfAttention):
            module.rope_impl = impl
    return model


def fused_rope_ok(impl: str, x, head_dim: int) -> bool:
    """Whether `qkv_heads` takes the fused `rope_qk_norm` for x under `impl` (see set_rope_impl). The kernel
    holds the two halves of a head row in registers: head_dim must be a power of two, at least 16 (linnet: 64).
    LINNET_ROPE=reference in the environment makes "auto" take the plain ops (for a GPU Triton cannot serve)."""
    shape_ok = head_dim >= 16 and head_dim & (head_dim - 1) == 0
    if impl == "fused":
        if triton is None:
            raise ValueError("rope impl 'fused' needs triton (the CUDA builds of PyTorch bring it)")
        if not shape_ok:
            raise ValueError(f"rope impl 'fused' needs head_dim a power of two >= 16, got {head_dim}")
        if not (x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"):
            raise ValueError("rope impl 'fused' runs on CUDA tensors (or on a CPU under TRITON_INTERPRET=1)")
        return True
    return impl == "auto" and triton is not None and x.is_cuda and shape_ok and not ROPE_PLAIN_FROM_ENV


def rope_qk_norm(qkv, cos, sin, n_head: int, n_kv_head: int, positions=None, qk_norm: bool = True):
    """`rope_qk_norm_reference` in one Triton kernel: same arguments, same results (in fp32; in bf16 it rounds
    q and k once, after the norm). q, k, v come back as views of one dense (B, T, nh + 2·nkv, hd) tensor.
    Positions are not range-checked here (a kernel cannot raise IndexError): 06 builds them inside the window."""
    B, T, _ = qkv.shape
    hd = cos.shape[-1]
    pos = positions.contiguous() if positions is not None else None
    heads = torch.ops.linnet.rope_qk_norm(qkv.contiguous().view(B, T, n_head + 2 * n_kv_head, hd), cos.contiguous(),
                                          sin.contiguous(), pos, n_head + n_kv_head, qk_norm, 1e-5)
    return heads.split([n_head, n_kv_head, n_kv_head], dim=2)


def launch(kernel):
    """A Triton kernel as torch.compile can trace it (wrap_triton); as it is under Triton's CPU interpreter."""
    return kernel if os.environ.get("TRITON_INTERPRET") == "1" else torch.library.wrap_triton(kernel)


if triton is not None:
    @triton.jit
    def rope_norm_rows(X, COS, SIN, POS, row0, n_rows, T, HEADS, N_QK,
                       HAS_POS: tl.constexpr, HALF: tl.constexpr, ROWS: tl.constexpr):
        """For ROWS head rows of a dense (B, T, HEADS, 2·HALF) tensor: the offsets of their first halves
        (ROWS, HALF), the row mask, which rows get RoPE (+ norm), and in fp32 the two halves of x, of cos and
        of sin at each row's position. RoPE pairs column j with j + HALF (rotate_half), so halves are all it needs."""
        rows = row0 + tl.arange(0, ROWS)                                    # (ROWS,)
        live = rows < n_rows
        rotate = (rows % HEADS) < N_QK                                      # q and k heads; v heads are copied
        bt = rows // HEADS
        cols = tl.arange(0, HALF)                                           # (HALF,)
        m = live[:, None]
        first = rows.to(tl.int64)[:, None] * (2 * HALF) + cols[None, :]    # (ROWS, HALF)
        x1 = tl.load(X + first, mask=m, other=0.0).to(tl.float32)
        x2 = tl.load(X + first + HALF, mask=m, other=0.0).to(tl.float32)
        if HAS_POS:
            p = tl.load(POS + bt, mask=live, other=0).to(tl.int64)
        else:
            p = (bt % T).to(tl.int64)
        angle = p[:, None] * (2 * HALF) + cols[None, :]                     # (ROWS, HALF) into the tables
        c1 = tl.load(COS + angle, mask=m, other=0.0).to(tl.float32)
        c2 = tl.load(COS + angle + HALF, mask=m, other=0.0).to(tl.float32)
        s1 = tl.load(SIN + angle, mask=m, other=0.0).to(tl.float32)
        s2 = tl.load(SIN + angle + HALF, mask=m, other=0.0).to(tl.float32)
        return first, m, rotate[:, None], x1, x2, c1, c2, s1, s2

    @triton.jit
    def rope_norm_forward_kernel(X, COS, SIN, POS, Y, n_rows, T, HEADS, N_QK, eps,
                                 HAS_POS: tl.constexpr, NORM: tl.constexpr, HALF: tl.constexpr, ROWS: tl.constexpr):
        first, m, rotate, x1, x2, c1, c2, s1, s2 = rope_norm_rows(
            X, COS, SIN, POS, tl.program_id(0) * ROWS, n_rows, T, HEADS, N_QK, HAS_POS, HALF, ROWS)
        r1 = x1 * c1 - x2 * s1                                              # RoPE: x·cos + rotate_half(x)·sin
        r2 = x2 * c2 + x1 * s2
        if NORM:                                                            # LayerNorm over both halves, no weights
            mean = (tl.sum(r1, 1) + tl.sum(r2, 1)) / (2 * HALF)
            r1 = r1 - mean[:, None]
            r2 = r2 - mean[:, None]
            rstd = 1.0 / tl.sqrt((tl.sum(r1 * r1, 1) + tl.sum(r2 * r2, 1)) / (2 * HALF) + eps)
            r1 = r1 * rstd[:, None]
            r2 = r2 * rstd[:, None]
        tl.store(Y + first, tl.where(rotate, r1, x1).to(Y.dtype.element_ty), mask=m)
        tl.store(Y + first + HALF, tl.where(rotate, r2, x2).to(Y.dtype.element_ty), mask=m)

    @triton.jit
    def rope_norm_backward_kernel(DY, X, COS, SIN, POS, DX, n_rows, T, HEADS, N_QK, eps,
                                  HAS_POS: tl.constexpr, NORM: tl.constexpr, HALF: tl.constexpr, ROWS: tl.constexpr):
        """dx from dy: LayerNorm's backward (the rotation recomputed from x), then the rotation's transpose:
        r1 = x1·c1 − x2·s1, r2 = x2·c2 + x1·s2  ⇒  dx1 = dr1·c1 + dr2·s2, dx2 = dr2·c2 − dr1·s1."""
        first, m, rotate, x1, x2, c1, c2, s1, s2 = rope_norm_rows(
            X, COS, SIN, POS, tl.program_id(0) * ROWS, n_rows, T, HEADS, N_QK, HAS_POS, HALF, ROWS)
        dr1 = tl.load(DY + first, mask=m, other=0.0).to(tl.float32)       # (ROWS, HALF)
        dr2 = tl.load(DY + first + HALF, mask=m, other=0.0).to(tl.float32)
        dy1 = dr1
        dy2 = dr2
        if NORM:
            n1 = x1 * c1 - x2 * s1
            n2 = x2 * c2 + x1 * s2
            mean = (tl.sum(n1, 1) + tl.sum(n2, 1)) / (2 * HALF)
            n1 = n1 - mean[:, None]
            n2 = n2 - mean[:, None]
            rstd = 1.0 / tl.sqrt((tl.sum(n1 * n1, 1) + tl.sum(n2 * n2, 1)) / (2 * HALF) + eps)
            n1 = n1 * rstd[:, None]                                         # the normalised output
            n2 = n2 * rstd[:, None]
            mean_dy = (tl.sum(dy1, 1) + tl.sum(dy2, 1)) / (2 * HALF)
            mean_dyn = (tl.sum(dy1 * n1, 1) + tl.sum(dy2 * n2, 1)) / (2 * HALF)
            dr1 = (dy1 - mean_dy[:, None] - n1 * mean_dyn[:, None]) * rstd[:, None]
            dr2 = (dy2 - mean_dy[:, None] - n2 * mean_dyn[:, None]) * rstd[:, None]
        dx1 = dr1 * c1 + dr2 * s2
        dx2 = dr2 * c2 - dr1 * s1
        tl.store(DX + first, tl.where(rotate, dx1, dy1).to(DX.dtype.element_ty), mask=m)
        tl.store(DX + first + HALF, tl.where(rotate, dx2, dy2).to(DX.dtype.element_ty), mask=m)

    def rope_norm_launch(kernel, tensors, qkv, positions, n_qk_heads, norm, eps):
        """Run one of the two kernels over every head row of the dense (B, T, heads, hd) qkv."""
        B, T, heads, hd = qkv.shape
        n_rows = B * T * heads
        pos = positions if positions is not None else qkv        # a placeholder pointer, never read
        launch(kernel)[(triton.cdiv(n_rows, ROPE_ROWS_PER_PROGRAM),)](
            *tensors[:-1], pos, tensors[-1], n_rows, T, heads, n_qk_heads, eps,
            HAS_POS=positions is not None, NORM=norm, HALF=hd // 2, ROWS=ROPE_ROWS_PER_PROGRAM)

    @torch.library.triton_op("linnet::rope_qk_norm", mutates_args={})
    def rope_qk_norm_op(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, positions: torch.Tensor | None,
                        n_qk_heads: int, norm: bool, eps: float) -> torch.Tensor:
        out = torch.empty_like(qkv, memory_format=torch.contiguous_format)           # (B, T, heads, hd)
        rope_norm_launch(rope_norm_forward_kernel, (qkv, cos, sin, out), qkv, positions, n_qk_heads, norm, eps)
        return out

    @torch.library.triton_op("linnet::rope_qk_norm_backward", mutates_args={})
    def rope_qk_norm_backward_op(dy: torch.Tensor, qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                                 positions: torch.Tensor | None, n_qk_heads: int, norm: bool, eps: float) -> torch.Tensor:
        dy = dy.contiguous()
        dx = torch.empty_like(qkv, memory_format=torch.contiguous_format)            # (B, T, heads, hd)
        rope_norm_launch(rope_norm_backward_kernel, (dy, qkv, cos, sin, dx), qkv, positions, n_qk_heads, norm, eps)
        return dx

    def rope_qk_norm_setup(ctx, inputs, output):
        qkv, cos, sin, positions, n_qk_heads, norm, eps = inputs
        ctx.save_for_backward(qkv, cos, sin, positions)
        ctx.n_qk_heads, ctx.norm, ctx.eps = n_qk_heads, norm, eps

    def rope_qk_norm_grad(ctx, dy):
        qkv, cos, sin, positions = ctx.saved_tensors
        dx = torch.ops.linnet.rope_qk_norm_backward(dy, qkv, cos, sin, positions, ctx.n_qk_heads, ctx.norm, ctx.eps)
        return dx, None, None, None, None, None, None

    rope_qk_norm_op.register_autograd(rope_qk_norm_grad, setup_context=rope_qk_norm_setup)


# --- Appendix: linnet+ — measured upgrades, each a switch (05's --preset linnet-plus) -----------------------
# linnet is rebuilt exactly above. These are later recipe changes from public speed-runs (modded-nanogpt,
# nanochat), each an LLMConfig field that is off by default: LLM(config) builds an `LLMPlus` as soon as one is
# on, so every loader, 05 and 06 work unchanged, and a linnet config still builds the plain LLM, byte for byte.
# What each buys, measured on linnet's depth-12 model: BENCHMARKS.md, "linnet+".

PLUS_SWITCHES = ("zero_init_out", "x0_mix", "logit_softcap")


def plus_switches(config: LLMConfig) -> dict:
    """The linnet+ switches that are on in `config`: {} for linnet."""
    default = LLMConfig()
    return {name: getattr(config, name) for name in PLUS_SWITCHES if getattr(config, name) != getattr(default, name)}


class BlockPlus(Block):
    """x0_mix: the block reads a·x + b·x0, where x0 is the token embedding and (a, b) are learned per layer
    (start: 1, 0 = linnet's block). A layer can pull back what the token itself was, however deep it is."""

    def __init__(self, config: LLMConfig):
        super().__init__(config)
        self.x0_lambdas = nn.Parameter(torch.tensor([1.0, 0.0])) if config.x0_mix else None

    def forward(self, x, cache=None, expert_weights=None, x0=None):  # (B, T, C)
        if self.x0_lambdas is not None:
            x = self.x0_lambdas[0] * x + self.x0_lambdas[1] * x0
        return super().forward(x, cache, expert_weights)


class LLMPlus(LLM):
    """linnet's model with the linnet+ switches of its config (see PLUS_SWITCHES)."""

    def __init__(self, config: LLMConfig):
        super().__init__(config)
        self.transformer.h = nn.ModuleList([BlockPlus(config) for _ in range(config.n_layer)])
        self.init_weights()

    @torch.no_grad()
    def init_weights(self):
        """linnet's init; zero_init_out: both output projections start at 0 (modded-nanogpt, nanochat)."""
        super().init_weights()
        if self.config.zero_init_out:
            for block in self.transformer.h:
                block.attn.c_proj.weight.zero_()
                block.moe.c_proj.zero_()

    def head(self, x):
        """logit_softcap c: c·tanh(logits / c) keeps every logit in (−c, c) (modded-nanogpt uses 15–30)."""
        logits = self.lm_head(x)
        cap = self.config.logit_softcap
        return cap * torch.tanh(logits / cap) if cap else logits

    def hidden(self, idx, caches=None, expert_weights=None):
        x0 = x = self.transformer.wte(idx)                           # (B, T, C)
        routers = []
        for i, block in enumerate(self.transformer.h):
            x, router = block(x, None if caches is None else caches[i],
                              None if expert_weights is None else expert_weights[i], x0=x0)
            routers.append(router)
        return self.transformer.ln_f(x), routers


def plus_state_dict(model: LLM) -> dict:
    """The linnet+ parameters that linnet's layout has no key for (export_linnet_state_dict adds them)."""
    return {f"transformer.h.{i}.x0_lambdas": block.x0_lambdas.detach()
            for i, block in enumerate(model.transformer.h) if getattr(block, "x0_lambdas", None) is not None}


if __name__ == "__main__":
    main()
