"""The build track's Muon (spec: docs/build/muon.md), checked against torch.optim.Muon and torch.optim.AdamW.

1. Muon alone, step by step, against torch.optim.Muon on the same gradients: every step starts from the
   student's own parameters (rounding never accumulates), the momentum buffer is compared first;
2. build_optimizers on a module holding linnet's published parameter names: which parameter goes where, the
   hyper-parameters, then four steps of both optimizers against torch's Muon + AdamW, parameter by parameter.
"""
from __future__ import annotations

import math

import torch

from exercises.checker.build_layout import layout, skeleton
from exercises.checker.report import Wrong, call, compare_tensors, fresh_seed, run_seed
from exercises.checker.sandbox import make

TINY = dict(n_layer=2, n_head=2, n_kv_head=1, n_embd=32, head_dim=16, ffn_dim=48, n_experts=3, n_active_experts=2,
            vocab_size=64, block_size=16, rope_base=50000.0)


def drive_muon(muon_class, params0, grads, hyper):
    """In the student's process: their Muon on fresh parameters, one step per entry of `grads`; returns each
    step's parameters and momentum buffers (None where the state has no "momentum_buffer")."""
    params = [torch.nn.Parameter(p.clone()) for p in params0]
    opt = muon_class(params, **hyper)
    steps = []
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        opt.step()
        bufs = [opt.state[p].get("momentum_buffer") if p in opt.state else None for p in params]
        steps.append(([p.detach().clone() for p in params], [None if b is None else b.clone() for b in bufs]))
    return steps


def drive_split(build_optimizers, cfg, seed, n_steps, kwargs):
    """In the student's process: their build_optimizers on the named skeleton; returns what went where and the
    parameters after each of n_steps steps (gradients drawn from `seed`)."""
    model = skeleton(cfg, seed)
    names = {id(p): n for n, p in model.named_parameters()}
    opts = build_optimizers(model, **kwargs)
    table = [(type(o).__name__, isinstance(o, torch.optim.Optimizer),
              [({k: v for k, v in g.items() if isinstance(v, (int, float, tuple, str, bool)) or v is None},
                [names.get(id(p), "?") for p in g["params"]]) for g in o.param_groups]) for o in opts]
    after = []
    for step in range(n_steps):
        set_grads(model, seed + 1 + step)
        for o in opts:
            o.step()
        for o in opts:
            o.zero_grad(set_to_none=True)
        after.append({n: p.detach().clone() for n, p in model.named_parameters()})
    return table, after


def set_grads(model, seed):
    gen = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=gen)


def adjusted(lr, shape, fn):
    A, B = shape
    return lr * (0.2 * math.sqrt(max(A, B)) if fn == "match_rms_adamw" else math.sqrt(max(1, A / B)))


def check_muon(ex) -> None:
    gen = torch.Generator().manual_seed(fresh_seed("build:muon"))
    cases = [([(32, 32), (48, 16), (16, 40)], dict(lr=0.02), "torch's defaults, square, tall and wide"),
             ([(64, 16), (24, 24)], dict(lr=0.02, weight_decay=0.5), "weight decay 0.5 on a tall matrix"),
             ([(20, 30)], dict(lr=0.01, nesterov=False, momentum=0.9), "plain momentum 0.9 (nesterov=False)"),
             ([(40, 24), (8, 64)], dict(lr=0.01, adjust_lr_fn="match_rms_adamw", ns_steps=3),
              "adjust_lr_fn 'match_rms_adamw', 3 Newton-Schulz steps"),
             ([(36, 20)], dict(lr=0.03, weight_decay=0.2), f"fresh seed {run_seed()}")]
    for shapes, hyper, why in cases:
        params0 = [torch.randn(s, generator=gen) for s in shapes]
        grads = [[torch.randn(s, generator=gen) * (1 + 3 * k) for s in shapes] for k in range(4)]
        case = f"Muon(params of shapes {shapes}, {hyper}) for {len(grads)} steps — {why}"
        got = call(lambda: make(ex, drive_muon, ex.Muon, params0, grads, hyper), case)
        compare_muon(got, params0, grads, hyper, case)
    check_split(ex)


