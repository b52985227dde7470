"""The build track's model (spec: docs/build/model.md), checked against 02's LLM and linnet's published layout.

1. built on the meta device at linnet's own widths: every key and shape of docs/checkpoint_keys.json, and the
   parameter count of the model card (497,145,600, the tied embedding once);
2. built at widths this run draws, loaded with random weights in the published layout: its logits equal 02's to
   1e-5; where they do not, the first part that differs is named (block i's ln1, attention, ln2, MoE, output);
3. the KV cache: a prompt, then one token at a time, each step's logits equal 02's full forward at that position;
4. greedy generation equal to 02's `generate(temperature=0)`.
02's numbers come from build_cases.py (computed now, or a handout's stored cases).
"""
from __future__ import annotations

import json

import torch

from exercises.checker import REPO_DIR, build_cases
from exercises.checker.build_layout import LINNET_WIDTHS, layout
from exercises.checker.report import Wrong, call, compare_tensors, fresh_seed, run_seed
from exercises.checker.sandbox import make

PARTS = ("ln1", "attn", "ln2", "moe")
HINTS = {
    "ln1": "RMSNorm: x · rsqrt(mean(x²) + 1e-6) · weight, over the last dim",
    "attn": "the attention branch, given ln1's output: token shift (causal depthwise conv, 2 zeros of left padding), "
            "c_attn → q | k | v, RoPE (rotate half, base from the config) THEN QK-norm (LayerNorm without weights, "
            "eps 1e-5), k/v heads repeated for consecutive query heads, causal softmax(q·kᵀ/√hd)·v, c_proj. A weight "
            "used transposed? nn.Linear computes x @ W.T",
    "ln2": "ln2 reads x + attention, the first residual",
    "moe": "the MoE branch, given ln2's output: router softmax over the experts (in fp32), top-2, the two weights "
           "renormalised to sum to 1; each expert silu(gate)·value with the gate the FIRST half of w_v's output, "
           "then c_proj; the weighted sum",
    "out": "the block's output is x + attn(ln1(x)), then + moe(ln2(·))",
}


def drive_meta(build, cfg):
    with torch.device("meta"):
        model = build(dict(cfg))
    return ([(k, tuple(v.shape)) for k, v in model.state_dict().items()],
            sum(p.numel() for p in model.parameters()))


def drive_forward(build, cfg, state_dict, idx):
    """Their model built at `cfg`, its keys, then (after loading) its logits and every block part's output."""
    model = build(dict(cfg))
    keys = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    model.load_state_dict(state_dict, strict=True)
    model.eval()
    outputs, handles = {}, []
    for name, module in model.named_modules():
        parts = name.split(".")
        if name.startswith("transformer.h.") and (len(parts) == 3 or (len(parts) == 4 and parts[3] in PARTS)):
            handles.append(module.register_forward_hook(
                lambda m, a, out, key=name: outputs.setdefault(key, (out[0] if isinstance(out, (tuple, list)) else out)
                                                               .detach().clone())))
    with torch.no_grad():
        logits = model(idx)
    for h in handles:
        h.remove()
    return keys, logits, outputs


def drive_cache(build, cfg, state_dict, seq, prompt):
    model = build(dict(cfg))
    model.load_state_dict(state_dict, strict=True)
    model.eval()
    cache = model.new_cache()
    with torch.no_grad():
        steps = [model(seq[:, :prompt], cache=cache)[0]]
        for t in range(prompt, seq.shape[1]):
            steps.append(model(seq[:, t:t + 1], cache=cache)[0])
    return steps


def drive_generate(build, cfg, state_dict, prompt, n):
    model = build(dict(cfg))
    model.load_state_dict(state_dict, strict=True)
    model.eval()
    return [int(i) for i in model.generate(list(prompt), n)]


def check_model(ex) -> None:
    check_meta(ex)
    ref = build_cases.expected("model", fresh_seed("build:model") % 100_000)
    cfg = ref["config"]
    where = "a handout's stored case" if ref["stored"] else f"widths drawn from this run's seed {run_seed()}"
    shape = ", ".join(f"{k} {v}" for k, v in cfg.items())
    case = f"build({{{shape}}}) ({where}), loaded with random weights in the published layout, idx {tuple(ref['idx'].shape)}"
    keys, logits, outputs = call(lambda: make(ex, drive_forward, ex.build, cfg, ref["state_dict"], ref["idx"]), case)
    compare_keys(keys, layout(cfg), case)
    if not torch.allclose(logits.double(), ref["logits"].double(), atol=1e-5, rtol=1e-5):
        first_part_that_differs(outputs, ref["hooks"], cfg["n_layer"], case)
    compare_tensors(logits, ref["logits"], case, "logits", atol=1e-5, rtol=1e-5,
                    hint="every block matched: the final RMSNorm ln_f, then lm_head (the embedding's tensor)")
    check_cache(ex, ref, case)
    gen_case = f"{case}; generate({ref['gen_prompt']}, {ref['gen_new']}) — greedy (argmax) with the KV cache"
    got = call(lambda: make(ex, drive_generate, ex.build, cfg, ref["state_dict"], ref["gen_prompt"], ref["gen_new"]),
               gen_case)
    if got != ref["gen_expected"]:
        k = next((k for k in range(min(len(got), len(ref["gen_expected"]))) if got[k] != ref["gen_expected"][k]),
                 min(len(got), len(ref["gen_expected"])))
        raise Wrong(gen_case, f"token {k}: expected {ref['gen_expected'][k:k + 5]}…, got {got[k:k + 5]}… "
                    f"(02 gives {ref['gen_expected']})",
                    "return the prompt followed by the new tokens; each new token is the argmax of the last position's "
                    "logits; the prompt is fed once, then one token per step through the cache")


