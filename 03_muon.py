"""03 — Muon: orthogonalised momentum for the hidden matrices, AdamW for everything else.

Builds, in order: 1 Newton–Schulz (the U·Vᵀ of a gradient G = U·S·Vᵀ with matmuls only: Keller Jordan's
quintic, 5 bf16 steps), 2 the Muon optimizer (Nesterov momentum → orthogonalise → shape-scaled lr → decoupled
weight decay, bit for bit `torch.optim.Muon`, plus `stacked=True` groups for linnet's [E, A, B] expert
stacks), 3 linnet's split (Muon at 1e-2 for the hidden matrices, AdamW at 1e-3 for the embedding, norm weights
and conv filters), 4 three experiments (a gradient's spectrum, the polynomial, Muon+AdamW vs AdamW alone on
next-byte prediction), 5 their plots, 6 the script. The step's fast twin, one Newton–Schulz call per shape
(`Muon(batched=True)`, the default), is fast/muon.py; what it gains is in BENCHMARKS.md.

Run it
  python 03_muon.py --preset tiny           # ≈ 25 s on a CPU: depth 2, 8×64 bytes per step, 60 steps, 3 lrs
  python 03_muon.py --preset tiny --quick   # 2 lrs × 30 steps, ≈ 1/3 of the work (the notebook's run)
  python 03_muon.py                         # depth 4, 8 experts, 200 steps, 4 lrs (≈ 2 min on an H100)
  python 03_muon.py --data my.txt           # the race on your own text

Writes (out/03_muon/): ns_singular_values.png, ns_polynomial.png, muon_vs_adamw_curves.png,
muon_vs_adamw_lr.png; prints the depth-12 model's optimizer table (which parameter goes to which optimizer).

Not handled: under DDP every rank repeats the whole orthogonalisation (distributed Muon splits it across
ranks); 5 quintic steps leave the singular values in [0.68, 1.20], not at 1 (by design, see `newton_schulz`),
and directions weaker than ~0.0015 of ‖G‖_F stay small; the race runs at a constant lr (no warmup, no decay)
for 30–200 steps on bytes: it shows the trend, it is not a tuned benchmark.
"""
from __future__ import annotations

import argparse
import importlib
import math
import re
import time
from collections import OrderedDict
from pathlib import Path

import torch

import house
from fast.muon import muon_update_batched_

model_lib = importlib.import_module("02_model")

# --- 1. Newton–Schulz: the orthogonal factor of a matrix, with matmuls only -------------------------
# Muon's idea: a gradient matrix G = U·S·Vᵀ is dominated by a few large singular values, so a step
# along G mostly moves the weights in a few directions. Replace G by U·Vᵀ — the same "directions",
# all singular values set to 1 — and every direction gets an equal step. An SVD per step is far too
# slow on a GPU; an odd polynomial p(G) = a·G + b·(G·Gᵀ)·G + c·(G·Gᵀ)²·G acts on the singular values
# only (p(U S Vᵀ) = U p(S) Vᵀ), so iterating a polynomial that pushes every s in (0, 1] towards 1
# gives ≈ U·Vᵀ with nothing but matrix products — which bf16 tensor cores do fast.

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)   # Keller Jordan's quintic (a, b, c)
NS_STEPS = 5
NS_EPS = 1e-7


def ns_polynomial(x, steps: int = 1, coefficients=NS_COEFFICIENTS):
    """What Newton–Schulz does to ONE singular value: φ(x) = a·x + b·x³ + c·x⁵, iterated `steps` times.

    >>> round(float(ns_polynomial(torch.tensor(0.01))), 4)    # small values grow ×3.4445 per step
    0.0344
    >>> round(float(ns_polynomial(torch.tensor(1.0))), 4)     # 1 is not a fixed point: φ(1) = a+b+c
    0.701"""
    a, b, c = coefficients
    for _ in range(steps):
        x = a * x + b * x**3 + c * x**5
    return x


