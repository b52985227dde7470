"""Recompute every answer of the problem set's key (exercises/solutions/problems_key.md) from the lessons.

    python -m exercises.solutions.problems_key        # prints "ID: value" for every answer, from the repo's code

Each answer comes from the numbered lessons' own functions and constants (`02_model.count_parameters`,
`flops_per_token`, `kv_cache_bytes`, `RotaryEmbedding`, `route`, `balance_loss`; `03_muon.ns_polynomial`,
`newton_schulz` (its FLOPs counted by torch's FlopCounterMode on the meta device), `adjust_lr`,
`build_optimizers`; `04_data.ShardLoader`; `05_train.lr_multiplier`, `grad_accum_steps`,
`dense_equal_active`, `PRESETS`; `06_eval.binomial_sd`, `choose_endings`), or, where the repo states a
measured number (BENCHMARKS.md's step speeds, 06's bits-per-byte example), from that number with the
formula the problem asks for. tests/test_problems.py checks that the key states each of these values.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import torch

import house.runs

tokenizer_lib = importlib.import_module("01_tokenizer")
model_lib = importlib.import_module("02_model")
muon_lib = importlib.import_module("03_muon")
data_lib = importlib.import_module("04_data")
train_lib = importlib.import_module("05_train")
eval_lib = importlib.import_module("06_eval")

# Measured numbers the problems start from (where the repo states them).
H200_STEP_TOKENS_PER_S = 344_875        # BENCHMARKS.md, headline: the linnet step on one H200
ORIGINAL_TOKENS_PER_S = 92_000          # docs/PERFORMANCE.md: the original code's full step on the same H200
LINNET_STEPS = 5_281                    # where linnet stopped (05_train.py)
TINY_VAL_SHARD_TOKENS = 201_154         # the tiny preset's validation shard on the embedded corpus (04's manifest)
TINY_TRAIN_TOKENS = 3_511_317 - 201_154 # the rest of the tiny shards (04's manifest: 3,511,317 tokens in all)
BPB_EXAMPLE = dict(nats_per_token=4.422, tokens=200_704, bytes=468_088)   # 06_eval.bits_per_byte's worked example

BPE_TEXT = "low lower lowest slow"
ROUTER_LOGITS = [0.5, -1.0, 2.0, 0.0, 1.5, -0.5, 0.3, -2.0]
BALANCE_PROBS = [[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1], [0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7]]
HELLASWAG_ENDINGS = ["ran.", "ran to the river and jumped in.", "sat down to read a long book.", "cried."]
HELLASWAG_TOKEN_LOGPROBS = [[-4.0, -1.5], [-2.0, -1.0, -0.5, -0.8, -0.6, -0.5, -0.5, -0.5],
                            [-2.5] + [-0.5] * 9, [-5.0, -1.5]]


def linnet() -> "model_lib.LLMConfig":
    return model_lib.LLMConfig(depth=12)


def tiny_model_config(cfg) -> "model_lib.LLMConfig":
    """The model 05 builds from a TrainConfig at the tiny tokenizer's vocabulary (1,024)."""
    return dataclasses.replace(cfg.model, vocab_size=tokenizer_lib.TINY_VOCAB_SIZE)


def session1() -> dict:
    merges, vocab = tokenizer_lib.train_bpe_scratch([BPE_TEXT], vocab_size=tokenizer_lib.MIN_VOCAB_SIZE + 6)
    ids = tokenizer_lib.encode_scratch(BPE_TEXT, merges, vocab)
    return {
        "1.1a": ", ".join(f"{a}+{b}" for a, b in merges),
        "1.1b": len(merges),
        "1.1c": vocab["Ġlow"],
        "1.1d": len(ids),
        "1.1e": len(BPE_TEXT.encode("utf-8")),
        "1.2a": tokenizer_lib.LINNET_VOCAB_SIZE - tokenizer_lib.MIN_VOCAB_SIZE,
        "1.2b": tokenizer_lib.MAX_VOCAB_SIZE - 1,
        "1.2c": LINNET_STEPS * train_lib.PRESETS["linnet"].total_batch_tokens * 2 / 1e9,
        "1.3a": len(tokenizer_lib.encode_scratch("é", [], vocab)),
        "1.3b": len(tokenizer_lib.encode_scratch("🙂", [], vocab)),
    }


