"""06_eval: HellaSwag loading and preprocessing, the three scorings, batched == reference scorer, bits per byte."""
import json
import math
from collections import Counter

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models

from helpers import HELLASWAG, corpus_file, hellaswag_lines, lesson, run_script

from fast import hellaswag as hellaswag_fast

ev = lesson("06_eval")
house = lesson("house")
tok_lib = lesson("01_tokenizer")


# --- a model whose answers we can compute by hand: a fixed bigram table -------------------------------

class Bigram(torch.nn.Module):
    """logits[b, t] = table[idx[b, t]]: the next token depends only on the current one. Same forward
    signature as 02's LLM, so the real scorer runs on it; the maths is checkable with a pencil."""

    def __init__(self, table: torch.Tensor, block_size: int = 100):
        super().__init__()
        self.table = torch.nn.Parameter(table)
        self.config = type("Config", (), {"block_size": block_size})()

    def forward(self, idx, targets=None):
        return self.table[idx], None                               # (B, T, V)


CHARS = ["<|endoftext|>", " ", "a", "b", "c", "d", "."]


def char_tokenizer() -> Tokenizer:
    """One token per character (a BPE with no merges): ids 0=EOT, 1=' ', 2='a', 3='b', 4='c', 5='d', 6='.'."""
    tokenizer = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(CHARS)}, merges=[]))
    tokenizer.add_special_tokens([CHARS[0]])
    return tokenizer


def bigram_logprob(table, text_ids):
    logprobs = torch.log_softmax(table, -1)
    return sum(logprobs[a, b].item() for a, b in zip(text_ids[:-1], text_ids[1:]))


def hand_example(context, choices, label):
    return {"ind": 0, "context": context, "choices": choices, "raw_ctx": context, "raw_endings": choices,
            "label": label, "source": "wikihow", "split_type": "zeroshot", "activity_label": "test"}


def test_char_tokenizer_is_one_token_per_char():
    assert char_tokenizer().encode("ab c.").ids == [2, 3, 1, 4, 6]


def test_bigram_scores_match_hand_computation_and_pick_the_known_answer():
    # After 'a' the table strongly prefers 'b'; after ' ' it prefers 'a'. So " ab" is the likely ending.
    table = torch.zeros(7, 7)
    table[2, 3] = 4.0      # a -> b
    table[1, 2] = 3.0      # ' ' -> a
    table[3, 6] = 2.0      # b -> .
    tokenizer = char_tokenizer()
    example = hand_example("ca", ["dd.", "ab.", "cd.", "bb."], label=1)
    result = ev.evaluate_hellaswag(Bigram(table), tokenizer, [example], batch_size=3, device="cpu")
    record = result["records"][0]
    for i, choice in enumerate(example["choices"]):
        ids = tokenizer.encode("ca " + choice).ids
        expected = bigram_logprob(table, ids[1:])                   # transitions from the last ctx token on
        assert record["logprob_sum"][i] == pytest.approx(expected, abs=1e-5)
        assert record["logprob_per_char"][i] == pytest.approx(expected / len(choice), abs=1e-5)
    assert (record["pred"], record["pred_norm"], record["pred_nanogpt"]) == (1, 1, 1)
    assert result["acc"] == result["acc_norm"] == result["acc_nanogpt"] == 1.0


def test_left_truncation_keeps_bigram_scores():
    """A bigram only looks one token back, so cutting a long context to a 7-token window must not
    change any score — but it must go through the truncation path without error."""
    torch.manual_seed(0)
    table = torch.randn(7, 7)
    tokenizer = char_tokenizer()
    example = hand_example("abcdabcdabcd.abcd", ["ab.", "c", "dd", "a.b.c"], label=0)
    long = ev.evaluate_hellaswag(Bigram(table, 100), tokenizer, [example], device="cpu")
    short = ev.evaluate_hellaswag(Bigram(table, 7), tokenizer, [example], device="cpu")
    assert np.allclose(long["records"][0]["logprob_sum"], short["records"][0]["logprob_sum"], atol=1e-5)
    assert ev.cut_to_window([1, 2, 3, 4], [5, 6], window=3) == ([3, 4, 5, 6], 2)
    assert ev.cut_to_window([1], [5, 6, 7], window=2) == ([5, 6, 7], 2)   # ending longer than the window


