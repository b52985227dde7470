"""The checks of 06_eval.py's exercises: acc_norm and hellaswag_requests."""
from __future__ import annotations

import importlib

import numpy as np

from exercises.checker.report import Wrong, call, fresh_seed


# --- acc_norm (06_eval.py, section 4: choose_endings) ---------------------------------------------------

def check_acc_norm(ex) -> None:
    ev = importlib.import_module("06_eval")
    gen = np.random.default_rng(0)
    a = np.array
    cases = [("06's docstring example", [a([-3.0]), a([-1.0] * 5)], ["a" * 30, "b" * 40]),
             ("characters, not bytes: 'é' is 1 character but 2 UTF-8 bytes",
              [a([-2.0, -2.0]), a([-1.0, -2.1])], ["éééé", "abcd"]),
             ("per character, not per token", [a([-1.0] * 6), a([-2.5])], ["abcdefghijkl", "abcdef"]),
             ("a tie (-1 per character everywhere): the first ending wins", [a([-2.0]), a([-1.0, -3.0]), a([-1.0])],
              ["ab", "abcd", "a"]),
             ("one ending only", [a([-5.0, -1.0])], ["x"])]
    letters = list("abcdefghij éü東—")
    fresh = np.random.default_rng(fresh_seed("acc_norm"))
    for i in range(350):
        gen = fresh if i == 300 else gen                # the last 50: fresh examples
        n_tokens = gen.integers(1, 12, size=4)
        logprobs = [gen.uniform(-6, 0, size=int(n)) for n in n_tokens]
        choices = ["".join(gen.choice(letters, size=int(gen.integers(1, 40)))) for _ in range(4)]
        cases.append((f"random example #{i}: 4 endings of {n_tokens.tolist()} tokens", logprobs, choices))
    for why, logprobs, choices in cases:
        case = (f"{why}; token log-probs {[np.round(lp, 3).tolist() for lp in logprobs]}, "
                f"endings {choices}")
        got = call(ex.acc_norm_choice, case, [lp.copy() for lp in logprobs], list(choices))
        expected = ev.choose_endings(logprobs, choices)
        if not isinstance(got, (int, np.integer)) or int(got) != expected["pred_norm"]:
            per_char = ", ".join(f"{v:.4f}" for v in expected["logprob_per_char"])
            raise Wrong(case, f"chosen ending: expected {expected['pred_norm']}, got {got!r}   "
                              f"(06's sum/len(ending) per ending: {per_char})",
                        "score = sum of the ending's token log-probs / len(ending) in characters (Python len of "
                        "the str); return the index of the highest, the first one on a tie")


# --- hellaswag_requests (06_eval.py, section 2: example_pairs, encode_requests; section 4: hellaswag_requests) ---

def hellaswag_examples() -> list[dict]:
    """Hand-made examples in 06's prepared form (context/choices preprocessed, raw_ctx/raw_endings raw)."""
    ev = importlib.import_module("06_eval")
    rows = [("Baking cookies", "A woman puts flour in a bowl.", "she", ["stirs it slowly.", "[title] Eat them.",
             "throws the bowl away.", "sings  a song."]),
            ("Personal Care", "How to wash your hands [title] Wet your hands. [step]", "",
             ["[substeps] Use soap and warm water.", "Dry them first.", "Skip it.", "Rub for 20 seconds."]),
            ("", "", "", ["the cat sat on the mat.", "the dog ate it.", "a bird flew.", "nothing happened."]),
            ("Running", "The man ties his shoes ", "then he", ["runs 5 km.", "sits down.", "walks home.", "stops."])]
    fresh = np.random.default_rng(fresh_seed("hellaswag_requests"))
    words = "the a man woman dog runs walks slowly [title] into bowl home café 20 km".split()
    say = lambda n: " ".join(fresh.choice(words, size=n))                   # noqa: E731
    rows.append((say(2).title(), say(6) + ".", say(2), [say(int(fresh.integers(1, 7))) + "." for _ in range(4)]))
    examples = []
    for i, (label, ctx_a, ctx_b, endings) in enumerate(rows):
        row = dict(ind=i, activity_label=label, ctx_a=ctx_a, ctx_b=ctx_b, ctx=(ctx_a + " " + ctx_b).strip(),
                   split_type="zeroshot", label=0, endings=endings, source_id="wikihow~1")
        examples.append(ev.prepare_example(row))
    examples[2]["context"] = ""            # an empty context: lm-eval scores it after an EOT token
    examples[3]["context"] += " "          # a context ending in spaces: lm-eval moves them to the continuation
    return examples


