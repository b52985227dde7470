"""03_muon: Newton–Schulz, the Muon optimizer (vs torch.optim.Muon), and linnet's Muon/AdamW split."""
import copy
import math
import re

import pytest
import torch

from helpers import lesson, run_script

muon = lesson("03_muon")
model_lib = lesson("02_model")
fast_muon = lesson("fast.muon")      # the batched twin of 03's per-parameter loop

torch_muon = getattr(torch.optim, "Muon", None)
needs_torch_muon = pytest.mark.skipif(torch_muon is None, reason="this torch has no torch.optim.Muon (added in 2.9)")


def random_grads(shapes, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(*s, generator=g) for s in shapes] for _ in range(steps)]


def run_optimizer(make_opt, params, grads_per_step):
    opt = make_opt(params)
    for grads in grads_per_step:
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
    return params


# --- Newton–Schulz ------------------------------------------------------------------------------------

def test_singular_values_land_in_the_quintic_band():
    # 5 steps of the quintic map every s ∈ (0.0015, 1] into [0.682, 1.2024] (1.2024 = max of φ on [0, 1]);
    # a Gaussian 256×128 has s/‖G‖_F ∈ ≈[0.025, 0.15], and bf16 adds ~0.3 %.
    G = torch.randn(256, 128, generator=torch.Generator().manual_seed(0))
    s = torch.linalg.svdvals(muon.newton_schulz(G).float())
    assert 0.67 < s.min() and s.max() < 1.21
    s_in = torch.linalg.svdvals(G / G.norm())
    assert s_in.max() / s_in.min() > 4            # the input was far from orthogonal


def test_scalar_band_of_the_polynomial():
    x = torch.linspace(0.0016, 1.0, 100_001, dtype=torch.float64)
    y = muon.ns_polynomial(x, 5)
    assert 0.68 < y.min() < 0.69 and 1.20 < y.max() < 1.21
    assert muon.ns_polynomial(torch.tensor(1e-3, dtype=torch.float64), 5) < 0.5   # too small to get there


def test_batched_newton_schulz_equals_one_call_per_matrix():
    G = torch.randn(4, 96, 32)                    # tall slices: exercises the transpose
    batched = muon.newton_schulz(G)
    assert batched.shape == G.shape and batched.dtype == torch.bfloat16
    for e in range(4):
        assert torch.equal(batched[e], muon.newton_schulz(G[e]))


@needs_torch_muon
@pytest.mark.parametrize("shape", [(256, 128), (64, 200), (48, 48)])
def test_newton_schulz_matches_torch_bit_for_bit(shape):
    from torch.optim._muon import _zeropower_via_newtonschulz

    G = torch.randn(*shape)
    expected = _zeropower_via_newtonschulz(G, muon.NS_COEFFICIENTS, 5, muon.NS_EPS)
    assert torch.equal(muon.newton_schulz(G), expected)


# --- Muon vs torch.optim.Muon -------------------------------------------------------------------------

@needs_torch_muon
@pytest.mark.parametrize("adjust_lr_fn", [None, "match_rms_adamw"])
@pytest.mark.parametrize("nesterov", [True, False])
def test_matches_torch_muon_on_matrices(adjust_lr_fn, nesterov):
    shapes = [(96, 32), (32, 80), (8, 64)]
    init = [torch.randn(*s) for s in shapes]
    grads = random_grads(shapes, 10)
    kw = dict(lr=0.02, weight_decay=0.1, momentum=0.95, nesterov=nesterov, adjust_lr_fn=adjust_lr_fn)
    ours = run_optimizer(lambda ps: muon.Muon(ps, **kw), [p.clone() for p in init], grads)
    ref = run_optimizer(lambda ps: torch_muon(ps, **kw), [p.clone() for p in init], grads)
    for a, b, p0 in zip(ours, ref, init):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
        assert (a - p0).abs().max() > 0.01                                # it really moved