def test_three_scorings_disagree_exactly_as_documented():
    """sum favours few tokens, per-char favours long strings, per-token mean favours confident tokens."""
    logprobs = [np.array([-3.0]),              # sum -3.0   per char -3/30 = -0.100  mean -3.0
                np.array([-2.0, -2.0]),        # sum -4.0   per char -4/8  = -0.500  mean -2.0
                np.array([-1.0] * 5),          # sum -5.0   per char -5/40 = -0.125  mean -1.0
                np.array([-2.5])]              # sum -2.5   per char -2.5/5 = -0.500 mean -2.5
    choices = ["x" * 30, "x" * 8, "x" * 40, "x" * 5]
    r = ev.choose_endings(logprobs, choices)
    assert (r["pred"], r["pred_norm"], r["pred_mean"]) == (3, 0, 2)
    # ties go to the first ending, as np.argmax in lm-eval
    assert ev.choose_endings([np.array([-1.0])] * 4, ["a"] * 4)["pred"] == 0


def test_lm_eval_tokenisation_moves_trailing_space_and_splits_the_whole_string():
    tokenizer = char_tokenizer()
    assert ev.split_trailing_space("ab ", "c") == ("ab", " c")
    (ctx, cont), = ev.encode_requests(tokenizer, [("ab ", "c.")], "lm-eval", eot=0)
    assert (ctx, cont) == ([2, 3], [1, 4, 6])
    (ctx, cont), = ev.encode_requests(tokenizer, [("", "ab")], "linnet", eot=0)
    assert ctx == [0]                                   # empty context → [EOT], as lm-eval does


def test_whole_string_split_differs_from_separate_encoding_when_a_merge_crosses_the_boundary():
    """With a merge "a b" → "ab" and no pre-tokenizer, lm-eval's split and linnet's separate encoding
    give different continuation tokens for the same strings."""
    vocab = {c: i for i, c in enumerate(CHARS)}
    vocab["ab"] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[("a", "b")]))
    (ctx_w, cont_w), = ev.encode_requests(tokenizer, [("ca", "bd")], "lm-eval", eot=0)
    (ctx_s, cont_s), = ev.encode_requests(tokenizer, [("ca", "bd")], "linnet", eot=0)
    assert ctx_w == ctx_s == [4, 2]
    assert cont_s == [3, 5] and cont_w == [5]           # whole "cabd" = c ab d: minus 2 ctx tokens = [d]


# --- the data ----------------------------------------------------------------------------------------

def test_preprocessing_matches_lm_eval():
    assert ev.preprocess("How to dance [title] Stand up. [step] Move your feet.") == "How to dance. Stand up. Move your feet."
    assert ev.preprocess("  [header] How to tie a tie  ") == " How to tie a tie"   # strip runs first, as in lm-eval
    assert ev.preprocess("a [b] c [d] e") == "a c e"                  # non-greedy: two spans, not one
    assert ev.preprocess("x   y") == "x  y"                            # one pass of "  " → " "
    row = {"ind": 1, "activity_label": "Run", "ctx_a": "A man runs.", "ctx_b": "he JUMPS", "ctx": "A man runs. he JUMPS",
           "split_type": "zeroshot", "label": 2, "endings": [" one [title] two ", "b", "c", "d"], "source_id": "wikihow~5"}
    ex = ev.prepare_example(row)
    assert ex["context"] == "Run: A man runs. He jumps"                # str.capitalize lower-cases the rest
    assert ex["choices"][0] == "one. two"
    assert ex["source"] == "wikihow"


def test_full_validation_file_parses():
    examples = ev.load_hellaswag(HELLASWAG)
    assert len(examples) == 10_042
    assert Counter(e["label"] for e in examples) == {0: 2515, 1: 2485, 2: 2584, 3: 2458}
    assert Counter(e["source"] for e in examples) == {"wikihow": 6799, "activitynet": 3243}
    assert Counter(e["split_type"] for e in examples) == {"zeroshot": 5041, "indomain": 5001}
    assert all("[" not in e["context"] and "  " not in e["context"] for e in examples[:500])