def newton_schulz(G: torch.Tensor, steps: int = NS_STEPS, coefficients=NS_COEFFICIENTS,
                  eps: float = NS_EPS) -> torch.Tensor:
    """Approximate the orthogonal factor U·Vᵀ of G = U·S·Vᵀ, for one matrix or a batch (..., m, n).

    The recipe (Keller Jordan's `zeropower_via_newtonschulz5`, and `torch.optim.Muon`, bit for bit):
      1. work in bf16: the iteration is self-correcting, so low precision costs nothing and the
         matmuls run on tensor cores;
      2. transpose tall matrices (m > n) so that X·Xᵀ is the SMALL (min(m,n))² Gram matrix;
      3. divide by the Frobenius norm: ‖G‖_F ≥ the largest singular value, so every s lands in [0, 1];
      4. `steps` times: A = X·Xᵀ;  B = b·A + c·A·A;  X = a·X + B·X   (= φ applied to every s).

    Why a quintic with these coefficients: the cubic Newton–Schulz φ(x) = 1.5x − 0.5x³ converges to
    exactly 1 but raises a small singular value only ×1.5 per step — dozens of steps for s ≈ 0.001.
    These (a, b, c) were chosen to make the slope at 0 as large as possible (a = 3.4445: a tiny s grows
    ×3.4 per step) while keeping the iteration inside a band around 1 instead of converging to 1.
    After 5 steps every singular value that started above ≈ 0.0015·‖G‖_F lies in [0.68, 1.20]
    (iterated further it settles in [0.68, 1.13]); training does not mind that the update is U·S'·Vᵀ
    with S' ≈ 1 rather than exactly U·Vᵀ.

    Batches: the same maths runs on every (m, n) slice of a (..., m, n) tensor in one call — linnet's
    8 stacked experts [8, 4096, 768] are orthogonalised as 8 independent matrices.

    >>> G = torch.randn(256, 128)
    >>> s = torch.linalg.svdvals(newton_schulz(G).float())
    >>> bool(s.min() > 0.67 and s.max() < 1.21)
    True
    """
    if G.ndim < 2:
        raise ValueError(f"newton_schulz needs a matrix or a batch of matrices, got shape {tuple(G.shape)}")
    a, b, c = coefficients
    tall = G.size(-2) > G.size(-1)
    X = G.bfloat16()
    if tall:
        X = X.mT                                                     # (..., n, m) with n < m
    batch_shape = X.shape
    X = X.reshape(-1, *batch_shape[-2:])                             # (N, m, n), N = product of batch dims
    X = X / X.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)        # every singular value now ≤ 1
    for _ in range(steps):
        A = torch.bmm(X, X.mT)                                       # (N, m, m) Gram matrix
        B = torch.baddbmm(A, A, A, beta=b, alpha=c)                  # b·A + c·A·A
        X = torch.baddbmm(X, B, X, beta=a)                           # a·X + B·X
    X = X.reshape(batch_shape)
    if tall:
        X = X.mT
    return X                                                         # bf16, same shape as G


# --- 2. The Muon optimizer ----------------------------------------------------------------------------
# One step, for every matrix W with gradient g (μ = momentum, η = lr, λ = weight decay):
#   buf ← μ·buf + (1−μ)·g                       momentum as a running average
#   u   ← (1−μ)·g + μ·buf   (Nesterov)  or  buf  look one step ahead along the momentum
#   O   ← newton_schulz(u)                       every singular value ≈ 1
#   W   ← W·(1 − η·λ)                            decoupled weight decay (AdamW-style), with the raw η
#   W   ← W − η'·O,  η' = adjust_lr(η, A×B)      shape-dependent lr so every matrix moves alike
# (torch's docstring writes buf ← μ·buf + g; the code, which we match, uses the running average —
# the same direction up to a scale that newton_schulz divides out anyway.)

ADJUST_LR_FNS = (None, "original", "match_rms_adamw")


def adjust_lr(lr: float, shape, adjust_lr_fn: str | None = None) -> float:
    """The learning rate Muon actually uses on an A×B matrix (A = rows = fan-out, B = columns = fan-in).

    "original" (Keller Jordan; torch's default): lr · sqrt(max(1, A/B)) — an orthogonal A×B matrix has
    entries of RMS sqrt(1/max(A, B))·…; this factor makes tall matrices move as much as square ones.
    "match_rms_adamw" (Moonshot, "Muon is Scalable"): lr · 0.2·sqrt(max(A, B)) — the update's RMS
    becomes ≈ 0.2, like AdamW's, so AdamW's lr and weight decay can be reused as they are.

    >>> round(adjust_lr(0.01, (4096, 768)), 5)  # linnet's expert w_v slice: 0.01 · sqrt(4096/768)
    0.02309
    >>> adjust_lr(0.01, (768, 2048))            # wide: no boost
    0.01
    >>> round(adjust_lr(0.01, (768, 2048), "match_rms_adamw"), 4)
    0.0905"""
    A, B = shape[-2], shape[-1]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return lr * math.sqrt(max(1.0, A / B))
    if adjust_lr_fn == "match_rms_adamw":
        return lr * 0.2 * math.sqrt(max(A, B))
    raise ValueError(f"adjust_lr_fn must be one of {ADJUST_LR_FNS}, got {adjust_lr_fn!r}")


def muon_update_(p: torch.Tensor, grad: torch.Tensor, buf: torch.Tensor, group: dict) -> None:
    """Apply one Muon update to `p` in place (momentum buffer `buf` updated in place too)."""
    update = momentum_direction_(grad, buf, group)                   # buf ← μ·buf + (1−μ)·g; Nesterov
    update = orthogonalize(update, group)                            # newton_schulz: singular values ≈ 1
    orthogonal_step_(p, update, group)                               # decay, then the shape-scaled step


def momentum_direction_(grad: torch.Tensor, buf: torch.Tensor, group: dict) -> torch.Tensor:
    """The matrix Muon orthogonalises: update the momentum `buf` in place, return buf or Nesterov's look-ahead."""
    momentum = group["momentum"]
    buf.lerp_(grad, 1 - momentum)                                    # buf = μ·buf + (1−μ)·g
    return grad.lerp(buf, momentum) if group["nesterov"] else buf    # Nesterov: (1−μ)·g + μ·buf


def orthogonalize(update: torch.Tensor, group: dict) -> torch.Tensor:
    """`newton_schulz` with the group's settings (steps, coefficients, eps)."""
    return newton_schulz(update, group["ns_steps"], group["ns_coefficients"], group["eps"])


