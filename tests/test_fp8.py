"""fast/fp8.py: FP8 experts (02's moe_impl "grouped_fp8"). Quantisation, the padded expert layout, FP8 vs bf16/fp32 within FP8's rounding,
gradients (the weight gradient exact), 05 --fp8; on a Hopper GPU also the kernel against its plain reference and the compiled path.
The GPU tests skip on a CPU machine (CI); they ran on the lent H200 (BENCHMARKS.md, "Throughput II")."""
import pytest
import torch

from helpers import lesson, run_script

from fast import fp8, moe

m = lesson("02_model")
ON_HOPPER = torch.cuda.is_available() and torch.cuda.get_device_capability() == (9, 0)
hopper_only = pytest.mark.skipif(not ON_HOPPER, reason="the FP8 grouped GEMM kernel needs a Hopper GPU (H100/H200)")


def rel_err(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def test_quantize_rows_scales_are_powers_of_two_and_nothing_overflows():
    x = torch.randn(64, 96) * torch.logspace(-4, 3, 64)[:, None]       # rows from 1e-4 to 1e3
    x[5] = 0.0
    q, scale = fp8.quantize_rows(x)
    assert q.dtype == torch.float8_e4m3fn and scale.shape == (64,)
    assert torch.equal(torch.log2(scale), torch.log2(scale).round())  # powers of two: dequantising is exact
    assert q.float().abs().max() <= fp8.FP8_MAX
    assert (q.float().abs().amax(1)[torch.arange(64) != 5] >= fp8.FP8_MAX / 2).all()  # each row uses the range
    back = q.float() * scale[:, None]
    assert torch.equal(back[5], torch.zeros(96))
    rows = torch.arange(64) != 5
    err = ((back - x).norm(dim=1) / x.norm(dim=1))[rows]
    assert 0.01 < err.mean() < 0.06                                   # 3 mantissa bits: a few % per row


def test_expert_rows_padded_places_every_slot_once_in_aligned_groups():
    torch.manual_seed(0)
    E, S, align = 5, 301, 16
    flat_e = torch.randint(0, E, (S,))
    flat_e[flat_e == 3] = 2                                          # expert 3 gets nothing: an empty group
    row_slot, offsets, slot_row = fp8.expert_rows_padded(flat_e, E, align)
    M = row_slot.numel()
    assert M % align == 0 and offsets[-1] == M and (offsets % align == 0).all()
    assert torch.equal(row_slot[slot_row], torch.arange(S))          # slot → row → the same slot
    assert (row_slot < S).sum() == S                                 # every other row is padding
    group = torch.bucketize(torch.arange(M), offsets.long(), right=True)   # the group of each row
    assert torch.equal(group[slot_row], flat_e)                      # each slot sits in its expert's group
    assert offsets[3] == offsets[2]                                  # the empty group has no rows


def test_moe_grouped_fp8_stays_within_fp8_rounding_of_the_exact_moe():
    """Forward and all three gradients within ~10 % (relative norm) of moe_grouped in fp32, and not equal."""
    torch.manual_seed(0)
    N, C, F, E, k = 300, 64, 96, 4, 2
    x = torch.randn(N, C, requires_grad=True)
    w_v = (torch.randn(E, 2 * F, C) * 0.1).requires_grad_()
    c_proj = (torch.randn(E, C, F) * 0.1).requires_grad_()
    _, top_w, top_e = m.route(torch.randn(N, E), k)
    upstream = torch.randn(N, C)
    results = []
    for run in (m.moe_grouped, fp8.moe_grouped_fp8):
        y = run(x, w_v, c_proj, top_e, top_w)
        results.append((y, *torch.autograd.grad((y * upstream).sum(), [x, w_v, c_proj])))
    for exact, rounded in zip(*results):
        assert 0.02 < rel_err(rounded, exact) < 0.10


def test_fp8_grouped_linear_keeps_the_weight_gradient_exact():
    """grad_x goes through FP8 (close, not equal); grad_w is the plain per-expert gᵀx (equal up to fp32)."""
    torch.manual_seed(1)
    M, K, N, E = 64, 32, 48, 2
    offsets = torch.tensor([32, 64], dtype=torch.int32)
    x = torch.randn(M, K, requires_grad=True)
    w = torch.randn(E, N, K, requires_grad=True)
    grad = torch.randn(M, N)
    fp8.fp8_grouped_linear(x, offsets, fp8.fp8_weight(w)).backward(grad)
    exact_w = torch.stack([grad[:32].T @ x[:32].detach(), grad[32:].T @ x[32:].detach()])
    exact_x = torch.cat([grad[:32] @ w[0].detach(), grad[32:] @ w[1].detach()])
    assert torch.allclose(w.grad, exact_w, rtol=1e-5, atol=1e-4)
    assert 0.01 < rel_err(x.grad, exact_x) < 0.1


@pytest.mark.slow
def test_fp8_copies_made_once_per_step_give_the_same_gradients():
    """cast_expert_weights quantises the FP8 copies once per step (05 on a GPU): same loss, same gradients as
    quantising inside every forward."""
    torch.manual_seed(0)
    model = m.LLM(m.LLMConfig(**m.TINY_REFERENCE_SHAPE, moe_impl="grouped_fp8"))
    idx = torch.randint(0, model.config.vocab_size, (2, 16))
    grads = []
    for expert_weights in (None, moe.cast_expert_weights(model, dtype=torch.float32)):
        model.zero_grad()
        _, loss = model(idx, idx, expert_weights=expert_weights)
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    assert isinstance(moe.cast_expert_weights(model)[0][0], fp8.FP8Weight)
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_fp8_config_runs_and_loading_a_checkpoint_goes_back_to_auto():
    config = m.LLMConfig(**m.TINY_REFERENCE_SHAPE, moe_impl="grouped_fp8")
    model = m.LLM(config)
    idx = torch.randint(0, config.vocab_size, (2, 16))
    logits, loss = model(idx, idx)
    loss.backward()
    assert torch.isfinite(loss) and model.transformer.h[0].moe.w_v.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="grouped_fp8"):
        m.LLMConfig(moe_impl="fp8")


