"""The build track's expectations computed from the lessons (02, 05, 06) on cases drawn from a seed: the
repo's checks call these now (fresh cases every run); exercises/handout.py calls them once and stores the result
(build_cases.py). Never part of a handout: it imports the lessons.
"""
from __future__ import annotations

import dataclasses
import importlib

import torch

MODEL_HOOKS = ("ln1", "attn", "ln2", "moe")


def first_tensor(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def model_case(seed: int) -> dict:
    """A linnet of random widths drawn from `seed`, with random weights in the published layout, and what 02's LLM
    computes with them: logits and every block's intermediate outputs, a KV-cache walk, a greedy generation."""
    M = importlib.import_module("02_model")
    for attempt in range(20):
        gen = torch.Generator().manual_seed(seed * 31 + attempt)
        pick = lambda options: options[int(torch.randint(len(options), (1,), generator=gen))]  # noqa: E731
        n_kv = pick([1, 2])
        cfg = dict(n_layer=pick([2, 3]), n_head=n_kv * pick([2, 3]), n_kv_head=n_kv, head_dim=pick([8, 16]),
                   ffn_dim=pick([32, 48]), n_experts=pick([3, 4]), n_active_experts=2, vocab_size=pick([64, 128]),
                   block_size=32, rope_base=pick([50000.0, 10000.0]))
        cfg["n_embd"] = cfg["n_head"] * cfg["head_dim"]
        model = M.LLM(M.LLMConfig(depth=cfg["n_layer"], **{k: v for k, v in cfg.items()},
                                  moe_impl="reference", rope_impl="reference")).eval()
        with torch.no_grad():
            for name, p in model.named_parameters():      # weights of every scale, norms and filters not at init
                fan_in = p.shape[-1] if p.ndim > 1 else 1
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in ** 0.5 if p.ndim > 1 else
                        1 + 0.2 * torch.randn(p.shape, generator=gen))
                if "router" in name:
                    p.mul_(4.0)                            # well-separated router choices (no near-ties)
        T = int(torch.randint(cfg["block_size"] // 2, cfg["block_size"] + 1, (1,), generator=gen))
        idx = torch.randint(0, cfg["vocab_size"], (2, T), generator=gen)
        logits, hooks, margin = run_with_hooks(M, model, idx)
        if margin > 1e-3:
            break
    seq = torch.randint(0, cfg["vocab_size"], (1, cfg["block_size"]), generator=gen)
    prompt = int(torch.randint(3, 12, (1,), generator=gen))
    with torch.no_grad():
        full = model(seq)[0][0]                                        # (T, V)
        generated = model.generate(seq[0, :5].tolist(), max_new_tokens=20, temperature=0, use_cache=True)
    return dict(config=cfg, state_dict=M.export_linnet_state_dict(model), idx=idx, logits=logits, hooks=hooks,
                cache_seq=seq, cache_prompt=prompt, cache_logits=full, gen_prompt=seq[0, :5].tolist(),
                gen_new=20, gen_expected=list(generated))


def run_with_hooks(M, model, idx):
    """(logits, {"transformer.h.{i}.{part}": output}, the smallest gap between a chosen and a refused expert)."""
    outputs, gaps, handles = {}, [], []
    for i, block in enumerate(model.transformer.h):
        handles.append(block.register_forward_hook(
            lambda m, a, out, i=i: outputs.__setitem__(f"transformer.h.{i}", first_tensor(out).detach().clone())))
        for part in MODEL_HOOKS:
            handles.append(getattr(block, part).register_forward_hook(
                lambda m, a, out, key=f"transformer.h.{i}.{part}": outputs.__setitem__(key, first_tensor(out).detach().clone())))
        handles.append(block.moe.router.register_forward_hook(
            lambda m, a, out, k=model.config.n_active_experts: gaps.append(
                (lambda p: (p[:, k - 1] - p[:, k]).min().item())(out.float().softmax(-1).sort(-1, descending=True).values))))
    with torch.no_grad():
        logits = model(idx)[0]
    for h in handles:
        h.remove()
    return logits, outputs, min(gaps)


WSD_CASES = [(20, 0.10, 0.80, 0.06, "20 steps: warm-up over steps 0-1, stable to 15, cosine over 16-19"),
             (100, 0.05, 0.50, 0.0, "short warm-up, decay from half-way down to 0"),
             (5, 0.10, 0.80, 0.06, "5 steps: 10 % of 5 rounds down to 0, so warm-up lasts 1 step"),
             (1, 0.10, 0.80, 0.06, "a single step"),
             (18_965, 0.10, 0.80, 0.06, "linnet: 18,965 planned steps, min_lr/lr = 6e-5/1e-3")]
LOOP = dict(planned_steps=16, warmup_frac=0.2, decay_start_frac=0.5, min_ratio=0.1)


def train_case(seed: int) -> dict:
    """05's lr_multiplier on the schedule cases (one drawn from `seed`) and on the loop's schedule."""
    T = importlib.import_module("05_train")
    gen = torch.Generator().manual_seed(seed)
    u = lambda lo, hi: round(lo + (hi - lo) * float(torch.rand((), generator=gen)), 3)  # noqa: E731
    cases = WSD_CASES + [(int(torch.randint(10, 400, (), generator=gen)), u(0.01, 0.3), u(0.4, 0.9), u(0, 0.2),
                          f"drawn from seed {seed}")]

    def multipliers(planned, warmup, decay, min_ratio, steps):
        cfg = dataclasses.replace(T.PRESETS["linnet"], planned_steps=planned, warmup_frac=warmup,
                                  decay_start_frac=decay, lr=1.0, min_lr=min_ratio)
        return [T.lr_multiplier(s, cfg) for s in range(steps)]

    return dict(wsd_cases=[list(c) for c in cases], wsd_values=[multipliers(*c[:4], c[0] + 3) for c in cases],
                loop_multipliers=multipliers(LOOP["planned_steps"], LOOP["warmup_frac"], LOOP["decay_start_frac"],
                                             LOOP["min_ratio"], LOOP["planned_steps"]))


EDGE_ROWS = [   # lm-eval's rules at work: " [title]", [...] spans, double spaces, capitalize(), a trailing space
    dict(activity_label="Making tea", ctx_a="How to make tea [title] Boil  the water. [step] Pour it", ctx_b="OVER the leaves ",
         endings=["[substeps] and wait three minutes.", "and  drink it cold.", "then sing.", "[title] Serve hot."], label=0),
    dict(activity_label="Running", ctx_a="A man runs.", ctx_b="", endings=["He stops.", "he  flies", "x", "He runs  on."],
         label=3),
]


def hellaswag_case(seed: int) -> dict:
    """Rows (a few drawn from the embedded validation file, two made to exercise the rules), a tokenizer, and what
    06's evaluate_hellaswag (lm-eval mode, the plain scorer) gives on them with the checker's small scoring LM."""
    import house
    from exercises.checker import checks_build_hellaswag as H
    E = importlib.import_module("06_eval")
    gen = torch.Generator().manual_seed(seed)
    pool = house.sources.read_hellaswag_rows(house.sources.find_hellaswag_file(None), 400)
    picked = [pool[int(i)] for i in torch.randperm(len(pool), generator=gen)[:10]]
    rows = [{k: r[k] for k in ("activity_label", "ctx_a", "ctx_b", "endings", "label")} for r in picked] + EDGE_ROWS
    tokenizer_json = H.scoring_tokenizer(rows)
    tokenizer, model = H.tokenizer_from(tokenizer_json), H.ScoringLM(H.tokenizer_from(tokenizer_json).get_vocab_size(), seed)
    examples = [E.prepare_example({**r, "ind": i, "ctx": r["ctx_a"] + " " + r["ctx_b"], "source_id": "x~y",
                                   "split_type": "zeroshot"}) for i, r in enumerate(rows)]
    result = E.evaluate_hellaswag(model, tokenizer, examples, mode="lm-eval", nanogpt=False, reference=True)
    return dict(rows=rows, tokenizer=tokenizer_json, model_seed=seed, acc=result["acc"], acc_norm=result["acc_norm"],
                sums=[r["logprob_sum"] for r in result["records"]], per_char=[r["logprob_per_char"] for r in result["records"]],
                pred=[r["pred"] for r in result["records"]], pred_norm=[r["pred_norm"] for r in result["records"]])


MAKERS = {"model": model_case, "train": train_case, "hellaswag": hellaswag_case}
