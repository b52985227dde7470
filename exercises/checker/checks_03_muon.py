"""The checks of 03_muon.py's exercises: newton_schulz_step and muon_update."""
from __future__ import annotations

import importlib

import torch

from exercises.checker.report import (Wrong, call, check_returns, check_shape, compare_tensors, fresh_seed,
                                      is_float_tensor, run_seed)


# --- newton_schulz_step (03_muon.py, section 1: ns_polynomial, newton_schulz) --------------------------

def matrix_with_singular_values(s: torch.Tensor, rows: int, cols: int, batch=(), seed: int = 0):
    """X = U·diag(s)·Vᵀ in float64 with random orthonormal U (rows×r), V (cols×r), r = len(s)."""
    gen = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(*batch, rows, len(s), generator=gen, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(*batch, cols, len(s), generator=gen, dtype=torch.float64))
    return U, V, U @ torch.diag_embed(s.expand(*batch, len(s))) @ V.mT


def check_newton_schulz_step(ex) -> None:
    muon = importlib.import_module("03_muon")
    # (a) exact maths in float64: one step maps U·diag(s)·Vᵀ to U·diag(φ(s))·Vᵀ, φ = 03's ns_polynomial
    for rows, cols, batch, why in [(4, 4, (), "square"), (3, 7, (), "wide (m < n)"), (7, 3, (), "tall (m > n)"),
                                   (4, 6, (8,), "a batch of 8 stacked experts (..., m, n)")]:
        r = min(rows, cols)
        s = torch.linspace(0.05, 1.0, r, dtype=torch.float64)
        U, V, X = matrix_with_singular_values(s, rows, cols, batch, seed=rows * 10 + cols)
        case = f"X of shape {tuple(X.shape)}, float64, {why}, singular values {[round(v, 3) for v in s.tolist()]}"
        got = call(ex.newton_schulz_step, case, X.clone())
        expected = U @ torch.diag_embed(muon.ns_polynomial(s).expand(*batch, r)) @ V.mT
        compare_tensors(got, expected, case, atol=1e-6, rtol=1e-6,
                        hint="A = X·Xᵀ (use X.mT so batches work), B = b·A + c·A·A, return a·X + B·X; "
                             "stay in X's dtype")
    # (b) against 03's real newton_schulz (bf16): one step, then five steps, on gradient-like matrices
    gen = torch.Generator().manual_seed(0)
    for rows, cols, steps in [(64, 32, 1), (32, 96, 1), (48, 48, 5), (24, 40, 2)]:
        if steps == 2:                                  # the last case: a fresh matrix
            gen = torch.Generator().manual_seed(fresh_seed("newton_schulz_step"))
        G = torch.randn(rows, cols, generator=gen)
        X = G / G.norm()                                # 03 divides by the Frobenius norm first
        case = (f"G = randn({rows}, {cols}); X = G / ‖G‖_F; {steps} of your steps in float32 vs 03's "
                f"newton_schulz(G, steps={steps}) (bf16)")
        got = X.clone()
        for _ in range(steps):
            got = call(ex.newton_schulz_step, case, got)
        expected = muon.newton_schulz(G, steps=steps).float()
        scale = expected.abs().max().item()
        compare_tensors(got, expected, case, atol=0.03 * scale, rtol=0.03,
                        hint="03 runs in bf16, so the tolerance here is loose; if (a) passed this one should too")


# --- muon_update (03_muon.py, section 2: Muon.step → muon_update_, adjust_lr; section 1: newton_schulz) ---

def check_muon_update(ex) -> None:
    muon = importlib.import_module("03_muon")
    gen = torch.Generator().manual_seed(0)
    lr, wd = 0.02, 0.1
    base_hint = ("buf ← μ·buf + (1−μ)·g; Nesterov update (1−μ)·g + μ·buf; then Newton–Schulz on EACH matrix "
                 "(divide by its own Frobenius norm, 5 quintic steps; bf16 like 03 matches best)")
    cases = [((32, 32), 0.0, "square, no weight decay: momentum, Nesterov and Newton–Schulz only", base_hint),
             ((32, 32), wd, "square, weight decay 0.1", "decay multiplies p by (1 − lr·weight_decay) with the "
              "lr you were given, before the orthogonal step"),
             ((64, 16), 0.0, "tall 64×16, no decay: the shape-dependent lr", "the step is lr·sqrt(max(1, A/B)) "
              "for an A×B matrix (A = rows): ×2 here"),
             ((16, 64), 0.0, "wide 16×64, no decay", "wide matrices get no boost: sqrt(max(1, A/B)) = 1 when A < B"),
             ((64, 16), wd, "tall 64×16 with decay", "the decay uses the RAW lr, not the shape-scaled one"),
             ((4, 48, 16), wd, "a stack of 4 experts (E, A, B) whose slices have very different scales",
              "each of the E matrices is orthogonalised on its own: one Frobenius norm per slice, and the lr "
              "scale of one A×B slice"),
             ((24, 40), wd, f"24×40 with decay, fresh seed {run_seed()}", "see the hints above")]
    for shape, decay, why, hint in cases:
        if "fresh" in why:
            gen = torch.Generator().manual_seed(fresh_seed("muon_update"))
        p = torch.randn(*shape, generator=gen)
        scales = torch.logspace(-2, 1, shape[0])[:, None, None] if len(shape) == 3 else 1.0
        grad = torch.randn(*shape, generator=gen) * scales
        buf = torch.randn(*shape, generator=gen) * scales
        case = (f"p, grad, buf of shape {shape}, lr {lr}, momentum 0.95, weight_decay {decay}, nesterov True, "
                f"5 Newton–Schulz steps — {why}")
        param = torch.nn.Parameter(p.clone())
        opt = muon.Muon([{"params": [param], "stacked": len(shape) == 3}], lr=lr, weight_decay=decay)
        param.grad = grad.clone()
        opt.state[param]["momentum_buffer"] = buf.clone()
        opt.step()
        exp_p, exp_buf = param.detach(), opt.state[param]["momentum_buffer"]
        got = call(ex.muon_update, case, p.clone(), grad.clone(), buf.clone(), lr, 0.95, decay, True, 5)
        check_returns(got, [("new_p", f"a float tensor of shape {shape}", is_float_tensor),
                            ("new_buf", f"a float tensor of shape {shape}", is_float_tensor)], case, "muon_update")
        new_p, new_buf = got
        check_shape(new_p, exp_p, case, "new_p")
        check_shape(new_buf, exp_buf, case, "new_buf")
        if (torch.allclose(new_p.double(), exp_buf.double(), atol=1e-5) and
                torch.allclose(new_buf.double(), exp_p.double(), atol=1e-4)):
            raise Wrong(case, "the outputs are in the wrong order: you returned (new_buf, new_p)",
                        "return (new p, new momentum buffer)")
        compare_tensors(new_buf, exp_buf, case, "new_buf", atol=1e-5, rtol=1e-5,
                        hint="the momentum buffer is a running AVERAGE: μ·buf + (1−μ)·g (torch's lerp), "
                             "not μ·buf + g")
        step = (p * (1 - lr * decay) - exp_p).abs().max().item()   # how far the orthogonal step moved p
        loose = 0.12 if "fresh" in why else 0.08            # bf16 rounding: ≈ 4 %, on some fresh inputs 8 %
        compare_tensors(new_p, exp_p, case, "new_p", atol=loose * step, rtol=0, hint=hint)


CHECKS = {"newton_schulz_step": check_newton_schulz_step, "muon_update": check_muon_update}