@needs_torch_muon
def test_stacked_group_matches_torch_muon_per_slice():
    E, A, B = 4, 96, 32
    init = torch.randn(E, A, B)
    grads = random_grads([(E, A, B)], 10)
    ours = run_optimizer(lambda ps: muon.Muon([{"params": ps, "stacked": True}], lr=0.02),
                         [init.clone()], grads)[0]
    slices = [init[e].clone() for e in range(E)]
    ref = run_optimizer(lambda ps: torch_muon(ps, lr=0.02), slices,
                        [[g[0][e] for e in range(E)] for g in grads])
    torch.testing.assert_close(ours, torch.stack(ref), rtol=0, atol=1e-6)
    assert (ours - init).abs().max() > 0.01       # it really moved


# --- each term of the update does what the docstring says ---------------------------------------------
# newton_schulz runs in bf16, so it is not exactly scale-invariant: the hand computations below use
# momentum 0 (the update is exactly NS(g)) or momentum 0.5 on bf16-valued gradients, where every
# momentum sum is exact in fp32 — so the expected numbers are bit-for-bit the optimizer's inputs.

def bf16_valued(*shape):
    return torch.randn(*shape).bfloat16().float()


def one_step(p0, grads, **kw):
    return run_optimizer(lambda ps: muon.Muon(ps, **kw), [p0.clone()], [[g] for g in grads])[0]


def test_weight_decay_is_decoupled_and_uses_the_raw_lr():
    p0, g = torch.randn(64, 32), torch.randn(64, 32)
    lr, wd = 0.05, 0.3
    got = one_step(p0, [g], lr=lr, weight_decay=wd, momentum=0.0)
    O = muon.newton_schulz(g).float()
    expected = p0 * (1 - lr * wd) - lr * math.sqrt(64 / 32) * O          # decay with lr, not the adjusted lr
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-6)
    no_decay = one_step(p0, [g], lr=lr, weight_decay=0.0, momentum=0.0)
    torch.testing.assert_close(no_decay - got, p0 * lr * wd, rtol=0, atol=2e-6)


def test_nesterov_on_and_off_by_hand():
    p0, g1, g2 = torch.randn(32, 48), bf16_valued(32, 48), bf16_valued(32, 48)
    lr, mu = 0.01, 0.5
    ns = lambda u: muon.newton_schulz(u).float()
    # buf1 = (1−μ)·g1 = 0.5·g1;  buf2 = μ·buf1 + (1−μ)·g2 = 0.25·g1 + 0.5·g2
    # plain momentum steps along buf; Nesterov along (1−μ)·g + μ·buf: 0.75·g1, then 0.125·g1 + 0.75·g2
    plain = p0 - lr * ns(0.5 * g1) - lr * ns(0.25 * g1 + 0.5 * g2)
    nest = p0 - lr * ns(0.75 * g1) - lr * ns(0.125 * g1 + 0.75 * g2)
    kw = dict(lr=lr, momentum=mu, weight_decay=0.0)
    got_plain = one_step(p0, [g1, g2], nesterov=False, **kw)
    got_nest = one_step(p0, [g1, g2], nesterov=True, **kw)
    torch.testing.assert_close(got_plain, plain, rtol=0, atol=2e-6)
    torch.testing.assert_close(got_nest, nest, rtol=0, atol=2e-6)
    assert (got_plain - got_nest).abs().max() > 1e-3                        # they really differ


@pytest.mark.parametrize("shape, adjust_lr_fn, factor", [
    ((128, 32), None, 2.0),                              # original: sqrt(128/32)
    ((32, 128), "original", 1.0),                        # wide: no boost
    ((128, 32), "match_rms_adamw", 0.2 * math.sqrt(128)),
])
def test_lr_adjustment_scales_the_step(shape, adjust_lr_fn, factor):
    p0, g = torch.randn(*shape), torch.randn(*shape)
    got = one_step(p0, [g], lr=0.01, weight_decay=0.0, momentum=0.0, adjust_lr_fn=adjust_lr_fn)
    expected = p0 - 0.01 * factor * muon.newton_schulz(g).float()
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-6)