def session2() -> dict:
    c = linnet()
    attention = model_lib.count_parameters(c)["attention"]
    kv_mha = model_lib.kv_cache_bytes(model_lib.LLMConfig(depth=12, n_kv_head=12), 1024)
    inv_freq = model_lib.RotaryEmbedding(c.head_dim, c.rope_base, max_len=1).inv_freq.double()
    inv_freq_10k = model_lib.RotaryEmbedding(c.head_dim, 10_000.0, max_len=1).inv_freq.double()
    attn_flops = model_lib.flops_per_token(c, 1024) - 6 * model_lib.count_parameters(c)["active"]
    return {
        "2.1a": attention // c.n_layer,
        "2.1b": attention,
        "2.1c": c.n_embd + 2 * c.n_kv_head * c.head_dim,
        "2.2a": model_lib.kv_cache_bytes(c, 1024),
        "2.2b": kv_mha,
        "2.2c": model_lib.kv_cache_bytes(c, 1) // c.n_layer,
        "2.2d": model_lib.kv_cache_bytes(c, 1024, batch=64),
        "2.3a": 2 * math.pi / float(inv_freq[0]),
        "2.3b": 2 * math.pi / float(inv_freq[-1]),
        "2.3c": 2 * math.pi / float(inv_freq_10k[-1]),
        "2.4a": attn_flops,
        "2.4b": 100 * attn_flops / model_lib.flops_per_token(c, 1024),
        "2.4c": 6 * model_lib.count_parameters(c)["active"] / (12 * c.n_layer * c.n_embd),
    }


def session3() -> dict:
    c = linnet()
    p = model_lib.count_parameters(c)
    per_expert = p["experts"] // (c.n_layer * c.n_experts)
    mvd = model_lib.moe_vs_dense(c, 1024)
    probs, top_w, top_e = model_lib.route(torch.tensor([ROUTER_LOGITS]), k=c.n_active_experts)
    balance = lambda rows: float(model_lib.balance_loss(torch.tensor(rows, dtype=torch.float64)))
    tiny = train_lib.PRESETS["tiny"]
    tiny_p = model_lib.count_parameters(tiny_model_config(tiny))
    dense_p = model_lib.count_parameters(tiny_model_config(train_lib.dense_equal_active(tiny)))
    return {
        "3.1a": per_expert,
        "3.1b": p["experts"],
        "3.1c": p["total"] - p["active"],
        "3.1d": p["active"],
        "3.1e": p["total"],
        "3.1f": p["embedding"],
        "3.1g": p["router"],
        "3.1h": p["norms+conv"],
        "3.2a": mvd["flops_moe"],
        "3.2b": mvd["flops_dense"],
        "3.2c": mvd["flops_dense"] / mvd["flops_moe"],
        "3.3a": ", ".join(str(e) for e in top_e[0].tolist()),
        "3.3b": float(probs[0, top_e[0, 0]]),
        "3.3c": float(top_w[0, 0]),
        "3.3d": float(top_w[0, 1]),
        "3.4a": balance([[1 / 8] * 8] * 3),
        "3.4b": balance([[1.0] + [0.0] * 7] * 3),
        "3.4c": balance(BALANCE_PROBS),
        "3.4d": balance(np.eye(4).tolist()),
        "3.4e": c.balance_coef * balance([[1.0] + [0.0] * 7] * 3),
        "3.5a": tiny_p["total"],
        "3.5b": tiny_p["active"],
        "3.5c": dense_p["active"],
    }


def newton_schulz_flops(shape) -> int:
    """FLOPs of 03's newton_schulz on one tensor of `shape` (a batch of matrices counts every slice)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        muon_lib.newton_schulz(torch.empty(*shape, device="meta"))
    return counter.get_total_flops()


def optimizer_elements() -> dict:
    """Elements per optimizer in linnet's split (03's build_optimizers on a depth-12 model on the meta device)."""
    with torch.device("meta"):
        model = model_lib.LLM(linnet())
    _, table = muon_lib.build_optimizers(model)
    shapes = {"Muon": [], "AdamW": []}
    for _name, shape, opt_name, _lr in table:
        shapes[opt_name].append(shape)
    return shapes


def session4() -> dict:
    shapes = optimizer_elements()
    muon, adamw = (sum(math.prod(s) for s in shapes[k]) for k in ("Muon", "AdamW"))
    total = muon + adamw
    ns_step = sum(newton_schulz_flops(s) for s in shapes["Muon"])
    step_flops = train_lib.PRESETS["linnet"].total_batch_tokens * model_lib.flops_per_token(linnet(), 1024)
    poly = lambda x, k: float(muon_lib.ns_polynomial(torch.tensor(x, dtype=torch.float64), k))
    a = muon_lib.NS_COEFFICIENTS[0]
    return {
        "4.1a": poly(1.0, 1),
        "4.1b": a,
        "4.1c": poly(0.01, 1),
        "4.1d": poly(0.001, 5),
        "4.1e": poly(poly(1.0, 1), 1),
        "4.2a": newton_schulz_flops((4096, 768)),
        "4.2b": ns_step / 1e12,
        "4.2c": 100 * ns_step / step_flops,
        "4.3a": muon_lib.adjust_lr(1e-2, (4096, 768)),
        "4.3b": muon_lib.adjust_lr(1e-2, (1280, 768)),
        "4.3c": muon_lib.adjust_lr(1e-2, (768, 2048)),
        "4.4a": muon,
        "4.4b": adamw,
        "4.4c": 4 * (muon + 2 * adamw) / 1e9,
        "4.4d": 4 * 2 * total / 1e9,
        "4.4e": (4 * total + 4 * total + 4 * (muon + 2 * adamw)) / 1e9,
    }


def val_windows(n_tokens: int, B: int, T: int) -> dict:
    """04's ShardLoader on a one-shard validation folder of `n_tokens` tokens (written to a temp folder)."""
    with tempfile.TemporaryDirectory() as tmp:
        shard = Path(tmp) / "shard_00000.npy"
        np.save(shard, np.zeros(n_tokens, dtype=np.uint16))
        record = {"file": shard.name, "split": "val", "tokens": n_tokens,
                  "sha256": hashlib.sha256(shard.read_bytes()).hexdigest()}
        (Path(tmp) / "manifest.json").write_text(json.dumps({"shards": [record]}))
        loader = data_lib.ShardLoader(tmp, "val", B, T)
        scored = sum(y.numel() for _x, y in loader.iter_once(None))
        return {"windows": loader.windows_per_shard[0], "batches": len(loader), "scored": scored}


