"""Recreate tests/data/original_reference.pt: outputs of linnet's ORIGINAL model code on a small model, so that
tests/test_02_model.py can check, on any machine, that 02_model.py computes the same numbers.

    git clone https://github.com/rudyon/pipeline ~/pipeline          # linnet's training code (model.py)
    python tests/data/make_original_reference.py --pipeline ~/pipeline

The file was made from rudyon/pipeline at commit f9e4041 (model.py), torch 2.13 CPU. The shape is the tiny one
02's tests use (2 layers, 4 experts top-2, vocabulary 128) but 64 wide with head_dim 32 — widths the original
LLMConfig derives from `depth` only (128 wide at depth 2), so a subclass overrides its width properties; every
module of the original code runs unchanged. The weights are rounded to bf16 values before the forward pass, so
they can be stored in bf16 (half the bytes) and load back exactly."""
import argparse
import importlib.util
from pathlib import Path

import torch

SHAPE = dict(depth=2, block_size=32, vocab_size=128, n_experts=4, n_active_experts=2)
WIDTHS = dict(n_embd=64, n_head=2, n_kv_head=1)           # head_dim 32; ffn_dim follows: round_up(8/3·64, 64) = 192


def original_model(pipeline: Path):
    spec = importlib.util.spec_from_file_location("linnet_original", pipeline / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    class SmallConfig(module.LLMConfig):
        n_embd = property(lambda self: WIDTHS["n_embd"])
        n_head = property(lambda self: WIDTHS["n_head"])
        n_kv_head = property(lambda self: WIDTHS["n_kv_head"])

    return module.LLM(SmallConfig(**SHAPE))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", type=Path, required=True, help="a clone of github.com/rudyon/pipeline")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("original_reference.pt"))
    args = parser.parse_args()
    torch.manual_seed(0)
    model = original_model(args.pipeline)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.bfloat16().float())                   # bf16-representable weights: stored exactly in bf16
    gen = torch.Generator().manual_seed(1)
    idx = torch.randint(0, SHAPE["vocab_size"], (2, 24), generator=gen)
    targets = torch.randint(0, SHAPE["vocab_size"], (2, 24), generator=gen)
    model.eval()
    with torch.no_grad():
        logits, loss_eval = model(idx, targets)
        model.train()
        _, loss_train = model(idx, targets)
    state = {k: v.bfloat16() if v.is_floating_point() and not k.endswith("inv_freq") else v
             for k, v in model.state_dict().items()}
    torch.save(dict(config=SHAPE, widths=WIDTHS, state_dict=state, idx=idx, targets=targets, logits=logits,
                    loss_eval=loss_eval, loss_train=loss_train, source="rudyon/pipeline f9e4041 model.py"), args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): loss eval {loss_eval:.4f}, train {loss_train:.4f}")


if __name__ == "__main__":
    main()
