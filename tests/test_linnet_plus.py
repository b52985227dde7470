"""linnet+ (02's switches, plain `if`s in one model class; 05's switches, bench/linnet_plus.py): every switch is off in linnet, each does what
it says, a linnet+ checkpoint round-trips, and BENCHMARKS.md's headline follows from the raw results."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers import REPO_DIR, lesson

from fast import hellaswag as hellaswag_fast
from house import checkpoints

model_lib = lesson("02_model")
train_lib = lesson("05_train")
TINY = {**model_lib.TINY_TRAINING_SHAPE, "vocab_size": 512, "block_size": 32}


def test_linnet_has_no_switch_on_and_builds_the_plain_model():
    linnet = model_lib.LLMConfig()
    assert not (linnet.zero_init_out or linnet.x0_mix or linnet.logit_softcap)
    assert type(model_lib.LLM(model_lib.LLMConfig(**TINY))) is model_lib.LLM
    for preset in ("linnet", "tiny"):
        cfg = train_lib.PRESETS[preset]
        assert not (cfg.model.zero_init_out or cfg.model.x0_mix or cfg.model.logit_softcap or cfg.muon_momentum_warmup
                    or cfg.router_on_adamw) and cfg.decay_shape == "cosine"


def test_plus_presets_are_linnet_with_the_measured_recipe():
    for name in ("linnet", "tiny"):
        plus = train_lib.PRESETS[f"{name}-plus"]
        assert plus.size == name
        recipe = {**train_lib.PLUS_MODEL, **train_lib.PLUS_TRAINING}
        fields = train_lib.flat_fields(plus)               # the training fields and the model's, in one dict
        assert {k: fields[k] for k in recipe} == recipe
        base = train_lib.flat_fields(train_lib.PRESETS[name])
        assert {k: v for k, v in fields.items() if k not in recipe and k != "preset"} == \
            {k: v for k, v in base.items() if k not in recipe and k != "preset"}


def test_x0_mix_starts_as_linnets_block_and_zero_init_zeroes_the_outputs():
    torch.manual_seed(0)
    plain = model_lib.LLM(model_lib.LLMConfig(**TINY))
    plus = model_lib.LLM(model_lib.LLMConfig(**TINY, x0_mix=True))
    assert type(plus) is model_lib.LLM and plus.transformer.h[0].x0_lambdas is not None   # one class, a plain if
    plus.load_state_dict({**plain.state_dict(), **{k: v for k, v in plus.state_dict().items() if "x0_lambdas" in k}})
    idx = torch.randint(0, 512, (2, 16))
    assert torch.equal(plus(idx)[0], plain(idx)[0])            # a = 1, b = 0: the same function at the start
    zero = model_lib.LLM(model_lib.LLMConfig(**TINY, zero_init_out=True))
    assert all(b.attn.c_proj.weight.abs().sum() == 0 and b.moe.c_proj.abs().sum() == 0 for b in zero.transformer.h)
    x, _ = zero.hidden(idx)
    assert torch.allclose(x, zero.transformer.ln_f(zero.transformer.wte(idx)), atol=1e-6)   # blocks = identity


def test_softcap_bounds_the_logits_and_the_scorer_uses_it():
    capped = model_lib.LLM(model_lib.LLMConfig(**TINY, logit_softcap=2.0))
    with torch.no_grad():
        capped.lm_head.weight.mul_(100)
    idx = torch.randint(0, 512, (1, 16))
    logits, _ = capped(idx)
    assert logits.abs().max() <= 2.0 and (logits.abs() > 1.9).any()    # squashed into [-2, 2], and it bites
    eval_lib = lesson("06_eval")
    positions = torch.tensor([3, 7])
    assert torch.allclose(eval_lib.continuation_logits(capped, idx, positions), logits[0, positions], atol=1e-5)


def test_a_plus_checkpoint_round_trips_through_the_export_layout():
    model = model_lib.LLM(model_lib.LLMConfig(**TINY, x0_mix=True, logit_softcap=15.0))
    with torch.no_grad():
        for block in model.transformer.h:
            block.x0_lambdas.copy_(torch.tensor([0.7, 0.3]))
    sd = model_lib.export_linnet_state_dict(model)
    assert "transformer.h.0.x0_lambdas" in sd
    again = model_lib.LLM(model_lib.LLMConfig.from_dict(model.config.to_dict()))
    model_lib.load_linnet_state_dict(again, sd)
    idx = torch.randint(0, 512, (2, 8))
    assert torch.equal(again(idx)[0], model(idx)[0])


@pytest.mark.parametrize("shape,mid", [("cosine", 0.5), ("linear", 0.5), ("1-sqrt", 1 - math.sqrt(0.5))])
def test_decay_shapes(shape, mid):
    cfg = train_lib.TrainConfig(planned_steps=101, warmup_frac=0.0, decay_start_frac=0.0, lr=1.0, min_lr=0.0,
                                decay_shape=shape)
    assert train_lib.lr_multiplier(0, cfg) == pytest.approx(1.0)
    assert train_lib.lr_multiplier(50, cfg) == pytest.approx(mid)
    assert train_lib.lr_multiplier(100, cfg) == pytest.approx(0.0, abs=1e-12)


def test_momentum_warmup_goes_from_085_to_095_over_300_steps():
    model = model_lib.LLM(model_lib.LLMConfig(**TINY))
    cfg = train_lib.dataclasses.replace(train_lib.PRESETS["tiny"], muon_momentum_warmup=True)
    optimizers, _ = lesson("03_muon").build_optimizers(model)
    momentum = lambda: optimizers[0].param_groups[0]["momentum"]
    train_lib.apply_schedule(optimizers, 0, cfg)
    assert momentum() == pytest.approx(0.85)
    train_lib.apply_schedule(optimizers, 150, cfg)
    assert momentum() == pytest.approx(0.90)
    train_lib.apply_schedule(optimizers, 1000, cfg)
    assert momentum() == pytest.approx(0.95)


def test_plus_flags_land_in_the_train_config():
    args = train_lib.parse_args(["--preset", "tiny", "--x0-mix", "--logit-softcap", "15", "--decay-shape", "linear",
                                 "--out", "/tmp/never-written"])
    cfg, _ = train_lib.configs_from_args(args)
    assert cfg.model.x0_mix and cfg.model.logit_softcap == 15.0 and cfg.decay_shape == "linear" and not cfg.model.zero_init_out


@pytest.mark.slow
def test_benchmarks_headline_follows_from_the_raw_results():
    """BENCHMARKS.md's linnet+ line is what bench/linnet_plus.py computes from bench/results/linnet_plus/*.json."""
    results = sorted((REPO_DIR / "bench" / "results" / "linnet_plus").glob("*.json"))
    out = subprocess.run([sys.executable, "bench/linnet_plus.py", "table", "--from", *map(str, results)], cwd=REPO_DIR,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    line = next(l for l in out.stdout.splitlines() if l.startswith("tokens to reach the baseline's validation loss"))
    assert line in (REPO_DIR / "BENCHMARKS.md").read_text()
    assert out.stdout.strip() == (REPO_DIR / "bench" / "results" / "linnet_plus" / "tables.md").read_text().strip()


def test_every_consumer_of_the_model_works_with_every_linnet_plus_switch_on(tmp_path, monkeypatch):
    """One model class, one walk over the blocks: 02's attention probes, generation (with and without a cache),
    the export and from_pretrained, and 06's scorer (packed rows and whole rows) all run on a linnet+ model and
    agree with its own forward."""
    eval_lib = lesson("06_eval")
    torch.manual_seed(0)
    config = model_lib.LLMConfig(**TINY, zero_init_out=True, x0_mix=True, logit_softcap=15.0)
    model = model_lib.LLM(config).eval()
    with torch.no_grad():                                   # leave the identity start: every switch must matter
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    idx = torch.randint(0, 512, (2, 16))
    assert model_lib.attention_weights(model, idx, layer=1).shape == (2, config.n_head, 16, 16)
    assert 0 < model_lib.max_attention_logit(model, idx) <= math.sqrt(config.head_dim) + 1e-4
    prompt = idx[0, :5].tolist()
    assert model.generate(prompt, max_new_tokens=6, temperature=0) == \
        model.generate(prompt, max_new_tokens=6, temperature=0, use_cache=False)
    folder = tmp_path / "export"
    folder.mkdir()
    checkpoints.save_pytorch_model_bin(model_lib.export_linnet_state_dict(model), folder / "pytorch_model.bin",
                                       config.to_dict())
    again = model_lib.LLM.from_pretrained(folder).eval()
    assert again.config.to_dict() == config.to_dict() and torch.equal(again(idx)[0], model(idx)[0])
    requests = [([5, 6, 7, 8], [9, 10]), ([5, 6, 7, 8], [11]), ([3, 4], [12, 13, 14])]
    monkeypatch.setattr(hellaswag_fast, "PACKING_PAYS", 1.0)          # pack even these few requests
    packed = eval_lib.score_requests(model, requests, device="cpu")
    whole = eval_lib.score_requests(model, requests, device="cpu", share_prefix=False)
    plain = eval_lib.score_requests_reference(model, requests, device="cpu")
    for a, b, c in zip(packed, whole, plain):
        np.testing.assert_allclose(a, c, atol=1e-5)
        np.testing.assert_allclose(b, c, atol=1e-5)