def test_hellaswag_file_is_the_embedded_copy_on_a_bare_clone(monkeypatch, tmp_path):
    """No cache, no ../shared, no network needed: the copy in embedded/; without it and offline, one line."""
    sources = house.sources
    monkeypatch.setattr(sources, "HELLASWAG_CACHE", tmp_path / "cache" / "hellaswag_val.jsonl")
    monkeypatch.setattr(sources, "HELLASWAG_SHARED", tmp_path / "shared" / "hellaswag_val.jsonl")
    monkeypatch.setattr(sources, "has_internet", lambda *a, **k: pytest.fail("asked the network"))
    assert sources.find_hellaswag_file() == house.EMBEDDED_HELLASWAG
    monkeypatch.setattr(sources, "EMBEDDED_HELLASWAG", tmp_path / "gone.jsonl.zst")
    monkeypatch.setattr(sources, "has_internet", lambda *a, **k: False)
    with pytest.raises(FileNotFoundError, match="no HellaSwag file and no internet"):
        sources.find_hellaswag_file()


def test_malformed_line_names_the_line(tmp_path):
    good = hellaswag_lines(2)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(good + ['{"ind": 3, "ctx": "no endings"}']) + "\n")
    with pytest.raises(house.UserError, match=r"bad.jsonl:3 .*missing field"):
        ev.load_hellaswag(bad)
    bad.write_text("\n".join(good + ["not json"]) + "\n")
    with pytest.raises(house.UserError, match=r"bad.jsonl:3 "):
        ev.load_hellaswag(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ev.load_hellaswag(tmp_path / "absent.jsonl")


# --- the real 02 model ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_tokenizer():
    """The tiny preset's tokenizer: vocab 1,024 trained on ~1 MB of the course corpus (a second or two)."""
    corpus = corpus_file("shakespeare")
    texts, total = [], 0
    for text in house.iter_texts([corpus]):
        texts.append(text[:200_000])
        total += len(texts[-1])
        if total > 1_000_000:
            break
    return tok_lib.train_tokenizer(texts, 1024, show_progress=False)


@pytest.fixture(scope="module")
def hellaswag():
    return ev.load_hellaswag(HELLASWAG, 1000)


@pytest.mark.slow
def test_score_requests_matches_reference(tiny_tokenizer, hellaswag):
    # 200 real examples, block 64 (05's tiny window): long contexts get cut. The expert loop ("reference")
    # is the faster MoE path for 800 single-sequence forwards on a CPU; 02's tests show it equals the
    # grouped one.
    model = ev.tiny_random_model(tiny_tokenizer.get_vocab_size(), block_size=64, moe_impl="reference")
    examples = hellaswag[:200]
    batched = ev.evaluate_hellaswag(model, tiny_tokenizer, examples, batch_size=48, device="cpu", nanogpt=False)
    reference = ev.evaluate_hellaswag(model, tiny_tokenizer, examples, device="cpu", nanogpt=False, reference=True)
    a = np.array([r["logprob_sum"] for r in batched["records"]])
    b = np.array([r["logprob_sum"] for r in reference["records"]])
    assert a.shape == (200, 4)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
    assert [r["pred_norm"] for r in batched["records"]] == [r["pred_norm"] for r in reference["records"]]
    assert max(r["context_tokens"] for r in batched["records"]) > 64     # the window really did cut some


def test_no_requests_score_to_nothing():
    assert ev.score_requests(ev.tiny_random_model(64), []) == []


@pytest.mark.slow
def test_compiled_scorer_matches_eager(tiny_tokenizer, hellaswag):
    """06 --compile: torch.compile of the forward, dynamic shapes (every batch has its own B and T). On 60 real
    examples in fp32 the per-ending log-likelihoods equal the eager scorer's (on the H200 in bf16 they differ
    by bf16 noise, as eager differs from fp32: BENCHMARKS.md). Compiling takes ~25 s on 2 CPU cores."""
    model = ev.tiny_random_model(tiny_tokenizer.get_vocab_size(), block_size=64)
    examples = hellaswag[:60]
    eager = ev.evaluate_hellaswag(model, tiny_tokenizer, examples, batch_tokens=2048, device="cpu", nanogpt=False)
    compiled = ev.evaluate_hellaswag(model, tiny_tokenizer, examples, batch_tokens=2048, device="cpu", nanogpt=False,
                                     compiled=True)
    a = np.array([r["logprob_sum"] for r in compiled["records"]])
    b = np.array([r["logprob_sum"] for r in eager["records"]])
    assert a.shape == (60, 4)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


@pytest.mark.slow
def test_random_weights_score_near_a_quarter(tiny_tokenizer, hellaswag):
    """An untrained model knows nothing, so each accuracy should be 25 % up to sampling noise.
    On n = 1,000 examples the binomial sd is sqrt(.25·.75/1000) = 1.37 points; we accept ±4.5 sd
    (19.0–31.0 %), which a correct scorer misses with probability ~1e-5 — yet a scorer that leaks
    the label, or scores the wrong tokens in a way correlated with the answer, lands far outside.
    The window is cut to 32 tokens to keep this fast (a random model does not use context anyway)."""
    model = ev.tiny_random_model(tiny_tokenizer.get_vocab_size(), seed=1, block_size=32)
    result = ev.evaluate_hellaswag(model, tiny_tokenizer, hellaswag, batch_size=128, device="cpu")
    band = 4.5 * ev.binomial_sd(1000)
    assert result["n"] == 1000
    for name in ("acc", "acc_norm", "acc_nanogpt"):
        assert abs(result[name] - 0.25) < band, (name, result[name])
    picks = Counter(r["pred_norm"] for r in result["records"])
    assert len(picks) == 4 and min(picks.values()) > 100                  # it really chooses, not always "A"


@pytest.mark.slow
def test_scoring_in_parts_tokenised_ahead_gives_the_same_records(tiny_tokenizer, hellaswag, monkeypatch):
    """`tokenized_ahead` cuts the examples into parts (the next one tokenised by a worker thread while this one
    is scored): the records, in order, and every score equal those of one part; the request counts add up."""
    model = ev.tiny_random_model(tiny_tokenizer.get_vocab_size(), block_size=64)
    monkeypatch.setattr(hellaswag_fast, "TOKENIZE_AHEAD_ON_CPU", True)           # parts pay on a GPU; here: the same scores?
    monkeypatch.setattr(hellaswag_fast, "TOKENIZE_AHEAD_MIN_EXAMPLES", 1000)
    whole = ev.evaluate_hellaswag(model, tiny_tokenizer, hellaswag[:30], device="cpu")
    monkeypatch.setattr(hellaswag_fast, "TOKENIZE_AHEAD_MIN_EXAMPLES", 7)
    assert hellaswag_fast.part_bounds(30) == [0, 7, 15, 22, 30]
    parts = ev.evaluate_hellaswag(model, tiny_tokenizer, hellaswag[:30], device="cpu")
    assert [r["ind"] for r in parts["records"]] == [r["ind"] for r in whole["records"]]
    for a, b in zip(parts["records"], whole["records"]):
        assert (a["pred"], a["pred_norm"], a["pred_nanogpt"]) == (b["pred"], b["pred_norm"], b["pred_nanogpt"])
        np.testing.assert_allclose(a["logprob_sum"], b["logprob_sum"], rtol=1e-5, atol=1e-5)
    assert (parts["requests"], parts["acc"], parts["acc_nanogpt"]) == (whole["requests"], whole["acc"], whole["acc_nanogpt"])


def test_a_failing_part_stops_the_worker_and_raises(tiny_tokenizer, hellaswag, monkeypatch):
    """An error while tokenising a part reaches the caller (no hang, no half result)."""
    monkeypatch.setattr(hellaswag_fast, "TOKENIZE_AHEAD_ON_CPU", True)
    monkeypatch.setattr(hellaswag_fast, "TOKENIZE_AHEAD_MIN_EXAMPLES", 5)
    real = ev.hellaswag_requests
    calls = []

    def failing(tokenizer, part, mode, nanogpt):
        calls.append(len(part))
        if len(calls) == 2:
            raise RuntimeError("tokenizer broke")
        return real(tokenizer, part, mode, nanogpt)
    monkeypatch.setattr(ev, "hellaswag_requests", failing)
    model = ev.tiny_random_model(tiny_tokenizer.get_vocab_size(), block_size=64)
    with pytest.raises(RuntimeError, match="tokenizer broke"):
        ev.evaluate_hellaswag(model, tiny_tokenizer, hellaswag[:20], device="cpu")


def test_evaluate_restores_training_mode(tiny_tokenizer, hellaswag):
    model = ev.tiny_random_model(tiny_tokenizer.get_vocab_size()).train()
    ev.evaluate_hellaswag(model, tiny_tokenizer, hellaswag[:2], device="cpu", nanogpt=False)
    assert model.training


def test_breakdowns_group_and_bin(hellaswag):
    records = [{"label": e["label"], "pred_norm": 0, "source": e["source"], "split_type": e["split_type"],
                "context_tokens": len(e["context"]) // 4} for e in hellaswag[:400]]
    parts = ev.breakdowns(records)
    assert sum(n for _, n in parts["context_length"].values()) == 400
    assert sum(n for _, n in parts["split_type"].values()) == 400
    expected = np.mean([r["label"] == 0 for r in records])
    assert parts["source"]["activitynet"][0] == pytest.approx(expected)


def test_checkpoint_roundtrip_through_load_model(tmp_path, tiny_tokenizer, hellaswag):
    """A 05-style .pt ({"model": linnet layout, "config": dict}) loads back to the same scores."""
    model_lib = lesson("02_model")
    model = ev.tiny_random_model(tiny_tokenizer.get_vocab_size(), seed=3)
    path = tmp_path / "latest.pt"
    torch.save({"model": model_lib.export_linnet_state_dict(model), "config": model.config.to_dict(), "step": 7}, path)
    loaded = ev.load_model(path, device="cpu")
    a = ev.evaluate_hellaswag(model, tiny_tokenizer, hellaswag[:5], device="cpu", nanogpt=False)
    b = ev.evaluate_hellaswag(loaded, tiny_tokenizer, hellaswag[:5], device="cpu", nanogpt=False)
    assert np.allclose([r["logprob_sum"] for r in a["records"]], [r["logprob_sum"] for r in b["records"]], atol=1e-5)
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(house.UserError, match="not a 05_train checkpoint"):
        ev.load_model(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="python 05_train.py"):
        ev.load_model(tmp_path / "missing.pt")


def test_bits_per_byte_divides_by_the_bytes_of_exactly_the_tokens_scored(tmp_path, tiny_tokenizer):
    """A validation shard made of known ASCII text: a uniform-logits model has CE = ln V per token, and
    bpb = total nats / (ln 2 · the UTF-8 bytes those target tokens decode to) — not the manifest's average
    (set to a wrong 3.0 here, which must not matter)."""
    data_lib = lesson("04_data")
    text = " ".join(f"word{i} and some more text, number {i * 7}." for i in range(60))
    ids = [0] + tiny_tokenizer.encode(text).ids                  # <|endoftext|>, then the document
    assert len(ids) >= 4 * 32 + 1
    tokens = np.array(ids[:4 * 32 + 1], dtype=np.uint16)
    np.save(tmp_path / "shard_00000.npy", tokens)
    record = {"file": "shard_00000.npy", "split": "val", "tokens": len(tokens), "sha256": "x"}
    (tmp_path / "manifest.json").write_text(json.dumps({"val_bytes_per_token": 3.0, "shards": [record],
                                                        "vocab_size": 1024}))
    assert data_lib.read_manifest(tmp_path)["val_bytes_per_token"] == 3.0
    uniform = Bigram(torch.zeros(1024, 1024), block_size=32)
    result = ev.bits_per_byte(uniform, tmp_path, tiny_tokenizer, batch_size=2, seq_len=32, max_batches=2, device="cpu")
    scored_bytes = len(tiny_tokenizer.decode(tokens[1:1 + 4 * 32].tolist()).encode("utf-8"))
    assert result["tokens"] == 2 * 2 * 32 and result["bytes"] == scored_bytes
    assert result["loss"] == pytest.approx(math.log(1024), rel=1e-6)
    assert result["bpb"] == pytest.approx(4 * 32 * math.log(1024) / (math.log(2) * scored_bytes), rel=1e-6)
    assert result["bytes_per_token"] == pytest.approx(scored_bytes / 128)


@pytest.mark.slow
def test_tiny_preset_end_to_end(tmp_path):
    result = run_script("06_eval.py", "--preset", "tiny", "--limit", "60", "--out", str(tmp_path),
                        "--checkpoint", str(tmp_path / "none.pt"), "--no-hellaswag")
    assert result.returncode != 0 and "python 05_train.py" in result.stderr and "Traceback" not in result.stderr
    result = run_script("06_eval.py", "--preset", "tiny", "--limit", "60", "--out", str(tmp_path),
                        "--sample", "The cat", "--max-new-tokens", "5")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "acc_norm" in result.stdout and "sample:" in result.stdout
    for name in ("hellaswag_methods", "hellaswag_breakdown", "hellaswag_examples"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000
    summary = json.loads((tmp_path / "results.json").read_text())
    assert summary["hellaswag"]["n"] == 60 and len(summary["hellaswag"]["records"]) == 60


@pytest.mark.slow
def test_bad_checkpoints_and_tokenizer_mismatch_give_one_line(tmp_path, tiny_tokenizer):
    model_lib = lesson("02_model")
    model = ev.tiny_random_model(tiny_tokenizer.get_vocab_size(), seed=3)
    tok_path = tmp_path / "tokenizer.json"
    tok_lib.save_tokenizer(tiny_tokenizer, tok_path)
    ckpt = tmp_path / "run" / "latest.pt"
    ckpt.parent.mkdir()
    torch.save({"model": model_lib.export_linnet_state_dict(model), "config": model.config.to_dict(),
                "tokenizer_sha256": "0" * 64}, ckpt)          # trained with some other tokenizer
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    for checkpoint, message in [(ckpt.parent, "another tokenizer"), (tmp_path / "corrupt.pt", "cannot read")]:
        result = run_script("06_eval.py", "--checkpoint", str(checkpoint), "--tokenizer", str(tok_path),
                            "--limit", "5", "--out", str(tmp_path / "out"), timeout=300)
        assert result.returncode != 0 and message in result.stderr, result.stderr[-1500:]
        assert "Traceback" not in result.stderr


# --- the fast scorer's batching (issue "Throughput II") -------------------------------------------------

def test_plan_batches_covers_every_request_once_within_the_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 120, size=500).tolist()
    batches = ev.plan_batches(lengths, batch_tokens=1000, batch_size=16)
    assert sorted(i for b in batches for i in b) == list(range(500))
    for batch in batches:
        assert len(batch) <= 16 and (len(batch) == 1 or len(batch) * lengths[batch[0]] <= 1000)
        assert lengths[batch[0]] == max(lengths[i] for i in batch)      # longest first: it sets the padding
    padded = sum(len(b) * lengths[b[0]] for b in batches)
    assert padded < 1.05 * sum(lengths)                                  # sorted: under 5 % padding
    assert ev.plan_batches([50, 10], batch_tokens=20) == [[0], [1]]      # longer than the budget: alone


@pytest.mark.slow
def test_token_budget_batching_matches_reference_in_original_order(tiny_tokenizer, hellaswag):
    """~100 real examples (400 requests) with a 600-token budget: dozens of batches of different
    row counts, every request scored in sorted order — and the results must come back in the
    original order, equal to the one-at-a-time reference (fp32 on the CPU: 1e-5)."""
    model = ev.tiny_random_model(tiny_tokenizer.get_vocab_size(), block_size=64, moe_impl="reference")
    requests = ev.hellaswag_requests(tiny_tokenizer, hellaswag[300:400], "lm-eval", nanogpt=False)
    lengths = [len(ev.cut_to_window(c, k, 64)[0]) - 1 for c, k in requests]
    assert len(ev.plan_batches(lengths, batch_tokens=600)) > 30
    fast = ev.score_requests(model, requests, device="cpu", batch_tokens=600)
    plain = ev.score_requests_reference(model, requests, device="cpu")
    assert len(fast) == len(plain) == 400
    for a, b in zip(fast, plain):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_contexts_encoded_once_give_the_same_ids(tiny_tokenizer, hellaswag):
    """encode_requests encodes each distinct context once: the ids must equal encoding every pair."""
    pairs = [ev.split_trailing_space(c, k) for ex in hellaswag[:50] for c, k in ev.example_pairs(ex, "lm-eval")]
    requests = ev.encode_requests(tiny_tokenizer, pairs, "lm-eval", eot=0)
    for (ctx, cont), (c, k) in zip(requests, pairs):
        assert ctx == tiny_tokenizer.encode(c, add_special_tokens=False).ids
        assert cont == tiny_tokenizer.encode(c + k, add_special_tokens=False).ids[len(ctx):]


@pytest.mark.slow
def test_hellaswag_speed_bench_smoke_run_on_cpu(tmp_path, tiny_tokenizer):
    tok_path = tmp_path / "tokenizer.json"
    tok_lib.save_tokenizer(tiny_tokenizer, tok_path)
    hs = HELLASWAG
    result = run_script("bench/hellaswag_speed.py", "--depth", "2", "--vocab", "1024", "--limit", "50", "--warmup", "5",
                        "--tokenizer", str(tok_path), "--hellaswag", str(hs), "--device", "cpu",
                        "--compare-reference", "10", "--nanogpt", "--compare-whole")
    assert result.returncode == 0, result.stderr[-2000:]
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["examples"] == 50 and 0 <= line["acc"] <= 1 and line["tokens_scored"] > line["continuation_tokens"] > 0
    assert line["reference_examples"] == 10 and line["max_abs_diff_logprob_sum"] < 1e-3
    assert line["whole_rows"] == 400 and line["packed_tokens"] < 0.6 * line["whole_tokens"] and line["packing_pays"]
    assert line["whole_rows_pred_differs"] == line["whole_rows_pred_nanogpt_differs"] == 0


# --- each token sequence once, each context once (issue "Throughput III", goal 3) -----------------------

@pytest.mark.slow
def test_identical_requests_are_scored_once_and_give_exactly_the_separate_scores(tiny_tokenizer, hellaswag):
    """With 05's 64-token window, cutting long contexts from the left makes many nanoGPT-style requests the
    same tokens as lm-eval's. evaluate_hellaswag scores each distinct sequence once for all three scorings;
    through the plain scorer every per-example number must be exactly (bit for bit) what scoring lm-eval's
    and nanoGPT's requests separately gives."""
    model = ev.tiny_random_model(tiny_tokenizer.get_vocab_size(), block_size=64, moe_impl="reference")
    examples = ev.load_hellaswag(HELLASWAG, 3263)[3243:]              # WikiHow: long contexts, many cut
    result = ev.evaluate_hellaswag(model, tiny_tokenizer, examples, device="cpu", reference=True)
    assert result["requests"] == 160 and result["distinct_requests"] < 150          # really deduplicated
    lm = ev.score_requests_reference(model, ev.hellaswag_requests(tiny_tokenizer, examples, "lm-eval", False))
    nano = ev.score_requests_reference(model, ev.encode_requests(
        tiny_tokenizer, [p for ex in examples for p in ev.example_pairs(ex, "nanogpt")], "nanogpt", 0))
    for i, (ex, record) in enumerate(zip(examples, result["records"])):
        alone = ev.choose_endings(lm[4 * i:4 * i + 4], ex["choices"])
        for key in ("logprob_sum", "logprob_per_char", "logprob_mean", "pred", "pred_norm"):
            assert record[key] == alone[key], (i, key)
        assert record["nanogpt_mean"] == ev.choose_endings(nano[4 * i:4 * i + 4], ex["raw_endings"])["logprob_mean"]


def test_packed_rows_through_02s_hidden_are_ordinary_rows(tiny_tokenizer):
    """02's `hidden` with `packed` (positions, look-back and mask given, as fast/hellaswag.py packs rows): with
    positions 0..T-1, the two previous tokens and a causal mask it must be the ordinary forward."""
    model = ev.tiny_random_model(tiny_tokenizer.get_vocab_size(), block_size=64)
    idx = torch.randint(0, tiny_tokenizer.get_vocab_size(), (3, 40))
    t = torch.arange(40)
    positions, before = t.expand(3, 40), torch.stack([t - 1, (t - 2).clamp_min(-1)], -1).expand(3, 40, 2)
    causal = torch.ones(40, 40, dtype=torch.bool).tril().expand(3, 1, 40, 40)
    with torch.no_grad():
        np.testing.assert_allclose(model.hidden(idx, packed=(positions, before, causal))[0].numpy(),
                                   model.hidden(idx)[0].numpy(), rtol=0, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("block_size", [64, 256])
def test_packed_contexts_score_as_whole_rows_and_the_reference(tiny_tokenizer, hellaswag, block_size, monkeypatch):
    """score_requests(share_prefix=True) reads each context once, its endings after it under a mask. Over
    all three scorings' requests of real examples (cut by a 64-token window, or not), plus a 1-token
    context, a 1-token ending and a context shared by 9 requests split over packed rows: the per-token
    log-probs equal whole rows and the one-at-a-time reference (fp32: ~1e-6), in the original order.
    (Packed even where it saves too few tokens to pay, as with the 64-token window: PACKING_PAYS = 1.)"""
    monkeypatch.setattr(hellaswag_fast, "PACKING_PAYS", 1.0)
    model = ev.tiny_random_model(tiny_tokenizer.get_vocab_size(), block_size=block_size)
    examples = hellaswag[990:] + ev.load_hellaswag(HELLASWAG, 3253)[3243:]   # ActivityNet and WikiHow
    requests = ev.hellaswag_requests(tiny_tokenizer, examples, "lm-eval", nanogpt=True)
    shared = [7, 8, 9, 10]
    requests += [([0], [5, 6, 7]), ([3, 4], [9])] + [(shared, [11 + i] * (1 + i)) for i in range(9)]
    packed = ev.score_requests(model, requests, device="cpu", batch_tokens=700)
    whole = ev.score_requests(model, requests, device="cpu", batch_tokens=700, share_prefix=False)
    plain = ev.score_requests_reference(model, requests, device="cpu")
    for a, b, c in zip(packed, whole, plain):
        assert a.shape == b.shape == c.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
        np.testing.assert_allclose(a, c, rtol=0, atol=1e-5)
    fitted = [ev.fit_to_window(c, k, block_size) for c, k in requests]
    rows = hellaswag_fast.pack_requests(fitted, max_tokens=20)
    assert rows["size"].sum() < sum(len(c) + len(k) - 1 for c, k in fitted)           # fewer tokens than rows
    assert len(rows["target"]) == sum(len(k) for _, k in fitted)                       # every token scored once


def test_packing_reads_about_half_the_tokens(tiny_tokenizer, hellaswag):
    """What the speed-up rests on: with linnet's 1,024-token window the packed rows of the three scorings
    hold each context once — on 200 real examples about half the tokens of the whole rows."""
    requests = ev.hellaswag_requests(tiny_tokenizer, hellaswag[:200], "lm-eval", nanogpt=True)
    whole = sum(len(c) + len(k) - 1 for c, k in requests)
    distinct, _ = hellaswag_fast.distinct_requests([ev.fit_to_window(c, k, 1024) for c, k in requests])
    packed = hellaswag_fast.pack_requests(distinct, 4096)
    contexts = {tuple(c) for c, _ in distinct}
    assert packed["size"].sum() == sum(map(len, contexts)) + sum(len(k) - 1 for _, k in distinct)
    assert 0.4 < packed["size"].sum() / whole < 0.6


@pytest.mark.slow
def test_bad_hellaswag_file_is_refused_before_the_model_loads(tmp_path):
    """A HellaSwag line with a bad label stops 06 before it loads the model: the checkpoint here does not
    even exist, and the one error line is about the HellaSwag file."""
    bad = tmp_path / "hs.jsonl"
    row = json.loads(hellaswag_lines(1)[0])
    bad.write_text(json.dumps({**row, "label": 2.7}) + "\n")
    result = run_script("06_eval.py", "--hellaswag-file", str(bad), "--checkpoint", str(tmp_path / "absent.pt"),
                        "--out", str(tmp_path / "out"))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "hs.jsonl:1" in result.stderr and "absent.pt" not in result.stderr, result.stderr[-1500:]