def check_meta(ex) -> None:
    published = json.loads((REPO_DIR / "docs" / "checkpoint_keys.json").read_text())
    case = "build(linnet's widths: 12 layers, 768 wide, 8 experts, vocab 32768) on the meta device"
    keys, count = call(lambda: make(ex, drive_meta, ex.build, LINNET_WIDTHS), case)
    compare_keys(keys, [(k, tuple(s)) for k, s in published["state_dict"]], case + " vs docs/checkpoint_keys.json")
    if count != published["n_parameters_unique"]:
        raise Wrong(case, f"sum of p.numel() over model.parameters(): expected {published['n_parameters_unique']:,}, "
                    f"got {count:,}", "the embedding and lm_head are ONE tensor (tie them), inv_freq is a buffer")


def compare_keys(got, expected, case) -> None:
    got, want = dict(got), dict(expected)
    missing, extra = [k for k in want if k not in got], [k for k in got if k not in want]
    if missing or extra:
        detail = (f"missing key {missing[0]}" if missing else f"unexpected key {extra[0]}")
        raise Wrong(case, f"state_dict: {detail} ({len(missing)} missing, {len(extra)} unexpected)",
                    "the module names make the keys: transformer.wte, transformer.h.{i}.{ln1, ln2, attn.l_conv, "
                    "attn.c_attn, attn.c_proj, attn.rotary_emb (its buffer inv_freq), moe.router, "
                    "moe.experts.{e}.swiglu.w_v, moe.experts.{e}.c_proj}, transformer.ln_f, lm_head")
    for k, shape in want.items():
        if tuple(got[k]) != tuple(shape):
            raise Wrong(case, f"state_dict[{k!r}] has shape {tuple(got[k])}, expected {tuple(shape)}",
                        "nn.Linear(in, out).weight is (out, in); the conv's weight is (C, 1, 3)")


def first_part_that_differs(outputs, expected, n_layer, case) -> None:
    """Raise Wrong at the first block part whose output differs from 02's (if the hooks saw it)."""
    for i in range(n_layer):
        for part in (*PARTS, "out"):
            key = f"transformer.h.{i}" + ("" if part == "out" else f".{part}")
            if key not in outputs:
                continue
            got, want = outputs[key], expected[key]
            if tuple(got.shape) != tuple(want.shape) or not torch.allclose(got.double(), want.double(), atol=1e-5,
                                                                         rtol=1e-5):
                before = "the block's input matched" if part == "ln1" else "everything before it in the block matched"
                compare_tensors(got, want, case, f"{key} ({'the block output' if part == 'out' else part}; {before})",
                                atol=1e-5, rtol=1e-5, hint=HINTS[part])


def check_cache(ex, ref, case) -> None:
    seq, prompt = ref["cache_seq"], ref["cache_prompt"]
    cache_case = (f"{case}; the KV cache: a {prompt}-token prompt, then the other {seq.shape[1] - prompt} tokens one "
                  "at a time, vs 02's forward on all of them")
    steps = call(lambda: make(ex, drive_cache, ex.build, ref["config"], ref["state_dict"], seq, prompt), cache_case)
    full = ref["cache_logits"]
    compare_tensors(steps[0], full[:prompt], cache_case, "the prompt's logits", atol=1e-5, rtol=1e-5,
                    hint="with an empty cache the forward is the plain one")
    for j, step in enumerate(steps[1:]):
        t = prompt + j
        compare_tensors(step, full[t:t + 1], cache_case,
                        f"logits of the token at position {t} (cached step {j + 1}; the steps before matched)",
                        atol=1e-5, rtol=1e-5,
                        hint="a cached token's RoPE position is the number of tokens already in the cache; it "
                             "attends to every cached key and to itself; the token shift reads the two inputs "
                             "before it, kept in the cache")