def orthogonal_step_(p: torch.Tensor, O: torch.Tensor, group: dict) -> None:
    """Decoupled weight decay with the raw lr, then the step along O = newton_schulz(direction)."""
    lr = group["lr"]
    p.mul_(1 - lr * group["weight_decay"])                           # decoupled weight decay, raw lr
    p.add_(O, alpha=-adjust_lr(lr, p.shape, group["adjust_lr_fn"]))  # [E,]A,B: lr of one A×B slice


class Muon(torch.optim.Optimizer):
    """Muon: SGD-momentum (Nesterov) whose update is orthogonalised by Newton–Schulz, for 2-D weights.

    Same hyper-parameters, defaults and arithmetic as `torch.optim.Muon` (torch ≥ 2.9), plus one
    extension: a param group with `stacked=True` holds 3-D tensors [E, A, B] that are E independent
    A×B matrices (linnet's stacked MoE experts). Each slice is orthogonalised on its own — one batched
    `newton_schulz` call per tensor — and gets the lr adjustment of an A×B matrix; that is exactly what
    linnet did with its 8 separate per-expert matrices.

    batched=True (the default) goes one step further: all same-shaped parameters of a group share one
    `newton_schulz` call (`muon_update_batched_`, fast/muon.py); batched=False is the plain reference, one
    `muon_update_` per parameter. Same maths, same state_dict; only the launches differ.

        Muon([{"params": matrices}, {"params": expert_stacks, "stacked": True}], lr=1e-2)

    Anything else (1-D norm weights, biases, the embedding, conv filters) belongs in AdamW:
    Muon raises a ValueError that says so.

    CPU and CUDA alike. Under DDP nothing extra is needed: after backward every rank holds the same
    all-reduced gradients, the momentum buffers start at zero on every rank and see the same inputs,
    and newton_schulz is a fixed sequence of matmuls — so every rank computes the same update and the
    weights stay identical without any communication. (The price: every rank repeats the whole
    orthogonalisation; distributed Muon variants split it across ranks and all-gather the results.)
    """

    def __init__(self, params, lr: float = 1e-3, weight_decay: float = 0.1, momentum: float = 0.95,
                 nesterov: bool = True, ns_coefficients=NS_COEFFICIENTS, eps: float = NS_EPS,
                 ns_steps: int = NS_STEPS, adjust_lr_fn: str | None = None, stacked: bool = False,
                 batched: bool = True):
        if lr < 0 or weight_decay < 0 or momentum < 0:
            raise ValueError(f"lr, weight_decay and momentum must be >= 0, got {lr}, {weight_decay}, {momentum}")
        if adjust_lr_fn not in ADJUST_LR_FNS:
            raise ValueError(f"adjust_lr_fn must be one of {ADJUST_LR_FNS}, got {adjust_lr_fn!r}")
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                        ns_coefficients=tuple(ns_coefficients), eps=eps, ns_steps=ns_steps,
                        adjust_lr_fn=adjust_lr_fn, stacked=stacked)
        super().__init__(params, defaults)
        self.batched = batched      # how to run the maths, not a hyper-parameter: not in the state_dict

    def add_param_group(self, param_group: dict) -> None:
        """Add a group, refusing tensors that are not matrices (or, with stacked=True, stacks of them)."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        for p in group["params"]:
            check_muon_shape(p.shape, group["stacked"])

    @torch.no_grad()
    def step(self, closure=None):
        """One Muon step on every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                if "momentum_buffer" not in self.state[p]:
                    self.state[p]["momentum_buffer"] = torch.zeros_like(p.grad)
            bufs = [self.state[p]["momentum_buffer"] for p in params]
            if self.batched:       # the fast twin: one newton_schulz call per shape (fast/muon.py)
                muon_update_batched_(params, bufs, group, direction_=momentum_direction_,
                                     orthogonalize=orthogonalize, step_=orthogonal_step_)
            else:                  # the plain reference: one call per parameter
                for p, buf in zip(params, bufs):
                    muon_update_(p, p.grad, buf, group)
        return loss


def check_muon_shape(shape, stacked: bool) -> None:
    """Raise a ValueError that says where a parameter of this shape belongs if Muon cannot take it."""
    shape = tuple(shape)
    if stacked and len(shape) != 3:
        raise ValueError(f"a stacked=True group holds 3-D stacks of matrices [E, A, B], got shape {shape}: "
                         "put 2-D matrices in a group without stacked=True and the rest in AdamW")
    if not stacked and len(shape) == 3:
        raise ValueError(f"Muon got a 3-D parameter of shape {shape}: if it is a stack of independent "
                         "matrices [E, A, B] (like stacked MoE experts) put it in a param group with "
                         "stacked=True; if it is a conv filter, optimise it with AdamW")
    if not stacked and len(shape) != 2:
        raise ValueError(f"Muon only orthogonalises matrices, got a {len(shape)}-D parameter of shape {shape} "
                         "(a norm weight, bias or scalar?): optimise it with AdamW")


