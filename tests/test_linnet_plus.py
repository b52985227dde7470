"""linnet+ (02's switches, plain `if`s in one model class; 05's switches, bench/linnet_plus.py): every switch is off in linnet, each does what
it says, a linnet+ checkpoint round-trips, and BENCHMARKS.md's headline follows from the raw results."""
import json
import math
import subprocess
import sys

import pytest
import torch

from helpers import REPO_DIR, lesson

model_lib = lesson("02_model")
train_lib = lesson("05_train")
TINY = {**model_lib.TINY_TRAINING_SHAPE, "vocab_size": 512, "block_size": 32}


def test_linnet_has_no_switch_on_and_builds_the_plain_model():
    assert model_lib.plus_switches(model_lib.LLMConfig()) == {}
    assert type(model_lib.LLM(model_lib.LLMConfig(**TINY))) is model_lib.LLM
    for preset in ("linnet", "tiny"):
        cfg = train_lib.PRESETS[preset]
        assert not (cfg.zero_init_out or cfg.x0_mix or cfg.logit_softcap or cfg.muon_momentum_warmup
                    or cfg.router_on_adamw) and cfg.decay_shape == "cosine"


def test_plus_presets_are_linnet_with_the_measured_recipe():
    for name in ("linnet", "tiny"):
        plus = train_lib.PRESETS[f"{name}-plus"]
        assert plus.size == name
        assert {k: getattr(plus, k) for k in train_lib.PLUS_RECIPE} == train_lib.PLUS_RECIPE
        rest = {f: getattr(plus, f) for f in train_lib.TrainConfig.__dataclass_fields__ if f not in train_lib.PLUS_RECIPE}
        base = {f: getattr(train_lib.PRESETS[name], f) for f in rest}
        assert {k: v for k, v in rest.items() if k != "preset"} == {k: v for k, v in base.items() if k != "preset"}


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
    assert cfg.x0_mix and cfg.logit_softcap == 15.0 and cfg.decay_shape == "linear" and not cfg.zero_init_out


def test_benchmarks_headline_follows_from_the_raw_results():
    """BENCHMARKS.md's linnet+ line is what bench/linnet_plus.py computes from bench/results/linnet_plus/*.json."""
    results = sorted((REPO_DIR / "bench" / "results" / "linnet_plus").glob("*.json"))
    out = subprocess.run([sys.executable, "bench/linnet_plus.py", "table", "--from", *map(str, results)], cwd=REPO_DIR,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    line = next(l for l in out.stdout.splitlines() if l.startswith("tokens to reach the baseline's validation loss"))
    assert line in (REPO_DIR / "BENCHMARKS.md").read_text()
    assert out.stdout.strip() == (REPO_DIR / "bench" / "results" / "linnet_plus" / "tables.md").read_text().strip()