def compare_muon(got, params0, grads, hyper, case):
    ref = [torch.nn.Parameter(p.clone()) for p in params0]
    opt = torch.optim.Muon(ref, **hyper)
    before = params0
    for step, (step_grads, (params, bufs)) in enumerate(zip(grads, got)):
        with torch.no_grad():
            for r, b in zip(ref, before):
                r.copy_(b)                       # every step starts from YOUR parameters
        for r, g in zip(ref, step_grads):
            r.grad = g.clone()
        opt.step()
        for k, (r, p, buf) in enumerate(zip(ref, params, bufs)):
            where = f"{case}: step {step}, parameter {k} of shape {tuple(r.shape)}"
            if buf is None:
                raise Wrong(where, "optimizer.state[p] has no 'momentum_buffer'", "the spec names the state's key")
            compare_tensors(buf, opt.state[r]["momentum_buffer"], where, "momentum_buffer", atol=1e-6, rtol=1e-5,
                            hint="the buffer averages the RAW gradients, before any orthogonalisation: "
                                 "buf ← μ·buf + (1−μ)·g (lerp), starting from zeros")
            lr_eff = adjusted(hyper["lr"], r.shape, hyper.get("adjust_lr_fn"))
            decayed = r.detach() - before[k] * (lr_eff - hyper["lr"]) * hyper.get("weight_decay", 0.1)
            slip = (lr_eff != hyper["lr"] and hyper.get("weight_decay", 0.1) > 0 and
                    torch.allclose(p.double(), decayed.double(), atol=0.03 * lr_eff, rtol=0))
            compare_tensors(p, r.detach(), where, "parameter after the step", atol=0.03 * lr_eff, rtol=0,
                            hint="yours decayed with the shape-adjusted lr: the decay p·(1 − lr·wd) uses the RAW lr, "
                                 "only the step p − lr·ratio·O the adjusted one" if slip else
                                 "the buffer matched, the step did not: the direction is (1−μ)·g + μ·buf with "
                                 "Nesterov (else buf), Newton-Schulz in bf16 on the wide orientation after dividing "
                                 "by the Frobenius norm; decay p·(1 − lr·wd) with the RAW lr, then p − lr·ratio·O")
        before = params


def check_split(ex) -> None:
    seed = fresh_seed("build:muon-split") % 10_000
    names = [k for k, _ in layout(TINY) if not k.endswith("inv_freq") and k != "lm_head.weight"]
    shapes = dict(layout(TINY))
    want_muon = [n for n in names if len(shapes[n]) == 2 and "wte" not in n]
    for kwargs in ({}, dict(lr=3e-3, weight_decay=0.05, muon_lr_multiplier=5.0)):
        lr, wd = kwargs.get("lr", 1e-3), kwargs.get("weight_decay", 0.1)
        case = (f"build_optimizers(<a module with linnet's parameter names, depth 2, 3 experts>"
                f"{', ' + ', '.join(f'{k}={v}' for k, v in kwargs.items()) if kwargs else ''})")
        table, after = call(lambda: make(ex, drive_split, ex.build_optimizers, TINY, seed, 4, kwargs), case)
        check_table(table, want_muon, [n for n in names if n not in want_muon], lr, wd,
                    lr * kwargs.get("muon_lr_multiplier", 10.0), case)
        model = skeleton(TINY, seed)
        params = dict(model.named_parameters())
        ref = [torch.optim.Muon([params[n] for n in want_muon], lr=lr * kwargs.get("muon_lr_multiplier", 10.0),
                                weight_decay=wd),
               torch.optim.AdamW([params[n] for n in names if n not in want_muon], lr=lr, betas=(0.9, 0.999),
                                 weight_decay=wd)]
        for step, got in enumerate(after):
            set_grads(model, seed + 1 + step)
            for o in ref:
                o.step()
            for o in ref:
                o.zero_grad(set_to_none=True)
            for n in names:
                muon = n in want_muon
                compare_tensors(got[n], params[n].detach(), f"{case}, step {step}", f"{n} ({'Muon' if muon else 'AdamW'})",
                                atol=0.05 * lr * 10 if muon else 1e-6, rtol=0 if muon else 1e-5,
                                hint="the split and the settings matched: the optimizers' steps did not (part 1 "
                                     "checks Muon alone); both optimizers step, every step")


def check_table(table, want_muon, want_adamw, lr, wd, muon_lr, case):
    if not (isinstance(table, list) and len(table) == 2):
        raise Wrong(case, f"build_optimizers should return [Muon, AdamW], got {len(table) if isinstance(table, list) else table!r} "
                    "optimizers")
    (muon_name, muon_ok, muon_groups), (adamw_name, adamw_ok, adamw_groups) = table
    if not (muon_ok and adamw_ok) or adamw_name != "AdamW":
        raise Wrong(case, f"got [{muon_name}, {adamw_name}]: expected [your Muon, torch.optim.AdamW], both "
                    "torch.optim.Optimizer subclasses")
    for label, groups, want, other in (("Muon", muon_groups, want_muon, "AdamW"), ("AdamW", adamw_groups, want_adamw, "Muon")):
        got = [n for _, names in groups for n in names]
        missing, extra = [n for n in want if n not in got], [n for n in got if n not in want]
        if missing or extra:
            n = (missing or extra)[0]
            raise Wrong(case, f"{n} is {'missing from' if missing else 'in'} {label} ({len(missing)} missing, "
                        f"{len(extra)} that belong to {other})",
                        "Muon gets every 2-D weight except the tied embedding / lm_head (the router included); "
                        "AdamW the rest: the embedding, norm weights, the conv filters; each parameter once")
        for settings, _ in groups:
            expect = dict(lr=muon_lr if label == "Muon" else lr, weight_decay=wd)
            if label == "AdamW":
                expect["betas"] = (0.9, 0.999)
            for key, value in expect.items():
                if not (key in settings and (settings[key] == value if key == "betas" else
                                             math.isclose(settings[key], value, rel_tol=1e-9))):
                    raise Wrong(case, f"{label}'s param group has {key} = {settings.get(key, 'nothing')}, expected {value}",
                                f"Muon's lr is lr·muon_lr_multiplier, AdamW's lr; both weight_decay; AdamW betas (0.9, 0.999)")