def session5() -> dict:
    linnet_cfg, tiny = train_lib.PRESETS["linnet"], train_lib.PRESETS["tiny"]
    val = val_windows(TINY_VAL_SHARD_TOKENS, tiny.micro_batch, tiny.model.block_size)
    budget = tiny.planned_steps * tiny.total_batch_tokens
    return {
        "5.1a": LINNET_STEPS * linnet_cfg.total_batch_tokens,
        "5.1b": train_lib.grad_accum_steps(linnet_cfg, 1),
        "5.1c": train_lib.grad_accum_steps(linnet_cfg, 8),
        "5.2a": val["windows"],
        "5.2b": val["batches"],
        "5.2c": val["scored"],
        "5.3a": budget,
        "5.3b": 100 * budget / TINY_TRAIN_TOKENS,
    }


def session6() -> dict:
    linnet_cfg, tiny = train_lib.PRESETS["linnet"], train_lib.PRESETS["tiny"]
    lr = train_lib.lr_multiplier
    c = linnet()
    full_mfu = house.runs.H100_BF16_PEAK_FLOPS / model_lib.flops_per_token(c, 1024)
    mfu = lambda tokens_per_s: 100 * tokens_per_s / full_mfu
    return {
        "6.1a": max(1, int(linnet_cfg.warmup_frac * linnet_cfg.planned_steps)),
        "6.1b": int(linnet_cfg.decay_start_frac * linnet_cfg.planned_steps),
        "6.1c": lr(0, linnet_cfg),
        "6.1d": lr(LINNET_STEPS - 1, linnet_cfg),
        "6.1e": linnet_cfg.lr * linnet_cfg.muon_lr_multiplier * lr(linnet_cfg.planned_steps - 1, linnet_cfg),
        "6.2a": lr(0, tiny),
        "6.2b": lr(270, tiny),
        "6.2c": lr(tiny.planned_steps - 1, tiny),
        "6.3a": full_mfu,
        "6.3b": mfu(H200_STEP_TOKENS_PER_S),
        "6.3c": mfu(ORIGINAL_TOKENS_PER_S),
        "6.3d": LINNET_STEPS * linnet_cfg.total_batch_tokens / H200_STEP_TOKENS_PER_S / 3600,
        "6.4a": min(1.0, linnet_cfg.grad_clip / 2.5),
        "6.4b": model_lib.flops_per_token(tiny_model_config(tiny), tiny.model.block_size) * tiny.planned_steps
                * tiny.total_batch_tokens / 1e9,
    }


def session7() -> dict:
    sd = lambda n: 100 * eval_lib.binomial_sd(n)
    choice = eval_lib.choose_endings([np.array(lp) for lp in HELLASWAG_TOKEN_LOGPROBS], HELLASWAG_ENDINGS)
    e = BPB_EXAMPLE
    scores = lambda values, decimals: ", ".join(f"{v:.{decimals}f}".replace("-", "−") for v in values)
    return {
        "7.1a": sd(200),
        "7.1b": sd(10_042),
        "7.1c": math.ceil(0.25 * 0.75 / 0.005 ** 2),
        "7.1d": 2 * sd(100),
        "7.2a": e["nats_per_token"] * e["tokens"] / (math.log(2) * e["bytes"]),
        "7.2b": e["bytes"] / e["tokens"],
        "7.2c": e["nats_per_token"] / math.log(2),
        "7.3a": f"{scores(choice['logprob_sum'], 1)} → {choice['pred']}",
        "7.3b": f"{scores(choice['logprob_per_char'], 3)} → {choice['pred_norm']}",
        "7.3c": f"{scores(choice['logprob_mean'], 2)} → {choice['pred_mean']}",
    }


def answers() -> dict:
    """Every answer of the key, by id ("3.1d"): a number, or a short string where the answer is a list."""
    out = {}
    for session in (session1, session2, session3, session4, session5, session6, session7):
        out.update(session())
    return out


if __name__ == "__main__":
    for key, value in answers().items():
        print(f"{key}: {value:,}" if isinstance(value, int) else f"{key}: {value}")
