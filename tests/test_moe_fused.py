"""fast/moe.py's fused expert path (02's moe_impl "fused") against its plain twin, 02's moe_grouped.

Anywhere: the custom op on the plain kernels equals moe_grouped (forward and every gradient, eager and compiled, in
fp32), and the calls to quack's kernels pass its layouts right (through test_moe_kernels.py's stand-in written from
quack 0.6.5's reference functions). On a Hopper GPU with quack-kernels installed: each quack kernel against its
plain twin, and the whole fused path against moe_grouped in bf16 (GPU runs: BENCHMARKS.md, "Throughput IV")."""
from __future__ import annotations

import pytest
import torch

from helpers import lesson
from test_moe_kernels import StandInQuack

from fast import moe

m = lesson("02_model")
quack, why_not = moe.import_quack()
needs_quack = pytest.mark.skipif(quack is None, reason=why_not or "quack")


def routed(N=64, C=16, Fd=24, E=4, k=2, dtype=torch.float32, device="cpu", seed=0, skew=0.0):
    """x, w_v, c_proj, router logits as leaves (requires_grad), an uneven routing when skew > 0."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(N, E, generator=g) + skew * torch.arange(E)       # skew: later experts get more
    leaves = [torch.randn(N, C, generator=g), torch.randn(E, 2 * Fd, C, generator=g) * C ** -0.5,
              torch.randn(E, C, Fd, generator=g) * Fd ** -0.5, logits]
    return [t.to(device, dtype).requires_grad_() for t in leaves], k


def run_moe(fn, leaves, k):
    """fn's output and the gradients of a fixed random projection of it w.r.t. x, w_v, c_proj and the logits."""
    x, w_v, c_proj, logits = leaves
    _, top_w, top_e = m.route(logits, k)
    y = fn(x, w_v, c_proj, top_e, top_w.to(x.dtype))
    proj = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(y.device, y.dtype)
    return y, torch.autograd.grad((y.float() * proj.float()).sum(), leaves)


def rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.mark.slow
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_fused_on_plain_kernels_equals_moe_grouped(compiled):
    """fp32 eager to rounding; compiled in bf16 (grouped_mm's compile-time shape function takes bf16 only), where
    the two differ by bf16's rounding of different but equal sums."""
    leaves, k = routed(skew=1.5, dtype=torch.bfloat16 if compiled else torch.float32)
    fused = lambda *a: moe.moe_fused(*a, kernels="plain")                 # noqa: E731
    y0, g0 = run_moe(m.moe_grouped, leaves, k)
    y1, g1 = run_moe(torch.compile(fused, fullgraph=True) if compiled else fused, leaves, k)
    assert rel(y1, y0) < (1e-2 if compiled else 1e-6)
    for name, a, b in zip(["x", "w_v", "c_proj", "router logits"], g1, g0):
        assert rel(a, b) < (2e-2 if compiled else 1e-5), name


def test_an_expert_with_no_tokens_gets_a_zero_gradient():
    leaves, k = routed(E=4)
    x, w_v, c_proj, logits = leaves
    with torch.no_grad():
        logits[:, 1] = -1e4                                                  # nobody picks expert 1
    _, (_, dw_v, dc_proj, _) = run_moe(lambda *a: moe.moe_fused(*a, kernels="plain"), leaves, k)
    assert torch.equal(dw_v[1], torch.zeros_like(dw_v[1])) and torch.equal(dc_proj[1], torch.zeros_like(dc_proj[1]))
    assert dw_v[0].abs().sum() > 0


def test_interleaving_round_trips_and_up_plain_is_02s_swiglu():
    w_v, x = torch.randn(2, 8, 4), torch.randn(6, 4)                         # 16-byte strides for grouped_mm
    assert torch.equal(moe.deinterleave_rows(moe.interleave_rows(w_v)), w_v)
    tok, cu = torch.tensor([0, 3, 5, 1, 2], dtype=torch.int32), torch.tensor([0, 3, 5], dtype=torch.int32)
    h, a = moe.up_plain(x, moe.interleave_rows(w_v), tok, cu)
    want = torch.cat([m.swiglu(x[[0, 3, 5]] @ w_v[0].T), m.swiglu(x[[1, 2]] @ w_v[1].T)])
    torch.testing.assert_close(a, want)
    torch.testing.assert_close(h[:3, 0::2], x[[0, 3, 5]] @ w_v[0, :4].T)      # gate columns at even places


def test_the_quack_calls_pass_its_layouts(monkeypatch):
    """Through StandInQuack (quack 0.6.5's semantics on a CPU) the quack kernels give the plain kernels' results."""
    monkeypatch.setattr(moe, "import_quack", lambda: (StandInQuack, ""))
    leaves, k = routed(N=48, C=32, Fd=16, E=4, skew=1.0, dtype=torch.float32)
    y0, g0 = run_moe(lambda *a: moe.moe_fused(*a, kernels="plain"), leaves, k)
    y1, g1 = run_moe(lambda *a: moe.moe_fused(*a, kernels="quack"), leaves, k)
    assert rel(y1, y0) < 1e-6
    for a, b in zip(g1, g0):
        assert rel(a, b) < 1e-5


