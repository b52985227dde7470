"""fast/rope_qk_norm.py (RoPE + QK-norm in one Triton kernel) agrees with 02's plain `rope_qk_norm_reference`,
forward and backward, as CausalSelfAttention.qkv_heads calls them (`LLMConfig.rope_impl` chooses).

On a CPU: the choice of path (always), and the Triton kernel itself through Triton's interpreter when triton is
installed (TRITON_INTERPRET=1 is read when a kernel is decorated, so that check runs in a fresh process).
On a CUDA GPU: the compiled kernel in bf16, eager and under torch.compile, alone and inside the whole model.
Triton is GPU-only and optional (CUDA builds of torch bring it), so CI runs the first group only.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys

import pytest
import torch

from helpers import REPO_DIR

from fast import rope_qk_norm as fused_rope

m = importlib.import_module("02_model")
HAS_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton not installed (GPU-only optional)")
needs_cuda = pytest.mark.skipif(not (HAS_TRITON and torch.cuda.is_available()),
                                reason="needs a CUDA GPU and triton (GPU-only optional)")


def qkv_output(attn, B, T, dtype, device="cpu", seed=0):
    """A (B, T, C + 2·kv) qkv projection output that wants gradients."""
    g = torch.Generator().manual_seed(seed)
    width = (attn.n_head + 2 * attn.n_kv_head) * attn.head_dim
    return torch.randn(B, T, width, generator=g).to(device, dtype).requires_grad_()


def attention(impl, device="cpu", **config):
    """An attention module whose RoPE + QK-norm runs as `impl` says (LLMConfig.rope_impl)."""
    return m.CausalSelfAttention(m.LLMConfig(**{**m.TINY_REFERENCE_SHAPE, **config, "rope_impl": impl})).to(device)


def outputs_and_grad(attn, B, T, dtype, device="cpu", **where):
    """qkv_heads' q, k, v and the gradient of a fixed random projection of them w.r.t. the qkv output."""
    qkv = qkv_output(attn, B, T, dtype, device)
    heads = attn.qkv_heads(qkv, **where)
    g = torch.Generator().manual_seed(1)
    loss = sum((t.float() * torch.randn(t.shape, generator=g).to(device)).sum() for t in heads)
    grad, = torch.autograd.grad(loss, qkv)
    return *(t.detach().float() for t in heads), grad.float()


def test_auto_takes_the_plain_ops_on_a_cpu_and_bad_names_are_refused():
    attn = m.CausalSelfAttention(m.LLMConfig(**m.TINY_REFERENCE_SHAPE))
    assert attn.rope_impl == "auto" and not fused_rope.use_fused("auto", torch.empty(2, 3, 256), 64)
    assert not fused_rope.use_fused("reference", torch.empty(2, 3, 256), 64)
    if fused_rope.triton is None:
        with pytest.raises(ValueError, match="needs triton"):
            fused_rope.use_fused("fused", torch.empty(2, 3, 256), 64)
    else:
        with pytest.raises(ValueError, match="power of two"):
            fused_rope.use_fused("fused", torch.empty(2, 3, 240), 48)
        with pytest.raises(ValueError, match="runs on CUDA tensors"):
            fused_rope.use_fused("fused", torch.empty(2, 3, 256), 64)
    with pytest.raises(ValueError, match="rope_impl must be one of"):
        m.LLMConfig(**m.TINY_REFERENCE_SHAPE, rope_impl="fast")


INTERPRETED_CHECK = """
import importlib, json, sys, torch
sys.path[:0] = [{repo!r}, {tests!r}]
import test_rope_kernel as t
worst = {{}}
for norm in (True, False):
    for name, where in (("t", {{}}), ("offset", {{"offset": 5}}),
                        ("positions", {{"positions": torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(3))}})):
        plain = t.outputs_and_grad(t.attention("reference", qk_norm=norm), 2, 12, torch.float32, **where)
        fused = t.outputs_and_grad(t.attention("fused", qk_norm=norm), 2, 12, torch.float32, **where)
        worst[f"{{name}} norm={{norm}}"] = max((a - b).abs().max().item() for a, b in zip(plain, fused))
print(json.dumps(worst))
"""


@pytest.mark.slow
@needs_triton
def test_rope_qk_norm_matches_reference_through_the_interpreter():
    """fp32 on a CPU: q, k, v and the qkv gradient agree to 1e-5 for positions t, offset + t and given positions,
    with and without QK-norm."""
    code = INTERPRETED_CHECK.format(repo=str(REPO_DIR), tests=str(REPO_DIR / "tests"))
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    worst = __import__("json").loads(done.stdout.strip().splitlines()[-1])
    assert len(worst) == 6 and max(worst.values()) < 1e-5, worst


@needs_cuda
@pytest.mark.parametrize("compiled", [False, True])
def test_rope_qk_norm_matches_reference_on_the_gpu(compiled):
    """bf16 at linnet's head shapes: the kernel against the plain ops run in fp32 (its exact maths); the plain
    bf16 ops round q, k after RoPE, the kernel does not, so it must sit at least as close to fp32 as they do."""
    plain_attn, fused_attn = (m.CausalSelfAttention(m.LLMConfig(depth=12, rope_impl=impl)).cuda()
                              for impl in ("reference", "fused"))
    run = torch.compile(outputs_and_grad) if compiled else outputs_and_grad
    where = {"positions": torch.randint(0, 1024, (4, 256), device="cuda")}
    for kw in ({}, where):
        exact = outputs_and_grad(plain_attn, 4, 256, torch.float32, "cuda", **kw)
        plain = outputs_and_grad(plain_attn, 4, 256, torch.bfloat16, "cuda", **kw)
        fused = run(fused_attn, 4, 256, torch.bfloat16, "cuda", **kw)
        for e, p, f in zip(exact, plain, fused):
            assert (f - e).abs().max() <= max(2 * (p - e).abs().max().item(), 1e-2)


@needs_cuda
def test_the_model_trains_alike_with_the_fused_kernel():
    """A depth-2 model, compiled, bf16 autocast: loss and every parameter gradient with the kernel match the
    plain ops within bf16 noise."""
    idx = torch.randint(0, 1024, (4, 128), device="cuda")
    results = {}
    for impl in ("reference", "fused"):
        torch.manual_seed(0)                                      # the same weights for both
        model = m.LLM(m.LLMConfig(depth=2, vocab_size=1024, rope_impl=impl)).cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            _, loss = torch.compile(model)(idx, idx)
        loss.backward()
        results[impl] = (loss.item(), {n: p.grad.float().clone() for n, p in model.named_parameters()})
    (l0, g0), (l1, g1) = results["reference"], results["fused"]
    assert abs(l0 - l1) < 2e-2
    for name in g0:
        rel = ((g0[name] - g1[name]).norm() / g0[name].norm().clamp_min(1e-12)).item()
        assert rel < 5e-2, (name, rel)