# --- 3. linnet's split: which parameter goes to which optimizer -----------------------------------
# Muon is for the hidden matrices: maps from one activation space to another, where an orthogonal
# update means "change every direction equally". The embedding is a lookup table (each row is updated
# only by the tokens that occur — an orthogonal update would move rows of unseen tokens), and it is
# tied to the lm_head; norm weights are vectors; the depthwise conv is 768 separate 3-tap filters.
# Those go to AdamW.

def muon_role(name: str, p: torch.Tensor, router_on_adamw: bool = False) -> str:
    """'matrix' (Muon), 'stacked' (Muon, stacked=True) or 'adamw' for a named parameter of 02's LLM.

    >>> muon_role("transformer.h.0.moe.w_v", torch.empty(8, 4096, 768))
    'stacked'
    >>> muon_role("transformer.h.0.attn.l_conv.weight", torch.empty(768, 1, 3))
    'adamw'"""
    if "wte" in name or "lm_head" in name:
        return "adamw"
    if router_on_adamw and ".router." in name:
        return "adamw"
    if p.ndim == 2:
        return "matrix"
    if p.ndim == 3 and ".moe." in name:
        return "stacked"
    return "adamw"


def build_optimizers(model: torch.nn.Module, lr: float = 1e-3, weight_decay: float = 0.1,
                     muon_lr_multiplier: float = 10.0, router_on_adamw: bool = False,
                     fused: bool | None = None, adamw_betas=(0.9, 0.999), batched: bool = True):
    """linnet's optimizers for a 02_model.LLM: returns (optimizers, table).

    optimizers = [Muon, AdamW]: Muon at lr·muon_lr_multiplier (linnet: 1e-2; momentum 0.95, Nesterov, 5 steps,
    lr adjustment "original", weight decay 0.1: torch's defaults) for every 2-D weight except the tied
    embedding/lm_head — the router included — in one group, and the stacked expert tensors `moe.w_v`
    [E, 2·ffn, C] and `moe.c_proj` [E, C, ffn] in a `stacked=True` group;
    AdamW at lr (1e-3), weight decay 0.1, betas (0.9, 0.999), for everything else.
    `fused=None` uses fused AdamW when the parameters are on CUDA; `batched=False` gives Muon's plain
    one-Newton–Schulz-call-per-parameter loop instead of one call per shape (same weights, slower).
    table = one (name, shape, optimizer name, lr) row per parameter (see `format_optimizer_table`).

    Every group carries `initial_lr`: a schedule sets `group["lr"] = group["initial_lr"] · multiplier`
    and so keeps Muon at 10× AdamW through warmup and decay (torch's LR schedulers use the same key).

    router_on_adamw=True moves `moe.router.weight` [8, 768] to AdamW. Why one might: the router is
    tiny, and its 8 rows produce the logits of a softmax over experts. Orthogonalising its update
    forces every expert's logit row to move by the same amount in decorrelated directions — it
    cannot make a small, targeted correction to one overloaded expert — which can fight the load
    balance; several MoE recipes keep routers on AdamW. linnet put it on Muon (the default here).
    """
    muon_matrices, muon_stacks, adamw_params, table = [], [], [], []
    muon_lr = lr * muon_lr_multiplier
    for name, p in model.named_parameters():                 # tied weights appear once
        if not p.requires_grad:
            continue
        role = muon_role(name, p, router_on_adamw)
        {"matrix": muon_matrices, "stacked": muon_stacks, "adamw": adamw_params}[role].append(p)
        table.append((name, tuple(p.shape), "AdamW" if role == "adamw" else "Muon",
                      lr if role == "adamw" else muon_lr))
    muon_groups = [{"params": muon_matrices, "stacked": False}, {"params": muon_stacks, "stacked": True}]
    muon_groups = [g for g in muon_groups if g["params"]]
    optimizers = []
    if muon_groups:
        optimizers.append(Muon(muon_groups, lr=muon_lr, weight_decay=weight_decay, batched=batched))
    if adamw_params:
        if fused is None:
            fused = all(p.is_cuda for p in adamw_params)
        optimizers.append(torch.optim.AdamW(adamw_params, lr=lr, betas=adamw_betas,
                                            weight_decay=weight_decay, fused=fused or None))
    for opt in optimizers:
        for group in opt.param_groups:
            group["initial_lr"] = group["lr"]
    return optimizers, table


def format_optimizer_table(table) -> str:
    """The table as text, one line per parameter *kind* (layers folded into `h.*`), then totals.

    For the depth-12 model the totals read
      Muon     60 tensors    471,932,928 elements
      AdamW    38 tensors     25,212,672 elements
      total    98 tensors    497,145,600 elements"""
    rows = OrderedDict()
    for name, shape, opt, lr in table:
        key = (re.sub(r"\.h\.\d+\.", ".h.*.", name), shape, opt, lr)
        rows[key] = rows.get(key, 0) + 1
    lines = [f"{'parameter (h.* = every layer)':<34} {'shape':<18} {'count':>5} {'optimizer':<9} {'lr':>7}  "
             "Muon's lr for this shape"]
    for (name, shape, opt, lr), count in rows.items():
        shape_lr = f"{adjust_lr(lr, shape):.4g}" if opt == "Muon" else ""
        lines.append(f"{name:<34} {str(list(shape)):<18} {count:>5} {opt:<9} {lr:>7.2g}  {shape_lr}")
    totals = {}
    for name, shape, opt, lr in table:
        n, e = totals.get(opt, (0, 0))
        totals[opt] = (n + 1, e + math.prod(shape))
    for opt in ("Muon", "AdamW"):
        n, e = totals.get(opt, (0, 0))
        lines.append(f"{opt:<8} {n:>4} tensors {e:>14,} elements")
    lines.append(f"{'total':<8} {len(table):>4} tensors {sum(e for _, e in totals.values()):>14,} elements")
    return "\n".join(lines)


