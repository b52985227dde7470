"""Worked solution of the build track's model (spec: docs/build/model.md): linnet under its published key names,
with a KV cache and greedy generation."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


class Rotary(nn.Module):
    def __init__(self, head_dim: int, base: float):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))

    def forward(self, x, start: int):  # x (B, T, h, hd), rotated at positions start..start+T-1
        pos = torch.arange(start, start + x.shape[1], dtype=torch.float32, device=x.device)
        angles = pos[:, None] * self.inv_freq[None, :]
        angles = torch.cat([angles, angles], dim=-1)[:, None, :]          # (T, 1, hd)
        x1, x2 = x.chunk(2, dim=-1)
        return x * angles.cos() + torch.cat([-x2, x1], dim=-1) * angles.sin()


class Attention(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        C, hd = cfg["n_embd"], cfg["head_dim"]
        self.nh, self.nkv, self.hd = cfg["n_head"], cfg["n_kv_head"], hd
        self.l_conv = nn.Conv1d(C, C, 3, groups=C, bias=False)
        self.c_attn = nn.Linear(C, C + 2 * self.nkv * hd, bias=False)
        self.c_proj = nn.Linear(C, C, bias=False)
        self.rotary_emb = Rotary(hd, cfg["rope_base"])

    def forward(self, x, cache=None):  # x (B, T, C)
        B, T, C = x.shape
        past = 0 if cache is None or cache.get("k") is None else cache["k"].shape[2]
        history = x.new_zeros(B, 2, C) if cache is None or cache.get("shift") is None else cache["shift"]
        padded = torch.cat([history, x], dim=1)                              # (B, T+2, C)
        w = self.l_conv.weight.view(C, 3)
        shifted = padded[:, :T] * w[:, 0] + padded[:, 1:T + 1] * w[:, 1] + padded[:, 2:] * w[:, 2]
        q, k, v = self.c_attn(shifted).split([C, self.nkv * self.hd, self.nkv * self.hd], dim=-1)
        q, k = q.view(B, T, self.nh, self.hd), k.view(B, T, self.nkv, self.hd)
        v = v.view(B, T, self.nkv, self.hd).transpose(1, 2)
        q = F.layer_norm(self.rotary_emb(q, past), (self.hd,), eps=1e-5).transpose(1, 2)   # RoPE, then QK-norm
        k = F.layer_norm(self.rotary_emb(k, past), (self.hd,), eps=1e-5).transpose(1, 2)
        if cache is not None:
            cache["k"] = k if past == 0 else torch.cat([cache["k"], k], dim=2)
            cache["v"] = v if past == 0 else torch.cat([cache["v"], v], dim=2)
            cache["shift"] = padded[:, -2:]
            k, v = cache["k"], cache["v"]
        repeat = self.nh // self.nkv
        k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
        mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)          # scale 1/sqrt(hd)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class SwiGLU(nn.Module):
    def __init__(self, C: int, ffn: int):
        super().__init__()
        self.w_v = nn.Linear(C, 2 * ffn, bias=False)

    def forward(self, x):
        gate, value = self.w_v(x).chunk(2, dim=-1)
        return F.silu(gate) * value


class Expert(nn.Module):
    def __init__(self, C: int, ffn: int):
        super().__init__()
        self.swiglu = SwiGLU(C, ffn)
        self.c_proj = nn.Linear(ffn, C, bias=False)

    def forward(self, x):
        return self.c_proj(self.swiglu(x))


class MoE(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.k = cfg["n_active_experts"]
        self.router = nn.Linear(cfg["n_embd"], cfg["n_experts"], bias=False)
        self.experts = nn.ModuleList([Expert(cfg["n_embd"], cfg["ffn_dim"]) for _ in range(cfg["n_experts"])])

    def forward(self, x):  # (B, T, C)
        flat = x.reshape(-1, x.shape[-1])
        probs = F.softmax(self.router(flat).float(), dim=-1)
        top_w, top_e = probs.topk(self.k, dim=-1)
        top_w = top_w / top_w.sum(dim=-1, keepdim=True)
        y = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            token, slot = torch.nonzero(top_e == e, as_tuple=True)
            y.index_add_(0, token, expert(flat[token]) * top_w[token, slot, None])
        return y.view_as(x)


class Block(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.ln1, self.ln2 = RMSNorm(cfg["n_embd"]), RMSNorm(cfg["n_embd"])
        self.attn, self.moe = Attention(cfg), MoE(cfg)

    def forward(self, x, cache=None):
        x = x + self.attn(self.ln1(x), cache)
        return x + self.moe(self.ln2(x))


class LLM(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.cfg = cfg
        self.transformer = nn.ModuleDict(dict(wte=nn.Embedding(cfg["vocab_size"], cfg["n_embd"]),
                                              h=nn.ModuleList([Block(cfg) for _ in range(cfg["n_layer"])]),
                                              ln_f=RMSNorm(cfg["n_embd"])))
        self.lm_head = nn.Linear(cfg["n_embd"], cfg["vocab_size"], bias=False)
        self.transformer.wte.weight = self.lm_head.weight

    def new_cache(self) -> list:
        return [{} for _ in self.transformer.h]

    def forward(self, idx, cache=None):  # (B, T) -> (B, T, V)
        x = self.transformer.wte(idx)
        for i, block in enumerate(self.transformer.h):
            x = block(x, None if cache is None else cache[i])
        return self.lm_head(self.transformer.ln_f(x))

    @torch.no_grad()
    def generate(self, ids: list[int], max_new_tokens: int) -> list[int]:
        ids, cache = list(ids), self.new_cache()
        feed = torch.tensor([ids])
        for _ in range(max_new_tokens):
            nxt = int(self(feed, cache)[0, -1].argmax())
            ids.append(nxt)
            feed = torch.tensor([[nxt]])
        return ids


def build(config: dict) -> nn.Module:
    return LLM(config)
