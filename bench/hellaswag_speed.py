"""How fast does 06 score HellaSwag? acc + acc_norm (lm-eval's two numbers) on all 10,042 examples.

Builds the linnet-shape model (02: depth 12, vocab 32,768, 8 experts top-2) with random weights — the
speed does not depend on the weights — in bf16 on CUDA (fp32 on a CPU), or loads --checkpoint; loads a
real tokenizer and the HellaSwag validation file; runs `evaluate_hellaswag(nanogpt=False)` once on 200
examples to warm up, then times the full run (tokenising included: the clock is 06's own `seconds`).
Prints one JSON line: seconds, examples/s, acc, acc_norm, tokens scored, device, torch version, and what
goes through the model: sequences (rows), tokens and padded tokens, forward passes — as whole rows (each
request alone, 06 before the packing) and packed (each distinct context once, 06's default).

    python bench/hellaswag_speed.py --tokenizer out/01_tokenizer/tokenizer.json --hellaswag PATH
    python bench/hellaswag_speed.py ... --nanogpt                    # 06's standalone run: all three scorings
    python bench/hellaswag_speed.py ... --nanogpt --no-share-prefix  # the same as whole rows (06 before)
    python bench/hellaswag_speed.py ... --nanogpt --compare-whole    # both, one process: packed, then whole rows
    python bench/hellaswag_speed.py ... --batch-tokens 131072        # a bigger forward pass
    python bench/hellaswag_speed.py ... --compare-reference 200      # fast vs plain scorer, 200 examples
    python bench/hellaswag_speed.py ... --nanogpt --compare-plain-rope  # then again with 02's plain RoPE + QK-norm
    python bench/hellaswag_speed.py ... --compile                    # 06's compiled forward (06 --compile)
    python bench/hellaswag_speed.py ... --moe fused                  # the experts on fast/moe.py's quack kernels
    python bench/hellaswag_speed.py --depth 2 --limit 50 --tokenizer T  # a CPU smoke run

--compare-reference N scores the first N examples with the plain one-request-per-forward
`score_requests_reference` too and prints the largest difference of any per-ending log-likelihood (nats)
and how many of the N decisions (acc, acc_norm) differ; it also scores them with 06's eager (uncompiled)
forward, so the compiled scorer is compared with the eager one next to the bf16-vs-fp32 yardstick. The plain scorer runs on an fp32 copy of the
model, so on a GPU the difference is the fast path's bf16 error; on a CPU (fp32 both) it is ~1e-5.
Needs only torch, tokenizers, numpy and this repo.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import house  # noqa: E402
from fast import hellaswag as hellaswag_fast  # noqa: E402
from house import checkpoints  # noqa: E402

model_lib = importlib.import_module("02_model")
eval_lib = importlib.import_module("06_eval")


def parse_args(argv=None):
    parser = house.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokenizer", type=Path, default=eval_lib.DEFAULT_TOKENIZER, help="any tokenizer.json")
    parser.add_argument("--hellaswag", type=Path, default=None, help="hellaswag_val.jsonl (default: 06's lookup)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="score this model instead of random weights")
    parser.add_argument("--depth", type=house.positive_int, default=12, help="random model's depth (default: 12 = linnet)")
    parser.add_argument("--vocab", type=house.positive_int, default=32768, help="random model's vocabulary (default: 32768)")
    parser.add_argument("--limit", type=house.positive_int, default=None, help="first N examples only (default: all 10,042)")
    parser.add_argument("--warmup", type=house.positive_int, default=200, help="examples in the untimed warm-up run (default: 200)")
    parser.add_argument("--batch-tokens", type=house.positive_int, default=None, help="06's token budget per forward (default: 06's)")
    parser.add_argument("--batch-size", type=house.positive_int, default=None, help="06's cap on rows per forward (default: none)")
    parser.add_argument("--compare-reference", type=house.non_negative_int, default=0, metavar="N",
                        help="also check fast vs plain scorer on the first N examples")
    parser.add_argument("--device", choices=house.DEVICES, default=None, help="default: the best available")
    parser.add_argument("--nanogpt", action="store_true",
                        help="also the nanoGPT-style scoring (06's standalone run scores all three)")
    parser.add_argument("--share-prefix", action=argparse.BooleanOptionalAction, default=True,
                        help="pack each distinct context once with its endings (06's default); "
                             "--no-share-prefix: every request a whole row")
    parser.add_argument("--compare-whole", action="store_true",
                        help="then time the same run as whole rows (--no-share-prefix) in this process: before and "
                             "after in one command, with how many decisions differ")
    parser.add_argument("--compare-plain-rope", action="store_true",
                        help="then time the same run with 02's plain RoPE + QK-norm ops (LLMConfig.rope_impl 'reference') "
                             "instead of its fused kernel, with how many decisions differ")
    parser.add_argument("--moe", choices=list(model_lib.MOE_IMPLS), default="auto",
                        help="LLMConfig.moe_impl of the scored model (default: auto, which evaluates on moe_grouped)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                        help="06's compiled forward (06 --compile); the warm-up run compiles (its time is printed)")
    return parser.parse_args(argv)


def build_model(args, tokenizer, device):
    if args.checkpoint is not None:
        model = eval_lib.load_model(args.checkpoint, device)
        model = twin(model, moe_impl=args.moe) if args.moe != model.config.moe_impl else model
    else:
        torch.manual_seed(0)
        config = model_lib.LLMConfig(depth=args.depth, vocab_size=args.vocab, moe_impl=args.moe)
        model = model_lib.LLM(config).to(device).eval()
    if tokenizer.get_vocab_size() > model.config.vocab_size:
        raise SystemExit(f"error: the tokenizer has {tokenizer.get_vocab_size()} tokens, the model "
                         f"{model.config.vocab_size}: pass --vocab at least that big")
    return model.to(torch.bfloat16) if device.type == "cuda" else model    # as 06's get_model does


def twin(model, **how):
    """The same weights, dtype and device in a model that runs another way: `how` sets LLMConfig fields such as
    rope_impl="reference" (02's plain RoPE + QK-norm ops) or moe_impl="fused"."""
    twin = model_lib.LLM(dataclasses.replace(model.config, **how))
    twin.load_state_dict(model.state_dict())
    parameter = next(model.parameters())
    return twin.to(parameter.device, parameter.dtype).eval()


def tokens_scored(tokenizer, examples, window, nanogpt: bool = False, batch_tokens: int = 65_536) -> dict:
    """What the forward passes read for these requests (acc/acc_norm, plus nanoGPT's with nanogpt=True):
    input and continuation tokens of the requests, then rows, tokens, padded tokens and forward passes
    as whole rows and as packed rows (06's plans, at `batch_tokens` per pass)."""
    requests = eval_lib.hellaswag_requests(tokenizer, examples, "lm-eval", nanogpt=nanogpt)
    cut = [eval_lib.cut_to_window(c, k, window) for c, k in requests]
    whole = [len(full) - 1 for full, _ in cut]
    batches = eval_lib.plan_batches(whole, batch_tokens)
    distinct, _ = hellaswag_fast.distinct_requests([eval_lib.fit_to_window(c, k, window) for c, k in requests])
    sizes = hellaswag_fast.pack_requests(distinct, hellaswag_fast.PACKED_ROW_WINDOWS * window)["size"].tolist()
    packed = eval_lib.plan_batches(sizes, batch_tokens)
    return {"tokens_scored": sum(whole), "continuation_tokens": sum(n for _, n in cut),
            "whole_rows": len(whole), "whole_tokens": sum(whole),
            "whole_padded_tokens": sum(len(b) * whole[b[0]] for b in batches), "whole_passes": len(batches),
            "distinct_requests": len(distinct), "packed_rows": len(sizes), "packed_tokens": sum(sizes),
            "packed_padded_tokens": sum(len(b) * sizes[b[0]] for b in packed), "packed_passes": len(packed),
            "packing_pays": sum(sizes) <= hellaswag_fast.PACKING_PAYS * sum(len(c) + len(k) - 1 for c, k in distinct)}


def timed_run(model, tokenizer, examples, device, args, share_prefix: bool | None = None) -> dict:
    if device.type == "cuda":
        torch.cuda.synchronize()
    result = eval_lib.evaluate_hellaswag(model, tokenizer, examples, device=device, nanogpt=args.nanogpt,
                                         batch_size=args.batch_size, batch_tokens=args.batch_tokens,
                                         compiled=args.compile,
                                         share_prefix=args.share_prefix if share_prefix is None else share_prefix)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return result


def compare_reference(model, tokenizer, examples, device, compiled, share_prefix: bool = True) -> dict:
    """The timed fast scorer (bf16 on CUDA) against the plain scorer on an fp32 copy of the model: the
    difference is the fast path's whole error (batching, padding, bf16), not one bf16 run against another.
    Also the eager scorer's packed rows against its whole rows (`packed_vs_whole_*`): the packing's own
    difference, next to the bf16-vs-fp32 yardstick."""
    fast = eval_lib.evaluate_hellaswag(model, tokenizer, examples, device=device, nanogpt=False, compiled=compiled,
                                       share_prefix=share_prefix)
    eager = eval_lib.evaluate_hellaswag(model, tokenizer, examples, device=device, nanogpt=False, compiled=False)
    whole = eval_lib.evaluate_hellaswag(model, tokenizer, examples, device=device, nanogpt=False, compiled=False,
                                        share_prefix=False)
    exact = twin(model, rope_impl="reference").float()                 # the plain ops throughout, in fp32
    plain = eval_lib.evaluate_hellaswag(exact, tokenizer, examples, device=device, nanogpt=False, reference=True)
    a = np.array([r["logprob_sum"] for r in fast["records"]])
    b = np.array([r["logprob_sum"] for r in plain["records"]])
    c = np.array([r["logprob_sum"] for r in eager["records"]])
    w = np.array([r["logprob_sum"] for r in whole["records"]])
    return {"packed_vs_whole_max_abs_diff": float(np.abs(c - w).max()),
            "packed_vs_whole_mean_abs_diff": float(np.abs(c - w).mean()),
            "packed_vs_whole_pred_differs": sum(x["pred"] != y["pred"] for x, y in zip(eager["records"], whole["records"])),"reference_examples": len(examples), "max_abs_diff_logprob_sum": float(np.abs(a - b).max()),
            "eager_vs_reference_max_abs_diff": float(np.abs(c - b).max()),
            "eager_vs_reference_mean_abs_diff": float(np.abs(c - b).mean()),
            "timed_vs_eager_max_abs_diff": float(np.abs(a - c).max()),
            "timed_vs_eager_mean_abs_diff": float(np.abs(a - c).mean()),
            "timed_vs_eager_pred_differs": sum(x["pred"] != y["pred"] for x, y in zip(fast["records"], eager["records"])),
            "mean_abs_diff_logprob_sum": float(np.abs(a - b).mean()),
            "reference_pred_differs": sum(x["pred"] != y["pred"] for x, y in zip(fast["records"], plain["records"])),
            "reference_pred_norm_differs": sum(x["pred_norm"] != y["pred_norm"]
                                               for x, y in zip(fast["records"], plain["records"])),
            "reference_seconds": plain["seconds"]}


@house.speaks
def main(argv=None):
    args = parse_args(argv)
    device = house.pick_device(args.device)
    if args.checkpoint is not None:      # an exported folder's own tokenizer.json wins, as in 06 (02's pick_tokenizer)
        given = None if args.tokenizer.resolve() == eval_lib.DEFAULT_TOKENIZER.resolve() else args.tokenizer
        args.tokenizer = checkpoints.pick_tokenizer(args.checkpoint, given, eval_lib.DEFAULT_TOKENIZER)
    if not args.tokenizer.is_file():
        raise SystemExit(f"error: no tokenizer at {args.tokenizer}: pass --tokenizer PATH (any tokenizer.json)")
    tokenizer = eval_lib.tokenizer_lib.load_tokenizer(args.tokenizer)
    examples = eval_lib.load_hellaswag(house.sources.find_hellaswag_file(args.hellaswag), args.limit)
    model = build_model(args, tokenizer, device)
    started = time.time()
    timed_run(model, tokenizer, examples[:args.warmup], device, args)        # warm-up: CUDA init, kernels, compiling
    warmup_seconds = time.time() - started
    started = time.time()
    result = timed_run(model, tokenizer, examples, device, args)
    wall = time.time() - started
    budget = args.batch_tokens or (65_536 if device.type == "cuda" else 8_192)
    counts = tokens_scored(tokenizer, examples, eval_lib.window_of(model), args.nanogpt, budget)
    packed = args.share_prefix and not args.compile
    line = {"what": "hellaswag acc+acc_norm" + ("+nanogpt" if args.nanogpt else "") + (", packed" if packed else ", whole rows"),
            "examples": result["n"], "seconds": round(result["seconds"], 3),
            "wall_seconds": round(wall, 3), "examples_per_s": round(result["n"] / result["seconds"], 1),
            "acc": result["acc"], "acc_norm": result["acc_norm"], "acc_nanogpt": result["acc_nanogpt"],
            **counts, "batch_tokens": args.batch_tokens, "batch_size": args.batch_size,
            "share_prefix": args.share_prefix,
            "compiled": args.compile, "moe_impl": model.config.moe_impl, "warmup_examples": args.warmup, "warmup_seconds": round(warmup_seconds, 1),
            "model": str(args.checkpoint) if args.checkpoint else f"random depth {args.depth} vocab {args.vocab}",
            "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
            "torch": torch.__version__}
    if args.compare_whole:
        whole = timed_run(model, tokenizer, examples, device, args, share_prefix=False)
        line.update({"whole_rows_seconds": round(whole["seconds"], 3), "whole_rows_acc": whole["acc"],
                     "whole_rows_acc_norm": whole["acc_norm"], "whole_rows_acc_nanogpt": whole["acc_nanogpt"],
                     **{f"whole_rows_{pred}_differs": sum(a[pred] != b[pred] for a, b in zip(result["records"], whole["records"]))
                        for pred in ("pred", "pred_norm") + (("pred_nanogpt",) if args.nanogpt else ())}})
    if args.compare_plain_rope:
        plain = timed_run(twin(model, rope_impl="reference"), tokenizer, examples, device, args)
        line.update({"plain_rope_seconds": round(plain["seconds"], 3), "plain_rope_acc": plain["acc"],
                     **{f"plain_rope_{pred}_differs": sum(a[pred] != b[pred] for a, b in zip(result["records"], plain["records"]))
                        for pred in ("pred", "pred_norm") + (("pred_nanogpt",) if args.nanogpt else ())}})
    if args.compare_reference:
        line.update(compare_reference(model, tokenizer, examples[:args.compare_reference], device, args.compile,
                                      args.share_prefix))
    print(json.dumps(line))


if __name__ == "__main__":
    main()
