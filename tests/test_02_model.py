"""02_model: faithful to linnet (tests/data/original_reference.pt, checkpoint layout, counts), both MoE paths agree,
attention is causal GQA, generation with a cache equals generation without, bad input fails clearly."""
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from helpers import lesson, run_script

import house
from fast import moe
from house import checkpoints

m = lesson("02_model")

DOCS = Path(__file__).resolve().parents[1] / "docs"
ORIGINAL_REFERENCE = Path(__file__).resolve().parent / "data" / "original_reference.pt"
TINY = m.TINY_REFERENCE_SHAPE


@pytest.fixture(scope="module")
def reference():
    """Outputs of linnet's original model code (tests/data/README.md says how they were made): its config,
    its weights (bf16 values, loaded as fp32), a batch, the logits and both losses."""
    ref = torch.load(ORIGINAL_REFERENCE, weights_only=True)
    ref["config"] = {**ref["config"], **ref.pop("widths"), "head_dim": 32}
    ref["state_dict"] = {k: v.float() for k, v in ref["state_dict"].items()}
    return ref


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return m.LLM(m.LLMConfig(**{**TINY, **overrides}))


# --- faithful to the original code -----------------------------------------------------------------

@pytest.mark.parametrize("impl", ["reference", "grouped"])
def test_reproduces_original_outputs(reference, impl):
    model = m.LLM(m.LLMConfig(**reference["config"], moe_impl=impl))
    m.load_linnet_state_dict(model, reference["state_dict"])
    model.eval()
    logits, loss_eval = model(reference["idx"], reference["targets"])
    torch.testing.assert_close(logits, reference["logits"], atol=1e-5, rtol=0)
    assert abs(loss_eval.item() - reference["loss_eval"].item()) < 1e-5
    model.train()
    _, loss_train = model(reference["idx"], reference["targets"])
    assert abs(loss_train.item() - reference["loss_train"].item()) < 1e-5
    assert loss_train.item() > loss_eval.item()          # the balance term is only added in training


def test_derived_config_matches_published():
    keys = json.loads((DOCS / "checkpoint_keys.json").read_text())
    cfg = m.LLMConfig(12, 1024, 32768, 8, 2)              # the original positional constructor
    assert {k: getattr(cfg, k) for k in keys["config"]} == keys["config"]
    assert m.LLMConfig(depth=9).n_kv_head == 3 and m.LLMConfig(depth=4).n_kv_head == 2
    assert m.LLMConfig(depth=1).n_kv_head == 1
    assert m.LLMConfig(depth=2, vocab_size=500).vocab_size == 512
    assert m.LLMConfig.from_dict(cfg.to_dict()) == cfg


def test_counts_and_flops_match_model_card():
    cfg = m.LLMConfig(depth=12)
    p = m.count_parameters(cfg)
    assert (p["total"], p["active"]) == (497_145_600, 157_406_976)
    assert m.flops_per_token(cfg, 1024) == 1_057_688_064
    for config in (cfg, m.LLMConfig(**TINY)):
        with torch.device("meta"):
            model = m.LLM(config)
        assert sum(t.numel() for t in model.parameters()) == m.count_parameters(config)["total"]


def test_export_layout_equals_published_keys_and_shapes():
    keys = json.loads((DOCS / "checkpoint_keys.json").read_text())
    with torch.device("meta"):
        model = m.LLM(m.LLMConfig(depth=12, vocab_size=32768))
    exported = m.export_linnet_state_dict(model)
    assert [[k, list(v.shape)] for k, v in exported.items()] == keys["state_dict"]


def test_export_then_load_is_identical(reference):
    original = m.LLM(m.LLMConfig(**reference["config"]))
    m.load_linnet_state_dict(original, reference["state_dict"])
    exported = m.export_linnet_state_dict(original)
    assert exported.keys() == reference["state_dict"].keys()
    for k, v in reference["state_dict"].items():
        assert torch.equal(exported[k], v), k
    copy = m.LLM(m.LLMConfig(**reference["config"]))
    m.load_linnet_state_dict(copy, exported)
    for (k, a), b in zip(original.state_dict().items(), copy.state_dict().values()):
        assert torch.equal(a, b), k