# --- 4. Experiments: what Newton–Schulz does to a spectrum, and Muon vs AdamW on bytes ---------------

def gradient_like_matrix(rows: int = 256, cols: int = 128, rank: int = 8, noise: float = 0.02,
                         seed: int = 0) -> torch.Tensor:
    """A matrix shaped like a real gradient: a few strong directions (rank `rank`, decaying) + noise."""
    g = torch.Generator().manual_seed(seed)
    U = torch.linalg.qr(torch.randn(rows, rank, generator=g))[0]          # (rows, rank)
    V = torch.linalg.qr(torch.randn(cols, rank, generator=g))[0]          # (cols, rank)
    strengths = 10.0 * 0.5 ** torch.arange(rank, dtype=torch.float32)     # 10, 5, 2.5, ...
    return U @ torch.diag(strengths) @ V.T + noise * torch.randn(rows, cols, generator=g)


def singular_values_per_step(G: torch.Tensor, max_steps: int = 5) -> list[torch.Tensor]:
    """[svd of G/‖G‖_F, svd after 1 NS step, ..., after max_steps], each sorted descending."""
    out = [torch.linalg.svdvals(G / G.norm())]
    for k in range(1, max_steps + 1):
        out.append(torch.linalg.svdvals(newton_schulz(G, steps=k).float()))
    return out


def byte_batches(data: torch.Tensor, batch_size: int, seq_len: int, generator: torch.Generator):
    """An endless stream of (x, y) next-byte batches: random windows of `data` (uint8 bytes)."""
    while True:
        starts = torch.randint(0, len(data) - seq_len - 1, (batch_size,), generator=generator)
        window = torch.stack([data[s:s + seq_len + 1] for s in starts.tolist()]).long()   # (B, T+1)
        yield window[:, :-1].contiguous(), window[:, 1:].contiguous()                      # (B, T), (B, T)


def pick_text_files(files: list[Path]) -> list[Path]:
    """Shakespeare alone when find_tiny_data returned the embedded corpus (plays read well as raw bytes,
    and python-docs would fill the whole byte budget first); otherwise every file as given."""
    return [f for f in files if f.name in ("shakespeare.jsonl", "shakespeare.jsonl.zst")] or files


def load_bytes(files, max_bytes: int) -> torch.Tensor:
    """The first `max_bytes` UTF-8 bytes of the documents in `files`, as a uint8 tensor (vocab 256:
    a byte-level model needs no tokenizer)."""
    data = house.first_bytes(files, max_bytes)
    if len(data) < 10_000:
        raise house.UserError(f"only {len(data)} bytes of text found: pass --data with at least 10 kB of text")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


# The race's model: 02's TINY_TRAINING_SHAPE at twice the width (n_embd 128, head_dim 64, ffn 384). At width 64
# AdamW alone does not stall at the largest lr (Shakespeare, 60 steps: held-out 3.09 / 2.74 / 3.02 against
# Muon+AdamW's 2.95 / 2.46 / 2.54 at lr 1e-3 / 3e-3 / 1e-2); at width 128 it does (run_lr_sweep's numbers).
RACE_MODEL_SHAPE = dict(model_lib.TINY_TRAINING_SHAPE, n_embd=128, head_dim=64, ffn_dim=384)


def tiny_model(preset: dict) -> torch.nn.Module:
    """02's LLM of the preset's shape (`preset["model"]`) over 256 byte values, same seed every call.

    >>> sum(p.numel() for p in tiny_model(PRESETS["tiny"]).parameters())
    1313152"""
    torch.manual_seed(preset["seed"])
    config = model_lib.LLMConfig(**preset["model"], block_size=preset["seq_len"], vocab_size=256)
    return model_lib.LLM(config)


def adamw_only(model: torch.nn.Module, lr: float, weight_decay: float = 0.1):
    """The baseline: one AdamW for every parameter, linnet's AdamW hyper-parameters."""
    fused = next(model.parameters()).is_cuda or None
    return [torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.999), weight_decay=weight_decay, fused=fused)]


@torch.no_grad()
def eval_loss(model, val_data, preset, device="cpu") -> float:
    """Mean next-byte cross-entropy (nats) on fixed batches of held-out bytes."""
    model.eval()
    batches = byte_batches(val_data, preset["batch_size"], preset["seq_len"], torch.Generator().manual_seed(1))
    losses = []
    for _ in range(preset["eval_batches"]):
        x, y = (t.to(device) for t in next(batches))
        _, loss = model(x, y)                     # eval mode: cross-entropy alone, no balance term
        losses.append(loss.item())
    model.train()
    return sum(losses) / len(losses)