def test_stacked_slices_get_the_lr_of_one_slice():
    p0, g = torch.randn(3, 128, 32), torch.randn(3, 128, 32)
    opt = lambda ps: muon.Muon([{"params": ps, "stacked": True}], lr=0.01, weight_decay=0.0, momentum=0.0)
    got = run_optimizer(opt, [p0.clone()], [[g]])[0]
    expected = p0 - 0.01 * 2.0 * muon.newton_schulz(g).float()            # sqrt(128/32), not the 3-D shape
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-6)
    s = torch.linalg.svdvals((p0 - got)[1])                                 # each slice orthogonalised alone
    assert 0.67 < s.min() / 0.02 and s.max() / 0.02 < 1.21


# --- clear errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, match", [
    ((768,), "1-D parameter .* AdamW"),
    ((8, 64, 32), "stacked=True"),
    ((768, 1, 3), "stacked=True.*conv filter.*AdamW"),
])
def test_non_matrix_parameters_are_refused_with_advice(shape, match):
    with pytest.raises(ValueError, match=match):
        muon.Muon([torch.nn.Parameter(torch.zeros(shape))])


def test_stacked_group_refuses_plain_matrices():
    with pytest.raises(ValueError, match="3-D stacks"):
        muon.Muon([{"params": [torch.nn.Parameter(torch.zeros(8, 8))], "stacked": True}])


def test_add_param_group_is_checked_too():
    opt = muon.Muon([torch.nn.Parameter(torch.zeros(4, 4))])
    with pytest.raises(ValueError, match="AdamW"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(4))]})


# --- linnet's split on the real depth-12 model ---------------------------------------------------------

@pytest.fixture(scope="module")
def linnet_meta():
    with torch.device("meta"):
        return model_lib.LLM(model_lib.LLMConfig(depth=12))


def group_sizes(opt):
    params = [p for g in opt.param_groups for p in g["params"]]
    return len(params), sum(p.numel() for p in params)


def test_linnet_split_counts(linnet_meta):
    (muon_opt, adamw), table = muon.build_optimizers(linnet_meta)
    assert isinstance(muon_opt, muon.Muon) and isinstance(adamw, torch.optim.AdamW)
    L, C, V, E, Fd, kv = 12, 768, 32768, 8, 2048, 4 * 64
    per_layer_muon = (C + 2 * kv) * C + C * C + E * C + E * 2 * Fd * C + E * C * Fd
    assert group_sizes(muon_opt) == (5 * L, L * per_layer_muon) == (60, 471_932_928)
    assert group_sizes(adamw) == (2 + 3 * L, V * C + C + L * (C + C + 3 * C)) == (38, 25_212_672)
    stacked = [g for g in muon_opt.param_groups if g["stacked"]]
    assert len(stacked) == 1 and len(stacked[0]["params"]) == 2 * L
    # every parameter in exactly one group, the tied embedding once: 497,145,600 in all
    ids = [id(p) for opt in (muon_opt, adamw) for g in opt.param_groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(linnet_meta.parameters())) == len(table) == 98
    assert sum(math.prod(shape) for _, shape, _, _ in table) == 497_145_600
    rows = {name: (opt, lr) for name, _, opt, lr in table}
    assert rows["transformer.wte.weight"] == ("AdamW", 1e-3)
    assert rows["transformer.h.3.moe.router.weight"] == ("Muon", 1e-2)
    assert rows["transformer.h.3.attn.l_conv.weight"][0] == "AdamW"
    assert rows["transformer.h.3.moe.w_v"] == ("Muon", 1e-2)
    assert adamw.param_groups[0]["weight_decay"] == 0.1 and adamw.param_groups[0]["betas"] == (0.9, 0.999)
    assert all(g["initial_lr"] == g["lr"] for opt in (muon_opt, adamw) for g in opt.param_groups)