def hellaswag_tokenizer():
    tokenizer_lib = importlib.import_module("01_tokenizer")
    text = " ".join(ex["context"] + " " + " ".join(ex["choices"]) for ex in hellaswag_examples())
    return tokenizer_lib, tokenizer_lib.train_tokenizer([text] * 3, tokenizer_lib.MIN_VOCAB_SIZE + 120,
                                                        show_progress=False)


def check_hellaswag_requests(ex) -> None:
    ev = importlib.import_module("06_eval")
    tokenizer_lib, tokenizer = hellaswag_tokenizer()
    eot = tokenizer_lib.eot_id(tokenizer)
    examples = hellaswag_examples()
    hints = {"lm-eval": "lm-eval: move the context's trailing whitespace to the front of the continuation, encode "
                        "context + continuation ONCE and cut it after len(encode(context)) tokens; the "
                        "continuation is \" \" + choice; an empty context becomes [eot]",
             "linnet": "linnet: encode the context and \" \" + choice separately; an empty context becomes [eot]",
             "nanogpt": "nanoGPT: the RAW context and \" \" + the RAW ending (no preprocessing), encoded separately"}
    for mode, nanogpt in [("linnet", False), ("lm-eval", False), ("nanogpt", False), ("lm-eval", True)]:
        case = f"{len(examples)} examples (4 endings each), mode {mode!r}, nanogpt={nanogpt}, eot {eot}"
        expected = ev.hellaswag_requests(tokenizer, examples, mode, nanogpt)
        got = call(ex.hellaswag_requests, case, tokenizer, [dict(e) for e in examples], mode, nanogpt, eot)
        if not isinstance(got, list) or len(got) != len(expected):
            raise Wrong(case, f"expected a list of {len(expected)} requests, got "
                        f"{len(got) if isinstance(got, list) else type(got).__name__}",
                        "4 requests per example in `mode` (example i → 4i..4i+3); with nanogpt=True, the 4 "
                        "nanoGPT requests of every example follow AFTER all of those")
        positions = {}
        for j, (c, k) in enumerate(expected):
            positions.setdefault((tuple(c), tuple(k)), j)
        for i, (request, (ctx, cont)) in enumerate(zip(got, expected)):
            which = "nanogpt" if i >= 4 * len(examples) else mode
            ex_i, ending = (i % (4 * len(examples))) // 4, i % 4
            where = f"request {i} (example {ex_i}, ending {ending}, {which})"
            if not (isinstance(request, (tuple, list)) and len(request) == 2
                    and all(isinstance(ids, list) and all(isinstance(t, int) for t in ids) for ids in request)):
                raise Wrong(case, f"{where} should be (context_ids, continuation_ids), two lists of ints; got "
                            f"{request!r:.80}")
            key = tuple(map(tuple, request))
            if key != (tuple(ctx), tuple(cont)) and key in positions:
                raise Wrong(case, f"{where} is the request expected at position {positions[key]}"
                            ": the requests are right but in the wrong order",
                            "example i → requests 4i..4i+3 in `mode`; with nanogpt=True ALL of those first, then "
                            "the nanoGPT requests of every example, in the same order")
            for part, got_ids, exp_ids in (("context", request[0], ctx), ("continuation", request[1], cont)):
                if got_ids != exp_ids:
                    show = lambda ids: f"{ids} = {[tokenizer.decode([t]) for t in ids]}"
                    raise Wrong(case, f"{where}, {part} ids:\n    expected {show(exp_ids)}\n    got      "
                                f"{show(got_ids)}", hints[which])


CHECKS = {"acc_norm": check_acc_norm, "hellaswag_requests": check_hellaswag_requests}