def test_from_pretrained_reads_bf16_bin_and_safetensors_without_config(tmp_path):
    """linnet's own file: bf16, no config.json beside it; here also without the RoPE buffer (head_dim 64 assumed)."""
    from safetensors.torch import save_file

    idx = torch.tensor([[1, 5, 9, 200, 7, 3]])
    sd = {k: v.to(torch.bfloat16) for k, v in m.export_linnet_state_dict(tiny_model(seed=3)).items()
          if not k.endswith("inv_freq") and k != "lm_head.weight"}       # inv_freq absent, tie once
    torch.save(sd, tmp_path / "pytorch_model.bin")
    model = m.LLM.from_pretrained(tmp_path).eval()
    assert model.config.n_experts == 4 and model.config.n_layer == 2 and model.config.ffn_dim == 384
    logits, _ = model(idx)
    # bf16 rounding flips some router choices, so compare with the fp32 model holding the same rounded weights
    rounded = m.LLM(m.LLMConfig(**TINY)).eval()
    m.load_linnet_state_dict(rounded, {k: v.float() for k, v in sd.items()})
    torch.testing.assert_close(logits, rounded(idx)[0], atol=1e-6, rtol=0)
    assert model.lm_head.weight is model.transformer.wte.weight
    st = tmp_path / "st"
    st.mkdir()
    save_file({k: v.contiguous() for k, v in sd.items()}, st / "model.safetensors")
    torch.testing.assert_close(m.LLM.from_pretrained(st).eval()(idx)[0], logits)


# --- the pieces --------------------------------------------------------------------------------------

def test_token_shift_equals_causal_depthwise_conv():
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(8, 8, 3, groups=8, bias=False)
    x = torch.randn(2, 5, 8)
    expected = conv(F.pad(x.transpose(1, 2), (2, 0))).transpose(1, 2)
    torch.testing.assert_close(m.token_shift(x, conv.weight), expected)
    # with a cache: the last 3 positions, given the 2 inputs before them, are the same numbers
    torch.testing.assert_close(m.token_shift(x[:, 2:], conv.weight, history=x[:, :2]), expected[:, 2:])