def test_router_on_adamw_moves_only_the_routers(linnet_meta):
    (muon_opt, adamw), table = muon.build_optimizers(linnet_meta, router_on_adamw=True, lr=2e-3)
    assert group_sizes(muon_opt) == (48, 471_932_928 - 12 * 8 * 768)
    assert group_sizes(adamw) == (50, 25_212_672 + 12 * 8 * 768)
    assert {lr for _, _, opt, lr in table if opt == "Muon"} == {2e-2}


def test_format_optimizer_table_folds_layers(linnet_meta):
    text = muon.format_optimizer_table(muon.build_optimizers(linnet_meta)[1])
    assert "transformer.h.*.moe.w_v" in text and "497,145,600" in text and "471,932,928" in text
    assert "transformer.h.5." not in text


def test_one_real_training_step_on_a_tiny_model():
    torch.manual_seed(0)
    model = model_lib.LLM(model_lib.LLMConfig(depth=1, block_size=16, vocab_size=64, n_experts=4))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizers, _ = muon.build_optimizers(model, lr=1e-2)
    x = torch.randint(0, 64, (2, 16))
    _, loss = model(x, x)
    loss.backward()
    for opt in optimizers:
        opt.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert {"transformer.h.0.moe.w_v", "transformer.h.0.attn.c_attn.weight", "transformer.wte.weight"} <= moved