@pytest.mark.slow
def test_fused_is_a_model_choice_and_runs_a_tiny_model():
    config = m.LLMConfig(**m.TINY_REFERENCE_SHAPE, moe_impl="fused")
    torch.manual_seed(0)
    model = m.LLM(config)
    plain = m.LLM(m.LLMConfig(**m.TINY_REFERENCE_SHAPE, moe_impl="grouped"))
    plain.load_state_dict(model.state_dict())
    idx = torch.randint(0, config.vocab_size, (2, 16))
    loss_fused, loss_plain = model(idx, idx)[1], plain(idx, idx)[1]
    torch.testing.assert_close(loss_fused, loss_plain, rtol=1e-6, atol=1e-6)
    loss_fused.backward()
    loss_plain.backward()
    for (name, a), b in zip(model.named_parameters(), plain.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=name)


# --- On a Hopper GPU with quack ------------------------------------------------------------------------------

@needs_quack
@pytest.mark.parametrize("skew", [0.0, 1.0])
def test_quack_kernels_equal_their_plain_twins_in_bf16(skew):
    (x, w_v, c_proj, logits), k = routed(N=4096, C=768, Fd=2048, E=8, dtype=torch.bfloat16, device="cuda", skew=skew)
    _, top_w, top_e = m.route(logits.detach(), k)
    order = torch.argsort(top_e.reshape(-1), stable=True)
    counts = torch.bincount(top_e.reshape(-1), minlength=8)
    cu = torch.cat([counts.new_zeros(1), counts.cumsum(0)]).to(torch.int32)
    tok, p = (order // k).to(torch.int32), top_w.reshape(-1)[order].float()
    w_il = moe.interleave_rows(w_v.detach())
    h0, a0 = moe.up_plain(x.detach(), w_il, tok, cu)
    h1, a1 = moe.up_quack(x.detach(), w_il, tok, cu)
    assert rel(h1, h0) < 1e-2 and rel(a1, a0) < 1e-2
    dy = torch.randn_like(x)
    for got, want in zip(moe.down_backward_quack(dy, c_proj.detach(), h0, tok, cu, p),
                         moe.down_backward_plain(dy, c_proj.detach(), h0, tok, cu, p)):
        assert rel(got, want) < 1e-2


@needs_quack
@pytest.mark.parametrize("skew", [0.0, 3.0], ids=["even", "an expert with no tokens"])
def test_quacks_k_gathered_weight_gradient_equals_its_plain_twin(skew):
    (x, w_v, c_proj, logits), k = routed(N=4096, C=768, Fd=2048, E=8, dtype=torch.bfloat16, device="cuda", skew=skew)
    _, _, top_e = m.route(logits.detach() * (10 if skew else 1), k)
    order = torch.argsort(top_e.reshape(-1), stable=True)
    counts = torch.bincount(top_e.reshape(-1), minlength=8)
    cu = torch.cat([counts.new_zeros(1), counts.cumsum(0)]).to(torch.int32)
    tok = (order // k).to(torch.int32)
    b = torch.randn(tok.shape[0], 2 * 2048, device="cuda", dtype=torch.bfloat16)
    got, want = moe.weight_grad_quack(x.detach(), b, tok, cu), moe.weight_grad_plain(x.detach(), b, tok, cu)
    assert got.shape == want.shape == (8, 768, 4096) and rel(got, want) < 1e-2
    for e in torch.nonzero(counts == 0).flatten().tolist():
        assert torch.equal(got[e], torch.zeros_like(got[e])), e


@needs_quack
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_fused_on_quack_equals_moe_grouped_in_bf16(compiled):
    leaves, k = routed(N=8192, C=768, Fd=2048, E=8, dtype=torch.bfloat16, device="cuda", skew=0.5)
    fused = lambda *a: moe.moe_fused(*a, kernels="quack")                 # noqa: E731
    y0, g0 = run_moe(m.moe_grouped, leaves, k)
    y1, g1 = run_moe(torch.compile(fused) if compiled else fused, leaves, k)
    assert rel(y1, y0) < 1e-2
    for name, a, b in zip(["x", "w_v", "c_proj", "router logits"], g1, g0):
        assert rel(a, b) < 2e-2, name


def test_auto_takes_quack_only_on_a_gpu_and_05_says_which_path_runs(monkeypatch):
    """moe_impl "auto" on a CPU stays grouped even where quack would import; 05 names the path once, before step 1."""
    train = lesson("05_train")
    monkeypatch.setattr(moe, "quack_ready", lambda: True)
    moe_layer = m.MoE(m.LLMConfig(**m.TINY_REFERENCE_SHAPE))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert moe_layer.choose_impl(torch.empty(0)) == "grouped"
    cpu = torch.device("cpu")
    assert train.moe_path(train.TrainConfig(), cpu) == "grouped"
    fused = train.TrainConfig(model=m.LLMConfig(**m.TINY_REFERENCE_SHAPE, moe_impl="fused"))
    assert train.moe_path(fused, cpu) == "fused (its plain twins: quack does not run here)"


@needs_quack
def test_auto_is_fused_on_this_hopper_gpu_with_quack():
    moe_layer = m.MoE(m.LLMConfig(**m.TINY_REFERENCE_SHAPE))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert moe_layer.choose_impl(torch.empty(0, device="cuda")) == "fused"
    train = lesson("05_train")
    assert train.moe_path(train.TrainConfig(), torch.device("cuda")) == "fused (quack's kernels)"


@needs_quack
def test_evaluation_without_gradients_keeps_moe_grouped():
    moe_layer = m.MoE(m.LLMConfig(**m.TINY_REFERENCE_SHAPE))
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        assert moe_layer.choose_impl(torch.empty(0, device="cuda")) == "grouped"
