"""fast/loss.py's chunked linear + cross-entropy (02's loss_impl "fused") against its plain twin, 02's head followed
by F.cross_entropy.

Anywhere: on the plain kernels, the loss and every gradient of a tiny model equal 02's (fp32, eager and compiled),
ignored targets (-1) included, and the choice is an ordinary config field ("auto" keeps 02's head on a CPU). On a
Hopper GPU with quack-kernels: quack's kernels against the plain ones in bf16, a compiled bf16 training step of a tiny
model with the fused loss against 02's head, and "auto" choosing the fused loss there only while training in bf16
(BENCHMARKS.md, "Throughput IV")."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from helpers import lesson

from fast import loss as fused_loss
from fast import moe

m = lesson("02_model")
quack, why_not = moe.import_quack()
needs_quack = pytest.mark.skipif(quack is None, reason=why_not or "quack")


def twins(seed=0, **changes):
    """The same tiny model twice: loss_impl "reference" and "fused"."""
    torch.manual_seed(seed)
    config = m.LLMConfig(block_size=32, vocab_size=320, **m.TINY_TRAINING_SHAPE, **changes)
    plain = m.LLM(dataclasses.replace(config, loss_impl="reference"))
    fused = m.LLM(dataclasses.replace(config, loss_impl="fused"))
    fused.load_state_dict(plain.state_dict())
    return plain, fused


def loss_and_grads(model, idx, targets, compiled=False):
    run = torch.compile(model) if compiled else model
    logits, loss = run(idx, targets)
    grads = torch.autograd.grad(loss, [p for p in model.parameters()])
    return logits, loss.detach(), grads


@pytest.mark.parametrize("compiled", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["eager", "compiled"])
def test_fused_loss_equals_02s_head_with_every_gradient(compiled):
    plain, fused = twins()
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, 320, (3, 32), generator=g)
    targets = torch.randint(0, 320, (3, 32), generator=g)
    targets[:, :5] = -1                                         # ignored positions, as 04's documents' ends are
    want_logits, want, want_grads = loss_and_grads(plain, idx, targets)
    logits, got, grads = loss_and_grads(fused, idx, targets, compiled)
    assert want_logits is not None and logits is None           # the fused path makes no (B, T, V) logits
    auto = m.LLM(dataclasses.replace(plain.config, loss_impl="auto"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert auto(idx, targets)[0] is not None                # "auto" on a CPU, even training in bf16: 02's head
    assert torch.allclose(got, want, atol=1e-6, rtol=1e-6), (got, want)
    for (name, _), a, b in zip(plain.named_parameters(), grads, want_grads):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5), name


def test_the_chunks_do_not_change_the_answer():
    g = torch.Generator().manual_seed(2)
    x, w = torch.randn(100, 16, generator=g, requires_grad=True), torch.randn(50, 16, generator=g, requires_grad=True)
    targets = torch.randint(0, 50, (100,), generator=g)
    want = F.cross_entropy(x @ w.t(), targets)
    want_grads = torch.autograd.grad(want, (x, w))
    for chunk in (1, 7, 100, 4096):
        got = fused_loss.linear_cross_entropy(x, w, targets, chunk=chunk, kernels="plain")
        assert torch.allclose(got, want, atol=1e-6), chunk
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(torch.autograd.grad(got, (x, w)), want_grads))


def test_the_incoming_gradient_scales_both_gradients_and_bf16_autocast_matches_02s_head():
    g = torch.Generator().manual_seed(6)
    x, w = torch.randn(300, 32, generator=g, requires_grad=True), torch.randn(96, 32, generator=g, requires_grad=True)
    targets = torch.randint(0, 96, (300,), generator=g)
    targets[::5] = -1
    for autocast in (False, True):                              # 05 backpropagates loss / accum, under bf16 autocast
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            want = F.cross_entropy(F.linear(x, w).float(), targets, ignore_index=-1)
            got = fused_loss.linear_cross_entropy(x, w, targets, chunk=64, kernels="plain")
        want_grads = torch.autograd.grad(want * 0.3, (x, w))
        got_grads = torch.autograd.grad(got * 0.3, (x, w))
        tol = 1e-2 if autocast else 1e-6
        assert abs(got - want).item() < tol, autocast
        for a, b in zip(got_grads, want_grads):
            assert ((a - b).norm() / b.norm()).item() < tol, autocast


def test_without_gradients_the_fused_loss_is_f_cross_entropy():
    plain, fused = twins(seed=7)
    idx = torch.randint(0, 320, (2, 32), generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        want, got = plain(idx, idx)[1], fused(idx, idx)[1]
    assert torch.allclose(got, want, atol=1e-6)


def test_loss_impl_is_a_config_field_checked_like_the_others():
    with pytest.raises(ValueError, match="loss_impl must be one of auto, reference, fused, got 'chunked'"):
        m.LLMConfig(depth=2, loss_impl="chunked")
    with pytest.raises(ValueError, match="loss_impl 'fused' .* has no logit_softcap"):
        m.LLMConfig(depth=2, loss_impl="fused", logit_softcap=15.0)
    plain, _ = twins()
    assert m.LLMConfig(depth=2).loss_impl == "auto"
    auto = m.LLM(dataclasses.replace(plain.config, loss_impl="auto"))
    assert auto(torch.zeros(1, 8, dtype=torch.long), torch.zeros(1, 8, dtype=torch.long))[0] is not None  # 02's head


@needs_quack
def test_quack_kernels_equal_the_plain_ones_in_bf16():
    g = torch.Generator().manual_seed(3)
    N, C, V = 8192, 768, 32768
    x = torch.randn(N, C, generator=g).cuda().bfloat16().requires_grad_()
    w = (torch.randn(V, C, generator=g) * C ** -0.5).cuda().bfloat16().requires_grad_()
    targets = torch.randint(0, V, (N,), generator=g).cuda()
    targets[::11] = -1
    results = {}
    for kernels in ("plain", "quack"):
        loss = fused_loss.linear_cross_entropy(x, w, targets, kernels=kernels)
        results[kernels] = (loss.float(), *torch.autograd.grad(loss, (x, w)))
    want = F.cross_entropy((x @ w.t()).float(), targets, ignore_index=-1)
    assert abs(results["quack"][0] - want).item() < 1e-3 and abs(results["plain"][0] - want).item() < 1e-3
    for a, b in zip(results["quack"][1:], results["plain"][1:]):
        assert ((a.float() - b.float()).norm() / b.float().norm()).item() < 1e-2


@needs_quack
def test_a_compiled_bf16_step_with_the_fused_loss_on_quack_equals_02s_head():
    plain, fused = (model.cuda() for model in twins(seed=4))
    g = torch.Generator().manual_seed(5)
    idx = torch.randint(0, 320, (8, 32), generator=g).cuda()
    targets = torch.roll(idx, -1, dims=1)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        _, want, want_grads = loss_and_grads(plain, idx, targets, compiled=True)
        logits, got, grads = loss_and_grads(fused, idx, targets, compiled=True)
    assert logits is None and abs(got - want).item() < 2e-2 * want.item()
    for (name, _), a, b in zip(plain.named_parameters(), grads, want_grads):
        assert ((a - b).norm() / b.norm().clamp_min(1e-12)).item() < 5e-2, name


@needs_quack
def test_auto_trains_with_the_fused_loss_on_quack_in_bf16_and_evaluates_with_02s_head():
    """What 05 trains with on a Hopper GPU with quack: "auto" = fast/loss.py (no logits) for a bf16 training forward;
    02's head (logits) in fp32, without gradients (evaluation, 06) and with logit_softcap."""
    torch.manual_seed(6)
    config = m.LLMConfig(block_size=32, vocab_size=320, **m.TINY_TRAINING_SHAPE)
    model = m.LLM(config).cuda()
    idx = torch.randint(0, 320, (2, 32), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits, loss = model(idx, idx)
        assert logits is None and loss.requires_grad
        with torch.no_grad():
            assert model(idx, idx)[0] is not None
        capped = m.LLM(dataclasses.replace(config, logit_softcap=15.0)).cuda()
        assert capped(idx, idx)[0] is not None
    assert model(idx, idx)[0] is not None                           # fp32: 02's head