def train_run(method: str, lr: float, train_data, val_data, preset, device="cpu") -> dict:
    """Train the tiny model with 'adamw' or 'muon' (= build_optimizers) at base lr; same data order."""
    model = tiny_model(preset).to(device)
    optimizers = adamw_only(model, lr) if method == "adamw" else build_optimizers(model, lr=lr)[0]
    batches = byte_batches(train_data, preset["batch_size"], preset["seq_len"], torch.Generator().manual_seed(0))
    losses = []
    # A bare training loop of its own: 05_train's loop comes later in the read order (03 < 05), and
    # this race needs none of its schedule, accumulation or checkpoints.
    for _ in range(preset["steps"]):
        x, y = (t.to(device) for t in next(batches))                     # (B, T), (B, T)
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)          # linnet clips at 1.0
        for opt in optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            break                                  # diverged: this run's curve ends here
    return {"method": method, "lr": lr, "losses": losses, "val_loss": eval_loss(model, val_data, preset, device)}


# --- 5. Plots: each returns a figure; main saves them ------------------------------------------------

def plot_singular_values(spectra):
    """Singular values of G/‖G‖_F and after 1..5 Newton–Schulz steps (log scale), with the 5-step band."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(spectra[0].numpy(), color="black", lw=2, label="G / ‖G‖_F (before)")
    colors = plt.cm.viridis(torch.linspace(0.15, 0.9, len(spectra) - 1).numpy())
    for k, (s, color) in enumerate(zip(spectra[1:], colors), 1):
        ax.plot(s.numpy(), color=color, label=f"after {k} NS step{'s' if k > 1 else ''}")
    ax.axhspan(0.68, 1.20, color="tab:green", alpha=0.12, label="5-step band [0.68, 1.20]")
    ax.set_yscale("log")
    ax.set_xlabel("singular value index (largest first)")
    ax.set_ylabel("singular value")
    ax.set_title("Newton–Schulz flattens a gradient's spectrum: 8 strong directions + noise → all ≈ 1")
    ax.legend(fontsize=8, loc="lower left")
    return fig


def plot_ns_polynomial():
    """φ iterated 1..5 times (and the classic cubic 5 times) against the goal, on a log x-axis."""
    import matplotlib.pyplot as plt

    x = torch.logspace(-4, math.log10(1.2), 601, dtype=torch.float64)   # log x: small values are the story
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(x, torch.ones_like(x), color="black", lw=2, label="the goal: 1 for every x > 0 (U·Vᵀ)")
    colors = plt.cm.viridis(torch.linspace(0.15, 0.9, 5).numpy())
    for k, color in zip(range(1, 6), colors):
        ax.plot(x, ns_polynomial(x, k), color=color, label=f"quintic φ iterated {k}×")
    cubic = x.clone()
    for _ in range(5):
        cubic = 1.5 * cubic - 0.5 * cubic**3
    ax.plot(x, cubic, color="tab:red", ls="--", label="classic cubic 1.5x−0.5x³, 5×")
    ax.axhspan(0.68, 1.20, color="tab:green", alpha=0.12)
    ax.axvline(0.0015, color="grey", ls=":", lw=1)                     # φ⁵(0.0015) = 0.68: the band starts here
    ax.set_xscale("log")
    ax.set_ylim(0, 1.4)
    ax.set_xlabel("input singular value x (after dividing by ‖G‖_F), log scale")
    ax.set_ylabel("output singular value")
    ax.set_title("5 quintic steps lift every x above ≈ 0.0015 (dotted) into the band; the cubic needs x ≳ 0.1",
                 fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))   # outside: the curves fill the axes
    return fig


def plot_loss_curves(runs):
    """Training loss per step of every run: blue = Muon+AdamW, orange = AdamW only, darker = larger lr."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    lrs = sorted({r["lr"] for r in runs})
    shades = dict(zip(lrs, torch.linspace(0.45, 1.0, len(lrs)).tolist()))
    for r in runs:
        cmap = plt.cm.Blues if r["method"] == "muon" else plt.cm.Oranges
        label = ("Muon+AdamW" if r["method"] == "muon" else "AdamW only") + f", lr {r['lr']:g}"
        ax.plot(r["losses"], color=cmap(shades[r["lr"]]), label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (nats/byte)")
    ax.set_title("Next-byte prediction: Muon+AdamW (blue) vs AdamW only (orange)")
    ax.legend(fontsize=8)
    return fig


def plot_final_loss_vs_lr(runs):
    """Held-out loss after training against the base lr, one line per method."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for method, color, label in (("adamw", "tab:orange", "AdamW only"), ("muon", "tab:blue", "Muon+AdamW")):
        rs = sorted((r for r in runs if r["method"] == method), key=lambda r: r["lr"])
        ax.plot([r["lr"] for r in rs], [r["val_loss"] for r in rs], "o-", color=color, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("base lr (AdamW lr; Muon gets 10×)")
    ax.set_ylabel("held-out loss after training (nats/byte)")
    ax.set_title("Final held-out loss vs learning rate")
    ax.legend()
    return fig


def save_plots(spectra, runs, out_dir) -> None:
    """Every figure of the lesson, saved under `out_dir` with the caption that says what to look at."""
    house.save_plot(plot_singular_values(spectra), out_dir, "ns_singular_values",
                    "before NS a few directions dominate; after 5 steps every singular value sits in the green band")
    house.save_plot(plot_ns_polynomial(), out_dir, "ns_polynomial",
                    "log x: 5 quintic steps lift everything above ≈ 0.0015 (dotted line) into the green band (wobbly, not exactly 1); the cubic lags")
    house.save_plot(plot_loss_curves(runs), out_dir, "muon_vs_adamw_curves",
                    "dark orange (AdamW alone, largest lr) stalls; blue (Muon+AdamW) ends at or below orange at each lr")
    house.save_plot(plot_final_loss_vs_lr(runs), out_dir, "muon_vs_adamw_lr",
                    "lower is better: blue (Muon+AdamW) below orange at each lr, and flat where AdamW alone blows up")


# --- 6. main: the three experiments, the linnet table, the plots ------------------------------------

PRESETS = {
    # tiny: a laptop CPU in well under a minute (6 runs × 60 steps of a 2-layer MoE on 8×64-byte batches)
    "tiny": dict(model=RACE_MODEL_SHAPE, seq_len=64, batch_size=8, steps=60, lrs=(1e-3, 3e-3, 1e-2),
                 eval_batches=4, max_bytes=1_000_000, ns_shape=(256, 128), seed=0),
    # linnet: ≈2 minutes on one H100 (far longer on a CPU): 4 layers, 8 experts, 200 steps, 4 lrs
    "linnet": dict(model=dict(depth=4, n_experts=8, n_active_experts=2), seq_len=128, batch_size=16, steps=200,
                   lrs=(3e-4, 1e-3, 3e-3, 1e-2), eval_batches=8, max_bytes=5_000_000, ns_shape=(4096, 768), seed=0),
}


def run_spectrum_experiment(ns_shape) -> list[torch.Tensor]:
    """Experiment 1: print the singular-value range of a gradient-like matrix after 0..5 NS steps."""
    print(f"== 1. Newton–Schulz on a gradient-like {ns_shape[0]}×{ns_shape[1]} matrix ==")
    spectra = singular_values_per_step(gradient_like_matrix(*ns_shape))
    for k, s in enumerate(spectra):
        what = "before (÷‖G‖_F)" if k == 0 else f"after {k} step{'s' if k > 1 else ''}"
        print(f"  {what:<18} singular values in [{s.min():.4f}, {s.max():.4f}]")
    print("  notice: before, a handful of directions carry the gradient; after 5 steps all lie in ≈[0.68, 1.2].")
    return spectra


def run_polynomial_experiment() -> None:
    """Experiment 2: print where φ takes a few single singular values in 1..5 steps."""
    print("\n== 2. The polynomial: φ(x) = 3.4445x − 4.7750x³ + 2.0315x⁵, iterated ==")
    for x0 in (0.001, 0.01, 0.1, 0.5, 1.0):
        trace = [float(ns_polynomial(torch.tensor(x0, dtype=torch.float64), k)) for k in range(1, 6)]
        print(f"  x = {x0:<6} → " + "  ".join(f"{v:.3f}" for v in trace))
    print("  notice: slope 3.4 at 0 lifts small values fast; values overshoot to ≈1.2 and fall back to ≈0.7 —"
          " a band, not convergence.")


def print_linnet_table():
    """Build linnet's optimizers for the depth-12 model on the meta device (no memory) and print them.

    linnet's 497,145,600 parameters: 60 tensors / 471,932,928 elements on Muon (12 layers × c_attn, c_proj,
    router and the two expert stacks), 38 tensors / 25,212,672 elements on AdamW (the embedding, 25 norm
    weights, 12 conv filters)."""
    with torch.device("meta"):
        model = model_lib.LLM(model_lib.LLMConfig(depth=12))
    _, table = build_optimizers(model)
    print("\n== The linnet split for the depth-12 model (lr 1e-3, Muon 10×) ==")
    print(format_optimizer_table(table))


def run_lr_sweep(preset, data_path, device) -> list[dict]:
    """Experiment 3: AdamW only vs Muon+AdamW at each of the preset's lrs, on the same bytes; one run per line.

    What you should see (held-out nats/byte; uniform guessing is ln 256 = 5.55):
      tiny (CPU):    lr 1e-3 / 3e-3 / 1e-2 → AdamW only ≈ 2.50 / 2.47 / 3.1–3.2, Muon+AdamW ≈ 2.39 / 2.32 / 2.37
      linnet (H100): lr 3e-4 / 1e-3 / 3e-3 / 1e-2 → AdamW only 1.88 / 1.87 / 2.18 / 2.85,
                     Muon+AdamW 1.78 / 1.78 / 1.82 / 1.91
    Muon+AdamW is lower at every lr and barely cares about the lr; AdamW alone falls apart at 1e-2."""
    shape = preset["model"]
    print(f"\n== 3. AdamW only vs Muon+AdamW: depth-{shape['depth']} MoE ({shape['n_experts']} experts), "
          f"next-byte prediction, {preset['steps']} steps ==")
    files = pick_text_files(house.find_tiny_data(data_path))
    data = load_bytes(files, preset["max_bytes"])
    split = int(0.9 * len(data))
    train_data, val_data = data[:split], data[split:]
    print(f"  data: {len(data):,} bytes from {', '.join(f.name for f in files)} (90 % train / 10 % held out); "
          f"device: {device}")
    runs = []
    if str(device) == "cpu" and preset["model"] == RACE_MODEL_SHAPE:
        # 128-wide matrices gain nothing from a second thread; on a busy 2-core machine it was 6× slower
        torch.set_num_threads(1)
    for lr in preset["lrs"]:
        for method in ("adamw", "muon"):
            t = time.time()
            r = train_run(method, lr, train_data, val_data, preset, device)
            runs.append(r)
            name = "AdamW only" if method == "adamw" else "Muon+AdamW"
            print(f"  {name:<11} lr {lr:<7g} train loss {r['losses'][0]:.3f} → {r['losses'][-1]:.3f}   "
                  f"held-out {r['val_loss']:.3f}   ({time.time() - t:.1f} s)")
    return runs


def print_sweep_summary(runs, lrs) -> None:
    """The best held-out loss of each method, and at how many lrs Muon+AdamW ends lower."""
    by_key = {(r["method"], r["lr"]): r for r in runs}
    finite_loss = lambda r: r["val_loss"] if math.isfinite(r["val_loss"]) else math.inf
    best = {m: min((r for r in runs if r["method"] == m), key=finite_loss) for m in ("adamw", "muon")}
    print(f"  best held-out: AdamW only {best['adamw']['val_loss']:.3f} (lr {best['adamw']['lr']:g}), "
          f"Muon+AdamW {best['muon']['val_loss']:.3f} (lr {best['muon']['lr']:g}); uniform guessing = ln 256 = 5.545")
    wins = [lr for lr in lrs if by_key[("muon", lr)]["val_loss"] < by_key[("adamw", lr)]["val_loss"]]
    print(f"  Muon+AdamW ends lower at {len(wins)} of {len(lrs)} learning rates.")
    print("  notice: same model, data and steps — only the hidden matrices' optimizer differs. Look at the largest lr:"
          " AdamW alone stalls there while Muon+AdamW stays stable. Both updates are scale-free (AdamW's m/√v too);"
          " what differs is their shape: AdamW bounds each ENTRY, so a low-rank gradient's entries all push one"
          " direction and the update's largest singular value grows with the matrix; Muon sets every singular"
          " value to about 1, so no direction of the weights moves by more than about lr per step."
          " Compare the two methods at each lr, not just their best runs.")


def parse_args(argv=None) -> argparse.Namespace:
    """The command line: --preset, --out, --data, --steps (with a --help that says what runs)."""
    parser = house.ArgumentParser(
        description="Muon from scratch: Newton–Schulz orthogonalisation, the Muon optimizer, linnet's "
                    "Muon/AdamW split, and a Muon vs AdamW race on next-byte prediction.",
        epilog="Presets: tiny = depth 2, 4 experts, 8×64 bytes per step, 60 steps, lr 1e-3/3e-3/1e-2 (≈25 s on a "
               "CPU); linnet = depth 4, 8 experts, 16×128 bytes, 200 steps, 4 lrs (≈2 min on an H100).")
    house.add_common_args(parser, "03_muon")
    parser.add_argument("--data", type=Path, default=None,
                        help="text to train experiment 3 on (.jsonl/.txt/.parquet or a directory); "
                             "default: house.find_tiny_data (the Shakespeare of embedded/corpus)")
    parser.add_argument("--steps", type=house.positive_int, default=None, help="training steps per run (default: the preset's)")
    parser.add_argument("--quick", action="store_true",
                        help="a shorter race for a class: the preset's two largest lrs at half the steps (tiny: "
                             "4 runs × 30 steps instead of 6 × 60); both still show what the race shows")
    return parser.parse_args(argv)


def quick_preset(preset: dict) -> dict:
    """--quick: the same race with only the two largest lrs, at half the steps.

    >>> q = quick_preset(PRESETS["tiny"]); q["lrs"], q["steps"]
    ((0.003, 0.01), 30)"""
    return dict(preset, lrs=tuple(preset["lrs"][-2:]), steps=max(1, preset["steps"] // 2))


@house.speaks
def main(argv=None):
    """Run experiments 1–3 (printing what to notice), print the linnet table, then save the four plots."""
    args = parse_args(argv)
    house.check_writable(args.out)          # a read-only --out fails now, not after the sweep
    house.tiny_without_gpu(args, argv, "the linnet preset's race is sized for a GPU: --preset linnet runs it here")
    preset = dict(PRESETS[args.preset])
    if args.quick:
        preset = quick_preset(preset)
    if args.steps is not None:
        preset["steps"] = args.steps
    t0 = time.time()
    spectra = run_spectrum_experiment(preset["ns_shape"])
    run_polynomial_experiment()
    print_linnet_table()
    runs = run_lr_sweep(preset, args.data, house.default_device())
    print_sweep_summary(runs, preset["lrs"])
    print()
    save_plots(spectra, runs, args.out)
    print(f"\ndone in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