@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
def test_attention_equals_plain_multi_head_attention(n_kv_head):
    """n_kv_head == n_head is plain MHA; fewer KV heads = each serves consecutive query heads."""
    torch.manual_seed(0)
    cfg = m.LLMConfig(depth=4, n_kv_head=n_kv_head)
    attn = m.CausalSelfAttention(cfg)
    x = torch.randn(2, 10, cfg.n_embd)
    B, T, C, H, hd = 2, 10, cfg.n_embd, cfg.n_head, 64
    # plain attention, written out by hand
    xs = F.conv1d(F.pad(x.transpose(1, 2), (2, 0)), attn.l_conv.weight, groups=C).transpose(1, 2)
    q, k, v = (xs @ attn.c_attn.weight.T).split([C, n_kv_head * hd, n_kv_head * hd], -1)
    q, k, v = (t.view(B, T, -1, hd).transpose(1, 2) for t in (q, k, v))
    k, v = (t.repeat_interleave(H // n_kv_head, dim=1) for t in (k, v))
    inv_freq = 1 / 50000 ** (torch.arange(0, hd, 2) / hd)
    ang = torch.arange(T)[:, None] * inv_freq
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
    rot = lambda t: t * cos + torch.cat([-t[..., hd // 2:], t[..., :hd // 2]], -1) * sin  # noqa: E731
    q, k = F.layer_norm(rot(q), (hd,), eps=1e-5), F.layer_norm(rot(k), (hd,), eps=1e-5)
    scores = (q @ k.transpose(-2, -1)) / 8.0
    scores = scores.masked_fill(torch.ones(T, T).triu(1).bool(), float("-inf"))
    y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C) @ attn.c_proj.weight.T
    torch.testing.assert_close(attn(x), y, atol=1e-5, rtol=1e-5)


def test_model_is_causal():
    model = tiny_model().eval()
    idx = torch.randint(0, 512, (1, 20))
    changed = idx.clone()
    changed[0, 12:] = (changed[0, 12:] + 1) % 512
    a, b = model(idx)[0], model(changed)[0]
    torch.testing.assert_close(a[:, :12], b[:, :12], atol=1e-6, rtol=0)
    assert (a[:, 12:] - b[:, 12:]).abs().max() > 1e-3


@pytest.mark.parametrize("impl", ["reference", "grouped"])
def test_one_expert_top1_is_a_dense_swiglu_mlp(impl):
    torch.manual_seed(0)
    moe = m.MoE(m.LLMConfig(depth=2, n_experts=1, n_active_experts=1, moe_impl=impl))
    torch.nn.init.normal_(moe.w_v, std=0.05)
    torch.nn.init.normal_(moe.c_proj, std=0.05)
    x = torch.randn(2, 7, 128)
    gate, value = (x @ moe.w_v[0].T).chunk(2, -1)
    dense = (F.silu(gate) * value) @ moe.c_proj[0].T
    y, router = moe(x)
    torch.testing.assert_close(y, dense, atol=1e-5, rtol=1e-5)
    assert router["balance"].item() == pytest.approx(1.0)


def test_moe_grouped_matches_reference():
    """moe_grouped (the fast path) and moe_reference (the loop), chosen by LLMConfig.moe_impl, agree on the
    model's outputs, loss and every gradient."""
    results = []
    for impl in ("reference", "grouped"):
        model = tiny_model(seed=3, moe_impl=impl).train()
        idx = torch.randint(0, 512, (2, 33), generator=torch.Generator().manual_seed(0))
        logits, loss = model(idx[:, :-1], idx[:, 1:])
        loss.backward()
        results.append((logits, loss, {n: p.grad for n, p in model.named_parameters()}))
    (la, lossa, ga), (lb, lossb, gb) = results
    torch.testing.assert_close(la, lb, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lossa, lossb, atol=1e-6, rtol=0)
    for name in ga:
        torch.testing.assert_close(ga[name], gb[name], atol=1e-6, rtol=1e-4, msg=name)


def test_casting_experts_once_per_step_gives_identical_gradients():
    """cast_expert_weights (bf16 expert weights made once, passed to every micro-step) changes no number:
    two bf16 micro-steps accumulate bit-identical fp32 gradients with and without it."""
    idx = torch.randint(0, 512, (2, 2, 33), generator=torch.Generator().manual_seed(1))
    grads = []
    for once in (False, True):
        model = tiny_model(seed=4, moe_impl="grouped").train()
        expert_weights = moe.cast_expert_weights(model) if once else None
        if once:
            assert len(expert_weights) == model.config.n_layer
            assert all(w.dtype == torch.bfloat16 and w.requires_grad for pair in expert_weights for w in pair)
        for micro in idx:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                _, loss = model(micro[:, :-1], micro[:, 1:], expert_weights=expert_weights)
            (loss / 2).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name in grads[0]:
        assert grads[0][name].dtype == torch.float32
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=0, atol=0, msg=name)


def rope_cos_sin_reference(inv_freq, T, offset=0):
    """The angles computed every time, in fp32: cos, sin of pos·inv_freq[i] for positions offset..offset+T-1."""
    pos = torch.arange(offset, offset + T, dtype=torch.float32)
    freqs = pos[:, None] * inv_freq.float()[None, :]                       # (T, hd/2)
    emb = torch.cat([freqs, freqs], dim=-1)                                # (T, hd): pairs i and i+hd/2
    return emb.cos(), emb.sin()


def test_rope_tables_equal_computing_the_angles():
    """RoPE reads cos/sin from tables made once; they equal computing the angles every time, at every
    offset, are never saved, and a position past the table is a clear error."""
    rotary = m.RotaryEmbedding(head_dim=8, base=50000.0, max_len=16)
    for offset in range(16):
        for T in range(1, 17 - offset):
            for table, angles in zip(rotary(T, offset), rope_cos_sin_reference(rotary.inv_freq, T, offset)):
                torch.testing.assert_close(table, angles, rtol=0, atol=0)
    assert set(rotary.state_dict()) == {"inv_freq"}                        # tables are derived, never saved
    with pytest.raises(ValueError, match="RoPE tables hold 16"):
        rotary(4, offset=14)


def test_rope_tables_follow_a_loaded_inv_freq(reference):
    """A linnet checkpoint may ship inv_freq rounded to bf16: after load_linnet_state_dict the tables are
    those of the loaded inv_freq, not of the one computed at init."""
    sd = {k: v.to(torch.bfloat16).float() if k.endswith("inv_freq") else v for k, v in reference["state_dict"].items()}
    model = m.LLM(m.LLMConfig(**reference["config"]))
    m.load_linnet_state_dict(model, sd)
    T = model.config.block_size
    for block in model.transformer.h:
        rotary = block.attn.rotary_emb
        assert not torch.equal(rotary.inv_freq, m.RotaryEmbedding(64, 50000.0).inv_freq)   # it was rounded
        for table, angles in zip(rotary(T), rope_cos_sin_reference(rotary.inv_freq, T)):
            torch.testing.assert_close(table, angles, rtol=0, atol=0)


def test_moe_forward_routes_with_route_and_balance_loss():
    """MoE.forward's router decisions are route()'s and its balance is balance_loss()'s (exercises/check.py
    checks the router exercises against those two functions): with n_embd = E and an identity router, the
    input IS the logits."""
    E, logits = 8, 3 * torch.randn(1, 40, 8, generator=torch.Generator().manual_seed(0))
    moe = m.MoE(m.LLMConfig(depth=1, head_dim=E, n_experts=E, n_active_experts=2))
    with torch.no_grad():
        moe.router.weight.copy_(torch.eye(E))
    _, stats = moe(logits)
    probs, _, top_e = m.route(logits[0], 2)
    assert stats["tokens_per_expert"].tolist() == torch.bincount(top_e.flatten(), minlength=E).float().tolist()
    torch.testing.assert_close(stats["balance"], m.balance_loss(probs), rtol=0, atol=0)


@pytest.mark.parametrize("impl", ["reference", "grouped"])
def test_unused_experts_get_zero_gradients(impl):
    torch.manual_seed(0)
    moe = m.MoE(m.LLMConfig(depth=2, n_experts=4, moe_impl=impl))
    torch.nn.init.normal_(moe.w_v, std=0.05)
    torch.nn.init.normal_(moe.c_proj, std=0.05)
    with torch.no_grad():   # positive inputs + these router rows: experts 0 and 1 always win
        moe.router.weight.copy_(torch.tensor([1.0, 0.9, -1.0, -0.5])[:, None].expand(4, 128))
    x = torch.rand(3, 5, 128) + 0.1
    y, router = moe(x)
    (y ** 2).sum().backward()
    assert router["tokens_per_expert"].tolist() == [15.0, 15.0, 0.0, 0.0]
    for grad in (moe.w_v.grad, moe.c_proj.grad):
        assert grad is not None and torch.all(grad[2:] == 0) and grad[:2].abs().sum() > 0


def test_router_stats_after_forward():
    model = tiny_model()
    idx = torch.randint(0, 512, (2, 16))
    model(idx)
    s = model.router_stats
    assert s["tokens_per_expert"].shape == (2, 4) and s["mean_prob"].shape == (2, 4) and s["entropy"].shape == (2,)
    assert s["tokens_per_expert"].sum(1).tolist() == [64.0, 64.0]      # 32 tokens × top-2
    torch.testing.assert_close(s["mean_prob"].sum(1), torch.ones(2))
    assert all(0 < e <= math.log(4) for e in s["entropy"].tolist())
    assert not any(t.requires_grad for t in s.values())


@pytest.mark.slow
def test_compiles_as_one_graph_in_bf16():
    """fullgraph=True fails on any graph break (a host sync, .item(), data-dependent shape).
    aot_eager traces exactly what inductor would get, without the minutes of CPU code generation."""
    model = tiny_model(moe_impl="grouped").train()
    idx = torch.randint(0, 512, (2, 32))
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, loss = compiled(idx, idx)
        _, eager_loss = model(idx, idx)
    loss.backward()
    assert abs(loss.item() - eager_loss.item()) < 1e-3
    assert model.transformer.h[0].moe.w_v.grad is not None
    assert model.router_stats["tokens_per_expert"].sum().item() == 2 * 32 * 2 * 2
    with torch.autocast("cpu", dtype=torch.bfloat16):                   # 05's GPU step: experts cast once
        _, cast_loss = compiled(idx, idx, expert_weights=moe.cast_expert_weights(model))
    assert abs(cast_loss.item() - eager_loss.item()) < 1e-3


# --- generation ------------------------------------------------------------------------------------------

class ByteEncoder:
    def encode(self, text):
        return list(text.encode("utf-8"))

    def decode(self, ids):
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


@pytest.mark.parametrize("temperature,seed", [(0.0, None), (1.0, 7)])
def test_cached_generation_equals_uncached(temperature, seed):
    model = tiny_model(block_size=16)
    prompt = list(range(40, 50))
    kwargs = dict(max_new_tokens=12, temperature=temperature, top_k=20, seed=seed)   # crosses block_size
    cached = model.generate(prompt, use_cache=True, **kwargs)
    uncached = model.generate(prompt, use_cache=False, **kwargs)
    assert cached == uncached and len(cached) == 22 and cached[:10] == prompt


def test_generate_text_with_an_encoder():
    text = tiny_model().generate("Hello!", enc=ByteEncoder(), max_new_tokens=5, temperature=0)
    assert isinstance(text, str) and text.startswith("Hello!")


# --- bad input -------------------------------------------------------------------------------------------

def test_sequence_longer_than_block_size_is_a_clear_error():
    with pytest.raises(ValueError, match="longer than block_size 64"):
        tiny_model()(torch.zeros(1, 65, dtype=torch.long))


def test_token_id_outside_vocab_is_a_clear_error():
    with pytest.raises(ValueError, match="token id 512 is outside the vocabulary"):
        tiny_model()(torch.tensor([[1, 2, 512]]))


def test_wrong_shaped_checkpoint_names_the_tensor(reference):
    sd = dict(reference["state_dict"])
    sd["transformer.h.1.attn.c_proj.weight"] = torch.zeros(128, 64)
    with pytest.raises(house.UserError, match=r"transformer.h.1.attn.c_proj.weight has shape \[128, 64\]"):
        m.load_linnet_state_dict(m.LLM(m.LLMConfig(**reference["config"])), sd)


def test_checkpoint_with_other_depth_or_experts_says_so(reference):
    with pytest.raises(house.UserError, match="2 layers .* n_layer=3"):
        m.load_linnet_state_dict(tiny_model(depth=3), reference["state_dict"])
    with pytest.raises(house.UserError, match=r"experts \[0, 1, 2, 3\] but the model has n_experts=8"):
        m.load_linnet_state_dict(tiny_model(n_experts=8), reference["state_dict"])


def test_missing_checkpoint_file_says_what_to_pass(tmp_path):
    """Library code raises what a caller can catch: a missing path is a FileNotFoundError (house.NotFound)."""
    with pytest.raises(FileNotFoundError, match="does not exist"):
        m.LLM.from_pretrained(tmp_path / "nope.bin")
    with pytest.raises(FileNotFoundError, match="no pytorch_model.bin"):
        m.LLM.from_pretrained(tmp_path)
    try:
        m.LLM.from_pretrained("/nonexistent")
    except Exception as caught:                                          # not SystemExit: a notebook survives it
        assert isinstance(caught, house.UserError)


# --- the script, end to end ---------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("preset", ["tiny", "linnet"])
def test_script_runs_end_to_end(tmp_path, preset):
    proc = run_script("02_model.py", "--preset", preset, "--out", str(tmp_path), timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("param_budget", "rope_frequencies", "attention_map", "router_load", "rope_bases", "qk_norm_logits"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000
        assert f"plot: {tmp_path / name}.png — " in proc.stdout
    if preset == "linnet":
        assert "497,145,600" in proc.stdout and "157,406,976" in proc.stdout and "1,057,688,064" in proc.stdout


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny: one thread is faster than several fighting over a busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- Saving in linnet's published layout; loading a file without config.json (robustness) ---------------

def test_export_without_config_reads_head_dim_from_rope_buffer(tmp_path, capsys):
    """save_pytorch_model_bin keeps the tied pair as one tensor under both names; from_pretrained without
    config.json takes head_dim 32 from inv_freq (it used to assume 64 and die with ZeroDivisionError) and says
    on stderr that block_size is assumed."""
    torch.manual_seed(0)
    model = m.LLM(m.LLMConfig(block_size=64, vocab_size=320, **m.TINY_TRAINING_SHAPE)).eval()
    path = checkpoints.save_pytorch_model_bin(m.export_linnet_state_dict(model), tmp_path / "pytorch_model.bin")
    sd = torch.load(path, weights_only=True)
    assert sd["lm_head.weight"].data_ptr() == sd["transformer.wte.weight"].data_ptr()
    loaded = m.LLM.from_pretrained(path).eval()
    assert (loaded.config.head_dim, loaded.config.n_head, loaded.config.n_kv_head) == (32, 2, 1)
    assert "has no config.json: shapes read from the weights, block_size 1024 (linnet's) assumed" in capsys.readouterr().err
    idx = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.equal(loaded(idx)[0], model(idx)[0])
    no_rope = {k: v for k, v in sd.items() if not k.endswith("inv_freq")}
    with pytest.raises(house.UserError, match="shapes don't fit head_dim 64 .*put linnet's config.json beside it"):
        checkpoints.config_from_shapes(no_rope, path="bare.bin")


def exported_folder(tmp_path, record_config=False, **config_changes):
    """A tiny model saved as an export folder (pytorch_model.bin + config.json), config.json edited;
    `record_config`: the weights file also keeps the true config (what --export writes)."""
    torch.manual_seed(0)
    config = m.LLMConfig(block_size=64, vocab_size=320, **m.TINY_TRAINING_SHAPE)
    model = m.LLM(config).eval()
    checkpoints.save_pytorch_model_bin(m.export_linnet_state_dict(model), tmp_path / "pytorch_model.bin",
                                       config.to_dict() if record_config else None)
    claims = {k: v for k, v in config.to_dict().items() if k not in ("moe_impl", "rope_impl", "loss_impl")}
    (tmp_path / "config.json").write_text(json.dumps({**claims, **config_changes}))
    return tmp_path, model


@pytest.mark.parametrize("change, message", [
    (dict(n_embd=128, n_head=4), r"says n_embd = 128 but the weights have 64"),
    (dict(head_dim=16, n_head=4), r"says head_dim = 16 but the weights have 32"),
    (dict(n_kv_head=2), r"says q\|k\|v rows .* = 192 but the weights have 128"),
    (dict(n_experts=8), r"says n_experts = 8 but the weights have 4"),
    (dict(depth=3, n_layer=3), r"says n_layer = 3 but the weights have 2"),
    (dict(ffn_dim=256), r"says ffn_dim = 256 but the weights have 128"),
    (dict(rope_scaling=2.0), r"keys a linnet config does not have \(rope_scaling\)"),
    (dict(n_active_experts=2.5), r"wrong type \(n_active_experts = 2.5\)"),
    (dict(qk_norm="yes"), r"wrong type \(qk_norm = 'yes'\)"),
    (dict(n_active_experts=9), r"does not describe a linnet model \(n_active_experts must be in 1..n_experts"),
    (dict(model_type="llama"), r"is the config of a 'llama' model, not linnet"),
])
def test_config_json_claims_are_checked_against_the_weights(tmp_path, change, message):
    folder, _ = exported_folder(tmp_path, **change)
    with pytest.raises(house.UserError, match=message):
        m.LLM.from_pretrained(folder)


def test_a_truthful_config_json_loads_and_says_whether_linnets_own_code_can(tmp_path):
    card = dict(model_type="linnet", architectures=["LLM"], attention="GQA+QKNorm+FlashAttention",
                torch_dtype="bfloat16", pipeline_tag="text-generation")     # words linnet's config.json has too
    folder, model = exported_folder(tmp_path, **card)
    loaded = m.LLM.from_pretrained(folder).eval()
    assert loaded.config.block_size == 64                      # from config.json (no weight shows it)
    idx = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.equal(loaded(idx)[0], model(idx)[0])
    assert "cannot build this shape" in m.original_code_line(loaded.config)
    assert m.original_code_line(m.LLMConfig(depth=2, block_size=64, vocab_size=512, n_experts=4)).endswith(
        "LLM(LLMConfig(depth=2, block_size=64, vocab_size=512, n_experts=4, n_active_experts=2)) + load_state_dict")
    assert "cannot" in m.original_code_line(m.LLMConfig(depth=2, x0_mix=True))


def test_infer_config_of_linnet_shapes_is_the_published_config():
    """The meta-device linnet model's state_dict → config_from_shapes gives back depth 12's config (head_dim 64)."""
    with torch.device("meta"):
        model = m.LLM(m.LLMConfig(depth=12))
    inferred = m.LLMConfig(**checkpoints.config_from_shapes(m.export_linnet_state_dict(model)))
    assert inferred.to_dict() == m.LLMConfig(depth=12).to_dict()


# --- section 8: why each choice, measured ----------------------------------------------------------

def test_why_numbers_at_linnet_shapes():
    linnet = m.LLMConfig(depth=12)
    gqa, mha = m.kv_cache_bytes(linnet, 1024), m.kv_cache_bytes(m.LLMConfig(depth=12, n_kv_head=12), 1024)
    assert (gqa, mha, mha / gqa) == (12_582_912, 37_748_736, 3.0)
    assert m.kv_cache_bytes(linnet, 1024, batch=4, dtype_bytes=4) == 4 * 2 * gqa
    assert m.tied_embedding_savings(linnet) == 32768 * 768 == 25_165_824
    r = m.moe_vs_dense(linnet, 1024)
    assert (r["total"], r["active"], r["flops_moe"], r["flops_dense"]) == (497_145_600, 157_406_976,
                                                                         1_057_688_064, 3_096_119_808)


def test_rope_offset_similarity_favours_the_larger_base_far_away():
    slow, fast = m.rope_offset_similarity(50000.0), m.rope_offset_similarity(10000.0)
    assert slow.shape == (1024,) and slow[0].item() == pytest.approx(1.0)
    assert slow[512:].mean() > fast[512:].mean() + 0.05


def test_qk_norm_true_is_linnet_and_false_changes_outputs(reference):
    assert m.LLMConfig().qk_norm is True
    with_norm = m.LLM(m.LLMConfig(**reference["config"])).eval()
    without = m.LLM(m.LLMConfig(**reference["config"], qk_norm=False)).eval()
    assert with_norm.state_dict().keys() == without.state_dict().keys()        # no weights, no checkpoint keys
    m.load_linnet_state_dict(with_norm, reference["state_dict"])
    m.load_linnet_state_dict(without, reference["state_dict"])
    torch.testing.assert_close(with_norm(reference["idx"])[0], reference["logits"], atol=1e-5, rtol=0)
    assert (without(reference["idx"])[0] - reference["logits"]).abs().max() > 1e-2


def test_qk_norm_caps_the_attention_logit():
    idx = torch.randint(0, 256, (2, 64), generator=torch.Generator().manual_seed(0))
    model = tiny_model()
    model.transformer.h[0].attn.c_attn.weight.data.mul_(50)                     # huge q and k
    assert m.max_attention_logit(model, idx) <= math.sqrt(model.config.head_dim) + 1e-3
    unnormed = tiny_model(qk_norm=False)
    unnormed.load_state_dict(model.state_dict())
    assert m.max_attention_logit(unnormed, idx) > 10 * math.sqrt(model.config.head_dim)


@pytest.fixture(scope="module")
def short_runs():
    data = torch.tensor(list(Path(m.__file__).read_bytes()[:50_000]), dtype=torch.long)   # real text, no corpus needed
    return {qk: m.train_tiny(steps=40, data=data, track_logits=True, qk_norm=qk) for qk in (True, False)}


@pytest.mark.slow
def test_train_tiny_lowers_the_loss_and_tracks_logits(short_runs):
    model, h = short_runs[True]
    assert len(h["loss"]) == len(h["max_logit"]) == 40 and not model.training
    assert sum(h["loss"][-5:]) / 5 < h["loss"][0] - 1.0                         # starts near ln 256 = 5.5
    _, h_off = short_runs[False]
    assert h_off["max_logit"][-1] > 5 * h_off["max_logit"][0]                   # no QK-norm: logits grow
    assert max(h["max_logit"]) <= math.sqrt(m.TINY_LESSON_SHAPE["head_dim"]) + 1e-3


def test_new_plots_return_figures(short_runs):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trained, _ = short_runs[True]
    random_init, _ = m.train_tiny(steps=0)
    models = {"random init": random_init, "trained": trained}
    batch = m.real_text_batch(trained, n=2)
    stats = {}
    for label, model in models.items():
        model(batch)
        stats[label] = model.router_stats
    figures = [m.plot_rope_bases(), m.plot_qk_norm_logits({str(k): h for k, (_, h) in short_runs.items()}),
               m.plot_attention_map(models, m.SAMPLE_TEXT), m.plot_router_load(stats, trained.config, batch.numel())]
    for fig in figures:
        assert isinstance(fig, matplotlib.figure.Figure)
        plt.close(fig)
    assert len(figures[2].axes) == 4 and len(figures[3].axes) == 4              # two panels, each with a colour bar



@pytest.mark.parametrize("change, message", [
    (dict(n_active_experts=1), r"says n_active_experts = 1 but the weights have 2"),
    (dict(qk_norm=False), r"says qk_norm = False but the weights have True"),
    (dict(block_size=1024), r"says block_size = 1024 but the weights have 64"),
    (dict(x0_mix=True), r"says x0_mix = True but the weights have False"),
])
def test_config_json_claims_without_a_weight_are_checked_against_the_exports_own_record(tmp_path, change, message):
    """An export keeps its config inside pytorch_model.bin (saved_config): the fields no tensor shows are checked
    against it, and a folder that lost its config.json loads with the right block_size."""
    folder, model = exported_folder(tmp_path, record_config=True, **change)
    with pytest.raises(house.UserError, match=message):
        m.LLM.from_pretrained(folder)
    (folder / "config.json").unlink()
    loaded = m.LLM.from_pretrained(folder).eval()
    assert loaded.config.block_size == 64 and loaded.config.to_dict() == {**model.config.to_dict(), "moe_impl": "auto"}
    record = torch.load(folder / "pytorch_model.bin", weights_only=True)
    assert checkpoints.saved_config(record)["block_size"] == 64 and list(record) == list(m.export_linnet_state_dict(model))
