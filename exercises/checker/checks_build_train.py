"""The build track's training step and loop (spec: docs/build/train.md).

1. lr_multiplier equals 05's at every step of six schedules (one drawn from this run's seed);
2. train_step on micro-batches equals ONE step on their concatenation (the loss, the gradient norm before
   clipping, every parameter after both optimizers stepped), with clipping on and off;
3. train runs the schedule: its losses equal a reference loop's step by step; stopped after 11 of 16 steps (as if
   killed) and resumed from its checkpoint into a model and optimizers built afresh, it gives the same losses.
The model is the checker's own small language model (not the student's), its optimizers SGD + AdamW.
"""
from __future__ import annotations

import math
import os
import tempfile

import torch
import torch.nn as nn
import torch.nn.functional as F

from exercises.checker import build_cases
from exercises.checker.report import Wrong, call, compare_tensors, fresh_seed, run_seed
from exercises.checker.sandbox import make

V, C = 48, 16
LOOP_STEPS, KILL_AT, EVERY, ACCUM = 16, 11, 4, 2


class TinyLM(nn.Module):
    """An embedding, a causal previous-token mix, a norm weight and a head: enough for gradients everywhere."""

    def __init__(self, seed: int):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.wte = nn.Parameter(torch.randn(V, C, generator=gen))
        self.mix = nn.Parameter(torch.randn(C, C, generator=gen) / C ** 0.5)
        self.norm = nn.Parameter(1 + 0.1 * torch.randn(C, generator=gen))
        self.head = nn.Parameter(torch.randn(V, C, generator=gen) / C ** 0.5)

    def forward(self, x, y):  # (B, T) each -> (logits (B, T, V), mean cross-entropy)
        h = self.wte[x]
        h = h + torch.tanh(F.pad(h, (0, 0, 1, 0))[:, :-1] @ self.mix.T)
        logits = (h * self.norm) @ self.head.T
        return logits, F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))


def tiny_setup(seed: int):
    model = TinyLM(seed)
    return model, [torch.optim.SGD([model.mix, model.head], lr=0.1, momentum=0.9),
                   torch.optim.AdamW([model.wte, model.norm], lr=0.01, weight_decay=0.1)]


def drive_wsd(lr_multiplier, cases):
    return [[float(lr_multiplier(s, p, w, d, m)) for s in range(p + 3)] for p, w, d, m, _ in cases]


def drive_step(train_step, seed, steps, grad_clip):
    model, opts = tiny_setup(seed)
    out = []
    for micro in steps:
        loss, norm = train_step(model, opts, [(x, y) for x, y in micro], grad_clip)
        out.append((float(loss), float(norm), {n: p.detach().clone() for n, p in model.named_parameters()}))
    return out


def drive_loop(train, batches, cfg):
    """A whole run, then a run stopped after KILL_AT steps and resumed into fresh objects: the three loss lists."""
    folder = tempfile.mkdtemp(prefix="linnet-build-train-")
    whole = train(*tiny_setup(1), batches, dict(cfg), os.path.join(folder, "a.pt"))
    path = os.path.join(folder, "b.pt")
    before = train(*tiny_setup(1), batches, {**cfg, "max_steps": KILL_AT}, path)
    after = train(*tiny_setup(99), batches, dict(cfg), path, resume=True)   # other weights: the checkpoint decides
    return [float(v) for v in whole], [float(v) for v in before], [float(v) for v in after]


def reference_step(model, opts, micro, grad_clip):
    x, y = torch.cat([m[0] for m in micro]), torch.cat([m[1] for m in micro])    # one big batch
    _, loss = model(x, y)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    for o in opts:
        o.step()
    for o in opts:
        o.zero_grad(set_to_none=True)
    return loss.item(), norm.item()


def check_train(ex) -> None:
    ref = build_cases.expected("train", fresh_seed("build:train") % 100_000)
    check_schedule(ex, ref)
    gen = torch.Generator().manual_seed(fresh_seed("build:train-data"))
    batch = lambda B, T: (torch.randint(0, V, (B, T), generator=gen), torch.randint(0, V, (B, T), generator=gen))  # noqa: E731
    for n_micro, clip, why in [(1, 100.0, "one micro-batch, no clipping in effect"),
                               (3, 100.0, "3 micro-batches of 2 rows ≡ one batch of 6"),
                               (2, 0.05, f"2 micro-batches, clipping on (0.05 is below the norm), seed {run_seed()}")]:
        steps = [[batch(2, 8) for _ in range(n_micro)] for _ in range(3)]
        case = f"train_step on the checker's small LM with SGD + AdamW, 3 steps of {n_micro} × (2, 8) tokens — {why}"
        got = call(lambda: make(ex, drive_step, ex.train_step, 1, steps, clip), case)
        model, opts = tiny_setup(1)
        for k, (micro, (loss, norm, params)) in enumerate(zip(steps, got)):
            where = f"{case}: step {k}"
            want_loss, want_norm = reference_step(model, opts, micro, clip)
            compare_tensors(torch.tensor(loss), torch.tensor(want_loss), where, "loss", atol=1e-6, rtol=1e-5,
                            hint="return the MEAN of the micro-batches' losses (a float)")
            ratio = norm / want_norm
            compare_tensors(torch.tensor(norm), torch.tensor(want_norm), where, "grad_norm (before clipping)",
                            atol=1e-6, rtol=1e-4, hint=(
                                f"yours is {ratio:.3g}× one big batch's: divide each micro-batch's loss by their number "
                                "before backward" if abs(ratio - n_micro) < 1e-3 else
                                "right at step 0, not later: zero the gradients after the optimizers step" if k else
                                "the global norm of all gradients together, measured before clipping"))
            for name, p in model.named_parameters():
                compare_tensors(params[name], p.detach(), where, f"parameter {name} after the step", atol=1e-6,
                                rtol=1e-5, hint="clip every gradient by min(1, grad_clip / norm) BEFORE the optimizers "
                                "step; step every optimizer; zero the gradients")
    check_loop(ex, ref["loop_multipliers"], gen)