# --- the whole lesson ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_tiny_preset_end_to_end(tmp_path):
    # one thread: on a shared 2-core machine, 2 OpenMP threads per process can be 5× slower
    proc = run_script("03_muon.py", "--preset", "tiny", "--out", str(tmp_path), "--steps", "30",
                      env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("ns_singular_values", "ns_polynomial", "muon_vs_adamw_curves", "muon_vs_adamw_lr"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000
    assert "497,145,600" in proc.stdout and "shakespeare.jsonl" in proc.stdout
    assert proc.stdout.count("held-out") >= 6


def test_quick_keeps_the_two_largest_lrs_at_half_the_steps():
    for name, preset in muon.PRESETS.items():
        q = muon.quick_preset(preset)
        assert q["lrs"] == preset["lrs"][-2:] and q["steps"] == preset["steps"] // 2, name
        assert {k: v for k, v in q.items() if k not in ("lrs", "steps")} == \
            {k: v for k, v in preset.items() if k not in ("lrs", "steps")}
    assert muon.parse_args(["--quick"]).quick and not muon.parse_args([]).quick


@pytest.mark.slow
def test_quick_race_still_shows_the_claim(tmp_path):
    """What notebooks/03_muon.ipynb runs: 2 lrs × 30 steps; Muon+AdamW must still end lower at each lr and
    AdamW alone must do worse at the largest lr than at the smaller one (it stalls)."""
    proc = run_script("03_muon.py", "--preset", "tiny", "--quick", "--out", str(tmp_path),
                      env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    held_out = {(m.group(1), float(m.group(2))): float(m.group(3)) for m in
                re.finditer(r"(AdamW only|Muon\+AdamW) +lr (\S+) .*held-out (\d+\.\d+)", proc.stdout)}
    assert sorted({lr for _, lr in held_out}) == [3e-3, 1e-2] and len(held_out) == 4
    for lr in (3e-3, 1e-2):
        assert held_out[("Muon+AdamW", lr)] < held_out[("AdamW only", lr)], proc.stdout
    assert held_out[("AdamW only", 1e-2)] > held_out[("AdamW only", 3e-3)], proc.stdout
    assert "30 steps" in proc.stdout and "ends lower at 2 of 2" in proc.stdout


def test_bad_steps_is_one_clear_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        muon.main(["--steps", "0"])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "--steps" in err and len(err.splitlines()) == 1


def test_docstring_examples():
    import doctest

    assert doctest.testmod(muon, optionflags=doctest.ELLIPSIS).failed == 0
    assert doctest.testmod(fast_muon, optionflags=doctest.ELLIPSIS).failed == 0


# --- the batched fast twin (fast/muon.py: one newton_schulz call per shape) against the plain loop -----

def linnet_like_training(batched, steps=10, dtype=torch.float32):
    """`steps` Muon steps (build_optimizers' groups) on a depth-3 MoE: 3 same-shaped c_attn, c_proj, routers
    and expert stacks each; fixed random gradients, so both paths see exactly the same inputs."""
    torch.manual_seed(0)
    model = model_lib.LLM(model_lib.LLMConfig(depth=3, block_size=16, vocab_size=64, n_embd=64, n_head=2,
                                              n_kv_head=1, head_dim=32, ffn_dim=96, n_experts=4)).to(dtype)
    (opt, _), _ = muon.build_optimizers(model, lr=2e-3, batched=batched)
    params = [p for g in opt.param_groups for p in g["params"]]
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in params:
            rows = torch.logspace(-2, 1, p.shape[0])[:, *[None] * (p.ndim - 1)]   # rows of very different scales
            p.grad = (torch.randn(p.shape, generator=g) * rows).to(dtype)
        opt.step()
    return model, opt, params


@pytest.mark.slow
def test_batched_muon_matches_reference():
    model, opt, fast = linnet_like_training(batched=True)
    _, ref_opt, plain = linnet_like_training(batched=False)
    shapes = [tuple(p.shape) for p in fast]
    assert len(shapes) == 15 and len(set(shapes)) == 5              # 5 shapes × 3 layers: really batched
    assert [len(s) for s in fast_muon.group_by_shape(fast)] == [3] * 5
    moved = max((p - q).abs().max().item() for p, q in
                zip(fast, linnet_like_training(batched=True, steps=0)[2]))
    assert moved > 0.05                                              # the weights really moved
    for p, q in zip(fast, plain):
        scale = q.abs().max().item()
        assert (p - q).abs().max().item() <= 1e-6 * scale, tuple(p.shape)
    assert opt.state_dict()["param_groups"] == ref_opt.state_dict()["param_groups"]
    for a, b in zip(opt.state_dict()["state"].values(), ref_opt.state_dict()["state"].values()):
        assert a.keys() == b.keys() == {"momentum_buffer"}
        torch.testing.assert_close(a["momentum_buffer"], b["momentum_buffer"], rtol=0, atol=0)


@pytest.mark.slow
def test_batched_muon_matches_reference_in_bf16():
    _, _, fast = linnet_like_training(batched=True, dtype=torch.bfloat16)
    _, _, plain = linnet_like_training(batched=False, dtype=torch.bfloat16)
    for p, q in zip(fast, plain):                                    # bf16 weights: ≤ 1 ulp apart (2⁻⁸)
        assert ((p.float() - q.float()).abs() <= 2**-8 * q.float().abs() + 1e-6).all(), tuple(p.shape)


def test_group_by_shape_splits_dtype_and_keeps_order():
    ps = [torch.empty(4, 2), torch.empty(4, 2, dtype=torch.bfloat16), torch.empty(3, 4, 2), torch.empty(4, 2)]
    assert fast_muon.group_by_shape(ps) == [[0, 3], [1], [2]]


@pytest.mark.slow
def test_a_checkpoint_of_the_plain_path_resumes_on_the_batched_one():
    """Same state_dict layout: state saved by batched=False loads into batched=True and continues alike."""
    _, plain_opt, plain = linnet_like_training(batched=False, steps=3)
    _, fast_opt, fast = linnet_like_training(batched=True, steps=0)
    with torch.no_grad():
        for p, q in zip(fast, plain):
            p.copy_(q)
    fast_opt.load_state_dict(copy.deepcopy(plain_opt.state_dict()))     # as torch.save/torch.load would
    g = torch.Generator().manual_seed(2)
    for p, q in zip(fast, plain):
        p.grad = q.grad = torch.randn(p.shape, generator=g)
    fast_opt.step()
    plain_opt.step()
    for p, q in zip(fast, plain):
        assert (p - q).abs().max().item() <= 1e-6 * q.abs().max().item()