def test_06_scores_an_fp8_checkpoint_in_bf16_arithmetic(tmp_path):
    """A 05 checkpoint of an --fp8 run records moe_impl "grouped_fp8"; 06 loads it on 02's default path."""
    ev = lesson("06_eval")
    model = m.LLM(m.LLMConfig(**m.TINY_REFERENCE_SHAPE, moe_impl="grouped_fp8"))
    path = tmp_path / "latest.pt"
    torch.save({"model": m.export_linnet_state_dict(model), "config": model.config.to_dict()}, path)
    loaded = ev.load_model(path, device="cpu")
    assert loaded.config.moe_impl == "auto" and loaded.transformer.h[0].moe.impl == "auto"


@pytest.mark.slow
def test_05_tiny_trains_with_fp8(tmp_path):
    proc = run_script("05_train.py", "--preset", "tiny", "--fp8", "--max-steps", "40", "--no-hellaswag",
                      "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    losses = [float(line.split('"loss": ')[1].split(",")[0]) for line in (tmp_path / "log.jsonl").read_text().splitlines()
              if '"loss": ' in line]
    assert losses[-1] < losses[0] - 0.5


# --- on a Hopper GPU: the kernel against its plain reference, and the compiled training path ----------------

@hopper_only
def test_scaled_grouped_mm_matches_reference():
    torch.manual_seed(0)
    E, K, N, M = 8, 768, 4096, 4096
    counts = torch.tensor([16 * c for c in (40, 0, 30, 20, 50, 36, 40, 40)])   # one empty expert
    offsets = torch.cumsum(counts, 0).to(torch.int32).cuda()
    a, b = torch.randn(M, K, device="cuda"), torch.randn(E, N, K, device="cuda")
    aq, a_scale = fp8.quantize_rows(a)
    bq, b_scale = fp8.quantize_rows(b)
    fast = fp8.scaled_grouped_mm(aq, a_scale, bq, b_scale, offsets, torch.bfloat16)
    plain = fp8.scaled_grouped_mm_reference(aq, a_scale, bq, b_scale, offsets, torch.float32)
    assert rel_err(fast, plain) < 1e-2                          # same FP8 inputs: only accumulation/bf16 differ
    assert fast[offsets[0]:offsets[1]].numel() == 0             # the empty expert has no rows


@hopper_only
def test_compiled_fp8_moe_matches_eager_emulation():
    torch.manual_seed(0)
    N, C, F, E, k = 8192, 768, 2048, 8, 2
    x = torch.randn(N, C, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    w_v = (torch.randn(E, 2 * F, C, device="cuda") * 0.02).to(torch.bfloat16).requires_grad_()
    c_proj = (torch.randn(E, C, F, device="cuda") * 0.02).to(torch.bfloat16).requires_grad_()
    _, top_w, top_e = m.route(torch.randn(N, E, device="cuda"), k)
    upstream = torch.randn(N, C, device="cuda", dtype=torch.bfloat16)
    exact = m.moe_grouped(x, w_v, c_proj, top_e, top_w)
    exact_grads = torch.autograd.grad((exact * upstream).sum(), [x, w_v, c_proj])
    in_fp8 = torch.compile(fp8.moe_grouped_fp8)(x, w_v, c_proj, top_e, top_w)
    fp8_grads = torch.autograd.grad((in_fp8 * upstream).sum(), [x, w_v, c_proj])
    errors = {name: rel_err(a, b) for name, a, b in zip(("y", "grad x", "grad w_v", "grad c_proj"),
                                                        (in_fp8, *fp8_grads), (exact, *exact_grads))}
    assert all(0.005 < e < 0.10 for e in errors.values()), errors