def check_schedule(ex, ref) -> None:
    cases = [tuple(c) for c in ref["wsd_cases"]]
    got = call(lambda: make(ex, drive_wsd, ex.lr_multiplier, cases), "lr_multiplier on six schedules")
    for (planned, warmup, decay, min_ratio, why), values, want in zip(cases, got, ref["wsd_values"]):
        for step, (g, w) in enumerate(zip(values, want)):
            if not math.isclose(g, w, rel_tol=1e-9, abs_tol=1e-12):
                around = range(max(0, step - 2), min(len(want), step + 3))
                raise Wrong(f"lr_multiplier(step {step}, planned_steps {planned}, warmup_frac {warmup}, "
                            f"decay_start_frac {decay}, min_ratio {min_ratio}) — {why}",
                            f"expected {w!r}, got {g!r}; steps {around.start}-{around.stop - 1}: 05 gives "
                            f"{[round(want[s], 6) for s in around]}, yours {[round(values[s], 6) for s in around]}",
                            "warm-up lasts max(1, int(warmup_frac·planned)) steps and step 0 already gets 1/warm-up; "
                            "the cosine runs from int(decay_start_frac·planned) to planned − 1, then stays at min_ratio")


def check_loop(ex, multipliers, gen) -> None:
    cfg = dict(planned_steps=LOOP_STEPS, max_steps=LOOP_STEPS, warmup_frac=0.2, decay_start_frac=0.5, min_ratio=0.1,
               grad_clip=0.5, checkpoint_every=EVERY)
    batches = [[tuple(torch.randint(0, V, (2, 2, 8), generator=gen)) for _ in range(ACCUM)] for _ in range(LOOP_STEPS)]
    case = (f"train(model, [SGD, AdamW], {LOOP_STEPS} steps × {ACCUM} micro-batches, cfg {cfg}, path) — the checker's "
            "small LM")
    whole, before, after = call(lambda: make(ex, drive_loop, ex.train, batches, cfg), case)
    model, opts = tiny_setup(1)
    initial = [[g["lr"] for g in o.param_groups] for o in opts]
    expected = []
    for step, micro in enumerate(batches):
        for o, lrs in zip(opts, initial):
            for g, lr in zip(o.param_groups, lrs):
                g["lr"] = lr * multipliers[step]
        expected.append(reference_step(model, opts, micro, cfg["grad_clip"])[0])
    compare_losses(whole, expected, 0, case, "every group's lr is its initial lr × lr_multiplier(step) before the "
                   "step; one train_step per step, on batches[step]")
    kill = f"{case}; stopped after {KILL_AT} steps (as if killed), then train(..., resume=True) into a fresh model"
    compare_losses(before, expected[:KILL_AT], 0, kill, "the stopped run is the same run, up to its stop")
    start = KILL_AT // EVERY * EVERY
    if len(after) != LOOP_STEPS - start:
        raise Wrong(kill, f"the resumed run ran {len(after)} steps, expected {LOOP_STEPS - start} (steps {start}–"
                    f"{LOOP_STEPS - 1}): the last checkpoint was written after {start} steps",
                    f"save after every {EVERY} steps (and at no other time), with the step to start from; resume from it")
    compare_losses(after, expected[start:], start, kill,
                   "the checkpoint holds the model, every optimizer's state (momentum, AdamW's moments, each group's lr "
                   "and initial lr) and the next step; resume loads all of them")


def compare_losses(got, expected, first_step, case, hint) -> None:
    for k, (g, w) in enumerate(zip(got, expected)):
        if not math.isclose(g, w, rel_tol=1e-5, abs_tol=1e-6):
            raise Wrong(case, f"step {first_step + k}'s loss: expected {w:.6f}, got {g:.6f}"
                        + (" (the steps before matched)" if k else ""), hint)
    if len(got) != len(expected):
        raise Wrong(case, f"{len(got)} losses, expected {len(expected)} (one per step run)", hint)
