"""The checks of 05_train.py's exercises: wsd_schedule and train_step."""
from __future__ import annotations

import dataclasses
import importlib
import math

import numpy as np
import torch

from exercises.checker.report import Wrong, call, check_returns, compare_tensors, fresh_seed, run_seed
from exercises.checker.sandbox import make


# --- wsd_schedule (05_train.py, section 2: lr_multiplier) --------------------------------------------

def check_wsd_schedule(ex) -> None:
    train = importlib.import_module("05_train")
    cases = [(20, 0.10, 0.80, 0.06, "20 steps: warm-up over steps 0-1, stable to 15, cosine over 16-19"),
             (300, 0.10, 0.80, 0.1, "05's tiny preset: 300 steps, min_lr/lr = 3e-4/3e-3"),
             (100, 0.05, 0.50, 0.0, "short warm-up, decay from half-way down to 0"),
             (5, 0.10, 0.80, 0.06, "5 steps: 10 % of 5 rounds down to 0, so warm-up lasts 1 step"),
             (1, 0.10, 0.80, 0.06, "a single step"),
             (18_965, 0.10, 0.80, 0.06, "linnet: 18,965 planned steps, min_lr/lr = 6e-5/1e-3")]
    fresh = np.random.default_rng(fresh_seed("wsd_schedule"))
    cases.append((int(fresh.integers(10, 400)), round(float(fresh.uniform(0.01, 0.3)), 3),
                  round(float(fresh.uniform(0.4, 0.9)), 3), round(float(fresh.uniform(0, 0.2)), 3),
                  f"fresh seed {run_seed()}"))
    for planned, warmup_frac, decay_frac, min_ratio, why in cases:
        cfg = dataclasses.replace(train.PRESETS["linnet"], planned_steps=planned, warmup_frac=warmup_frac,
                                  decay_start_frac=decay_frac, lr=1.0, min_lr=min_ratio)
        args = (planned, warmup_frac, decay_frac, min_ratio)
        for step in range(planned + 3):               # +3: steps past the plan stay at the minimum
            case = (f"step {step}, planned_steps {planned}, warmup_frac {warmup_frac}, decay_start_frac "
                    f"{decay_frac}, min_ratio {min_ratio} — {why}")
            got = call(ex.lr_multiplier, case, step, *args)
            expected = train.lr_multiplier(step, cfg)
            if not isinstance(got, (int, float)) or not math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-12):
                around = range(max(0, step - 2), step + 3)
                yours = [call(ex.lr_multiplier, case, s, *args) for s in around]
                raise Wrong(case, f"multiplier: expected {expected!r}, got {got!r}\n"
                            f"  steps {around.start}-{around.stop - 1}: 05 gives "
                            f"{[round(train.lr_multiplier(s, cfg), 6) for s in around]}, yours "
                            f"{[round(y, 6) if isinstance(y, (int, float)) else y for y in yours]}",
                            "warm-up ends at max(1, int(warmup_frac·planned)) and step 0 already gets 1/warmup; "
                            "the cosine runs from int(decay_start_frac·planned) to planned - 1 and then stays "
                            "at min_ratio")


# --- train_step (05_train.py, section 3: train_step) -----------------------------------------------------

def tiny_training_setup(seed: int):
    """A small 02 LLM, its 03 optimizers (Muon + AdamW) and 3 steps × 2 micro-batches of random tokens."""
    model_lib = importlib.import_module("02_model")
    muon = importlib.import_module("03_muon")
    torch.manual_seed(seed)
    config = model_lib.LLMConfig(depth=2, n_embd=32, head_dim=16, n_head=2, n_kv_head=1, ffn_dim=32,
                                 n_experts=4, vocab_size=64, block_size=16)
    model = model_lib.LLM(config).train()
    optimizers, _ = muon.build_optimizers(model, lr=3e-3)
    return model, optimizers


def check_train_step(ex) -> None:
    train = importlib.import_module("05_train")
    gen = torch.Generator().manual_seed(0)
    for grad_clip, n_micro, n_steps, why in [(0.05, 2, 2, "clipping on (grad_clip 0.05 is below the gradient norm)"),
                                             (100.0, 3, 2, "clipping off in effect (grad_clip 100), 3 micro-batches"),
                                             (0.2, 2, 1, f"fresh batches, seed {run_seed()}")]:
        if "fresh" in why:
            gen = torch.Generator().manual_seed(fresh_seed("train_step"))
        batches = [[(torch.randint(0, 64, (2, 8), generator=gen), torch.randint(0, 64, (2, 8), generator=gen))
                    for _ in range(n_micro)] for _ in range(n_steps)]
        ref_model, ref_opts = tiny_training_setup(1)
        model, opts = make(ex, tiny_training_setup, 1)    # the same model, where the student's code runs
        cfg = dataclasses.replace(train.PRESETS["tiny"], grad_clip=grad_clip)
        for step, micro in enumerate(batches):
            case = (f"step {step} of {n_steps} on 02's LLM (depth 2, n_embd 32, 4 experts) with 03's Muon + AdamW, "
                    f"{n_micro} micro-batches of (2, 8) tokens, grad_clip {grad_clip} — {why}")
            loss_ref, norm_ref, _ = train.train_step(ref_model, ref_model, ref_opts, micro, cfg, torch.device("cpu"))
            got = call(ex.train_step, case, model, opts, list(micro), grad_clip)
            scalar = lambda t: isinstance(t, torch.Tensor) and t.numel() == 1 and t.is_floating_point()
            check_returns(got, [("loss", "a one-element float tensor", scalar),
                                ("grad_norm", "a one-element float tensor", scalar)], case, "train_step")
            loss, norm = (t.detach().reshape(()) for t in got)
            if math.isclose(loss.item(), norm_ref.item(), rel_tol=1e-4) and math.isclose(norm.item(), loss_ref.item(), rel_tol=1e-4):
                raise Wrong(case, "the outputs are in the wrong order: you returned (grad_norm, loss)",
                            "return (mean loss, grad norm)")
            compare_tensors(loss, loss_ref, case, "loss", atol=1e-5, rtol=1e-5,
                            hint="the MEAN of the micro-batches' losses (not the last one, not the sum)")
            ratio = norm.item() / norm_ref.item()
            compare_tensors(norm, norm_ref, case, "grad_norm", atol=1e-6, rtol=1e-4,
                            hint=f"yours is {ratio:.3g}× 05's. " + (
                                "Divide each micro-batch's loss by the number of micro-batches before backward: "
                                "the gradient must be that of the MEAN loss" if abs(ratio - n_micro) < 1e-3 else
                                "Report the global norm BEFORE clipping (the norm of all gradients together)"
                                if abs(norm.item() - grad_clip) < 1e-4 else
                                "right at step 0 but not later: the previous step's gradients are still there; "
                                "clear them after the optimizers step" if step > 0 else
                                "the global norm: sqrt of the sum of every gradient element squared, over all parameters"))
            after = call(model.state_dict, case)
            for name, p_ref in ref_model.named_parameters():
                compare_tensors(after[name].detach(), p_ref.detach(), case, f"parameter {name} after the step", atol=1e-6,
                                rtol=1e-4, hint="clip (scale every gradient by min(1, grad_clip / (norm + 1e-6))) "
                                "BEFORE the optimizers step; step every optimizer; then zero the gradients, or "
                                "the next step adds onto these")


CHECKS = {"wsd_schedule": check_wsd_schedule, "train_step": check_train_step}
