"""01_tokenizer.py: the hand-written BPE equals HF's, the tokenizer round-trips any text, bad input stops cleanly."""
import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import CORPUS, lesson, run_script

house = lesson("house")
tok = lesson("01_tokenizer")


def corpus_sample(max_bytes_per_file: int) -> list[str]:
    """The first documents of each embedded corpus file (python docs and Shakespeare)."""
    return [d for f in house.list_text_files([CORPUS]) for d in tok.read_docs(f, max_bytes_per_file)]


@pytest.fixture(scope="module")
def small_tokenizer():
    """A 512-token tokenizer trained once per module on 200 KB of each corpus file (~0.5 s)."""
    return tok.train_tokenizer(corpus_sample(200_000), vocab_size=512, show_progress=False)


@pytest.fixture(scope="module")
def lesson_text():
    """A few KB of mixed text: prose, reST/code, and non-ASCII, as the scratch trainer gets."""
    docs = corpus_sample(3_000)
    return docs[0][:3_000] + "\n" + docs[-1][:3_000] + "\nnaïve café — 日本語 😀😀 日本語 😀 café\n"


# --- 1-2. bytes and words -------------------------------------------------------------------------------

def test_byte_table_is_hf_byte_level_alphabet():
    table = tok.bytes_to_unicode()
    assert len(set(table.values())) == 256
    assert sorted(table.values()) == sorted(tok.pre_tokenizers.ByteLevel.alphabet())
    assert (table[ord(" ")], table[ord("\n")], table[ord("A")]) == ("Ġ", "Ċ", "A")
    assert tok.token_bytes("Ġthe") == b" the"


def test_split_words_is_what_hf_byte_level_does(lesson_text):
    hf = tok.pre_tokenizers.ByteLevel(add_prefix_space=False)
    for text in [lesson_text, "Hello world's  2024!!  \n\n  x\t\ty", "don't 'll 're ÿ\x00\x7f", "a  b   c"]:
        assert tok.split_words(text) == [w for w, _ in hf.pre_tokenize_str(text)]


def test_training_cuts_words_longer_than_the_bound_and_encoding_does_not():
    text = "x" + "-" * 600 + " " * 300 + "y " + "é" * 300
    cut = [len(tok.token_bytes(w).decode()) for w in tok.split_words(text, tok.TRAINING_SPLITTER)]
    assert cut == [1, 256, 256, 88, 256, 43, 2, 1 + 256, 44]             # a word's leading space comes on top
    assert [len(tok.token_bytes(w).decode()) for w in tok.split_words(text)] == [1, 600, 299, 2, 301]


@pytest.mark.slow
def test_no_word_of_the_embedded_corpus_is_cut():
    """The bound leaves the tiny tokenizer byte-identical: no word of embedded/corpus reaches it (the longest, a
    table rule of the Python docs, has 132 characters)."""
    longest = max(len(w) for d in house.iter_texts([CORPUS]) for w, _ in tok.GPT2_SPLITTER.pre_tokenize_str(d))
    assert longest == 132 < tok.MAX_WORD_CHARS


# --- 3. scratch BPE vs HF --------------------------------------------------------------------------------

def test_scratch_bpe_learns_exactly_hf_merges(lesson_text):
    vocab_size = 700  # more than this text supports at min frequency 2: both must stop at the same merge
    hf = tok.train_tokenizer([lesson_text], vocab_size, show_progress=False)
    merges, vocab = tok.train_bpe_scratch([lesson_text], vocab_size)
    assert len(merges) > 100
    assert merges == tok.tokenizer_merges(hf)
    assert vocab == hf.get_vocab()


def test_both_trainers_cut_long_words_alike(lesson_text):
    """Runs longer than MAX_WORD_CHARS of punctuation, letters, digits and spaces: the same merges, in order."""
    text = lesson_text + "\n" + "-" * 1_000 + " " + "ab" * 400 + " " + "7" * 700 + " " * 900 + "end " + "\x00" * 1_300
    hf = tok.train_tokenizer([text], 700, show_progress=False)
    merges, vocab = tok.train_bpe_scratch([text], 700)
    assert merges == tok.tokenizer_merges(hf) and vocab == hf.get_vocab()
    assert "-" * 256 in vocab and "-" * 512 not in vocab                  # the run was cut at 256


@pytest.mark.parametrize("char", ["-", "\x00", "a", " "], ids=["dash", "NUL", "letter", "space"])
def test_a_1_mb_run_of_one_character_trains_within_seconds(char):
    """A 1 MB line of "-" or NUL once stalled training (no progress after 300 s; 100 KB of NUL took 11.5 s):
    words are cut at MAX_WORD_CHARS for training, so both trainers take a fraction of a second (limit: 10 s)."""
    for train in (lambda text: tok.train_tokenizer([text], 1_024, show_progress=False),
                  lambda text: tok.train_bpe_scratch([text], 1_024)):
        start = time.perf_counter()
        train(char * 1_000_000)
        assert time.perf_counter() - start < 10


def test_ties_go_to_the_pair_with_smallest_ids_not_alphabetical_or_first_seen():
    """Where the tie-break shows: "abc abc abc bd bd bd".

    Step 1: (a,b), (b,c), (b,d) all occur 3 times; smallest ids -> (a,b) (also alphabetical).
    Step 2: (ab,c) and (b,d) both occur 3 times. "ab" < "b" alphabetically and (ab,c) is seen first
    in the text, but "ab" is a NEW token (id 258) while "b" is a byte (id 2 + 65): HF picks (b,d).
    """
    text = "abc abc abc bd bd bd"
    hf = tok.train_tokenizer([text], tok.MIN_VOCAB_SIZE + 2, show_progress=False)
    scratch, _ = tok.train_bpe_scratch([text], tok.MIN_VOCAB_SIZE + 2)
    assert tok.tokenizer_merges(hf) == scratch == [("a", "b"), ("b", "d")]


def test_min_frequency_stops_both_trainers():
    text = "xyxyxy qq"  # (x,y) occurs 3 times, every other pair once
    hf = tok.train_tokenizer([text], 1000, min_frequency=3, show_progress=False)
    scratch, _ = tok.train_bpe_scratch([text], 1000, min_frequency=3)
    assert tok.tokenizer_merges(hf) == scratch == [("x", "y")]


def test_scratch_encode_gives_hf_ids(lesson_text):
    hf = tok.train_tokenizer([lesson_text], 600, show_progress=False)
    merges, vocab = tok.train_bpe_scratch([lesson_text], 600)
    probe = lesson_text[:2000] + " unseen wörds 🙂"
    assert tok.encode_scratch(probe, merges, vocab) == hf.encode(probe).ids


# --- 4. the HF tokenizer ---------------------------------------------------------------------------------

def test_our_pieces_are_hf_byte_level_bpe_tokenizer(lesson_text):
    from tokenizers import ByteLevelBPETokenizer

    reference = ByteLevelBPETokenizer()
    reference.train_from_iterator([lesson_text], vocab_size=600, min_frequency=2, show_progress=False,
                                  special_tokens=tok.SPECIAL_TOKENS)
    ours = tok.train_tokenizer([lesson_text], 600, show_progress=False)
    assert json.loads(ours.to_str()) == json.loads(reference._tokenizer.to_str())


def test_special_tokens_have_fixed_ids_and_encode_to_one_id(small_tokenizer):
    t = small_tokenizer
    assert tok.eot_id(t) == 0 and t.token_to_id(tok.PAD) == 1
    assert t.encode(tok.EOT).ids == [0] and t.encode(tok.PAD).ids == [1]
    ids = t.encode("end." + tok.EOT + "Next doc").ids
    assert ids.count(0) == 1
    assert t.decode(ids, skip_special_tokens=False) == "end." + tok.EOT + "Next doc"


ROUND_TRIP_EXAMPLES = ["", " ", "\n\n\t\r\n", "héllo wörld", "日本語のテキスト", "👩‍👩‍👧 🏳️‍🌈 😀",
                       "\x00\x01\x1b[31mred\x7f", "  leading and trailing  ", "def f(x):\n    return x**2\n"]


@pytest.mark.parametrize("text", ROUND_TRIP_EXAMPLES)
def test_round_trip_examples(small_tokenizer, text):
    assert small_tokenizer.decode(small_tokenizer.encode(text).ids) == text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_round_trip_any_unicode(small_tokenizer, text):
    ids = small_tokenizer.encode(text).ids
    # Text that spells a special token ("<|endoftext|>") becomes that token (01's docstring), and decode drops
    # special tokens by default: keep them to get the text back. (Hypothesis does try those strings.)
    assert small_tokenizer.decode(ids, skip_special_tokens=False) == text
    if not any(special in text for special in tok.SPECIAL_TOKENS):
        assert small_tokenizer.decode(ids) == text


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200))
def test_round_trip_every_byte_value_as_text(small_tokenizer, data):
    text = data.decode("latin-1")  # chars U+0000..U+00FF: every one, control characters included
    assert small_tokenizer.decode(small_tokenizer.encode(text).ids) == text


def test_truncation_equals_training_with_a_smaller_vocab(lesson_text):
    big = tok.train_tokenizer([lesson_text], 500, show_progress=False)
    small = tok.train_tokenizer([lesson_text], 350, show_progress=False)
    assert tok.truncate_tokenizer(big, 350).to_str() == small.to_str()
    assert tok.truncate_tokenizer(big, tok.MIN_VOCAB_SIZE).encode("ab").ids == [2 + 64, 2 + 65]  # raw bytes


def test_save_load_fingerprint(small_tokenizer, tmp_path):
    path = tok.save_tokenizer(small_tokenizer, tmp_path / "tokenizer.json")
    assert [p.name for p in tmp_path.iterdir()] == ["tokenizer.json"]
    loaded = tok.load_tokenizer(path)
    assert tok.tokenizer_sha256(path) == tok.tokenizer_sha256(small_tokenizer) == tok.tokenizer_sha256(loaded)
    text = "The same ids after a save and a load, 日本語 too."
    assert loaded.encode(text).ids == small_tokenizer.encode(text).ids
    other = tok.train_tokenizer(corpus_sample(50_000), 300, show_progress=False)
    assert tok.tokenizer_sha256(other) != tok.tokenizer_sha256(path)


def test_transformers_loads_it_and_encodes_identically(small_tokenizer, tmp_path):
    from transformers import PreTrainedTokenizerFast

    path = tok.save_tokenizer(small_tokenizer, tmp_path / "tokenizer.json")
    fast = PreTrainedTokenizerFast(tokenizer_file=str(path), eos_token=tok.EOT, pad_token=tok.PAD)
    assert (fast.eos_token_id, fast.pad_token_id) == (0, 1)
    for text in ROUND_TRIP_EXAMPLES + corpus_sample(5_000):
        ids = fast(text, add_special_tokens=False)["input_ids"]
        assert ids == small_tokenizer.encode(text).ids
        assert fast.decode(ids) == text


def test_bytes_per_token_and_measure_file(small_tokenizer, tmp_path):
    assert tok.bytes_per_token(tok.truncate_tokenizer(small_tokenizer, 258), ["héllo"]) == 1.0  # 6 bytes, 6 tokens
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in corpus_sample(20_000)))
    r = tok.measure_file(small_tokenizer, tmp_path / "a.jsonl", None)
    assert r["bytes"] > 30_000 and 1.5 < r["bytes_per_token"] < 4 and r["mb_per_s"] > 0


# --- bad input -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("vocab_size, message", [(258, "too small: use at least 259"), (70_000, "uint16")])
def test_bad_vocab_size(vocab_size, message):
    with pytest.raises(house.UserError, match=message):
        tok.train_tokenizer(["some text"], vocab_size)


def test_empty_corpus():
    with pytest.raises(house.UserError, match="training text is empty"):
        tok.train_tokenizer(iter([]), 300)


def test_unreadable_file_mid_training_stops_the_trainer(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "fine text " * 50}) + "\n")
    (tmp_path / "b.txt").write_bytes(b"caf\xe9 in latin-1, not UTF-8")
    with pytest.raises(house.UserError, match=r"b.txt is not UTF-8"):
        tok.train_tokenizer(house.iter_texts([tmp_path]), 300, show_progress=False)


@pytest.mark.parametrize("content, message", [
    (None, "is missing: run python 01_tokenizer.py --preset tiny"),
    ('{"version": "1.0", "model": ', "is not a valid tokenizer.json"),
    ("not json at all", "is not a valid tokenizer.json"),
])
def test_load_tokenizer_missing_or_corrupt(tmp_path, content, message):
    path = tmp_path / "tokenizer.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(house.UserError, match=message) as err:
        tok.load_tokenizer(path)
    assert "\n" not in str(err.value)


def test_load_tokenizer_without_eot(tmp_path):
    no_eot = tok.new_byte_level_bpe()
    (tmp_path / "t.json").write_text(no_eot.to_str())
    with pytest.raises(house.UserError, match="has no <\\|endoftext\\|> token"):
        tok.load_tokenizer(tmp_path / "t.json")


def test_real_job_without_download_says_run_04_data(monkeypatch, tmp_path):
    monkeypatch.setattr(house, "RAW_DATA_DIR", tmp_path / "raw")
    with pytest.raises(house.NotFound, match="run python 04_data.py first"):
        tok.data_files(tok.build_parser().parse_args([]))


def write_good_then_bad_corpus(directory):
    """25 good documents (enough for the scratch lesson), then a file with a broken line."""
    directory.mkdir()
    (directory / "a.jsonl").write_text("".join(json.dumps({"text": f"document {i} " * 40}) + "\n" for i in range(25)))
    (directory / "b.jsonl").write_text('{"text": "ok"}\n{"text": broken\n')


@pytest.mark.parametrize("case", ["vocab too small", "empty corpus", "bad line mid-training", "latin-1 mid-training",
                                  "corrupt tokenizer"])
def test_script_bad_input_is_one_error_line_and_no_tokenizer_left(tmp_path, case):
    out = tmp_path / "out"
    data = tmp_path / "data"
    args = ["--preset", "tiny", "--out", str(out), "--data", str(data)]
    if case == "vocab too small":
        data.mkdir()
        args += ["--vocab-size", "100"]
    elif case == "empty corpus":
        data.mkdir()
        (data / "empty.jsonl").write_text("\n\n")
    elif case == "bad line mid-training":
        write_good_then_bad_corpus(data)
        out.mkdir()
        (out / "tokenizer.json").write_text("an older, complete tokenizer")
    elif case == "latin-1 mid-training":   # past the scratch lesson's 20 paragraphs: found while HF's trainer reads
        data.mkdir()
        (data / "notes.txt").write_bytes(b"a paragraph of plain text\n\n" * 5_000 + "caf\xe9\n".encode("latin-1"))
    else:
        write_good_then_bad_corpus(data)
        (tmp_path / "corrupt.json").write_text('{"model": {"type": "BPE", "vocab": {')
        args += ["--tokenizer", str(tmp_path / "corrupt.json")]
    proc = run_script("01_tokenizer.py", *args, timeout=120)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    if case == "latin-1 mid-training":
        assert lines[0] == f"error: {data / 'notes.txt'} is not UTF-8 text: convert it or leave it out"
    if case == "bad line mid-training":
        assert "b.jsonl:2" in lines[0]
        assert (out / "tokenizer.json").read_text() == "an older, complete tokenizer"
        assert [p.name for p in out.iterdir()] == ["tokenizer.json"]
    else:
        assert not (out / "tokenizer.json").exists()


def test_plots_return_figures_and_the_byte_row_has_one_box_per_byte(small_tokenizer):
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    sentence = tok.EXAMPLE_SENTENCE
    rows = tok.token_boundaries(small_tokenizer, sentence)
    assert list(rows) == [tok.MIN_VOCAB_SIZE, 512]                   # bytes only, then the full 512
    assert len(rows[tok.MIN_VOCAB_SIZE]) == len(sentence.encode("utf-8"))
    assert len(rows[512]) < len(rows[tok.MIN_VOCAB_SIZE])
    sizes, curves = tok.compression_curves(small_tokenizer, {"s": [sentence]})
    assert sizes[0] == tok.MIN_VOCAB_SIZE and curves["s"][0] == 1.0   # no merges: one byte per token
    learned, in_text = tok.token_lengths(small_tokenizer, [sentence])
    assert len(learned) == 512 - tok.MIN_VOCAB_SIZE and in_text.sum() == len(sentence.encode("utf-8"))
    figures = [tok.plot_compression(sizes, curves), tok.plot_token_lengths(learned, in_text, 24),
               tok.plot_token_boundaries(sentence, rows)]
    assert all(isinstance(f, Figure) for f in figures)
    plt.close("all")


# --- the whole lesson ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_megabyte_line_of_one_character_does_not_stall_the_script(tmp_path):
    (tmp_path / "lines.txt").write_text("-" * 1_000_000 + "\n\n" + "\x00" * 1_000_000 + "\n\nsome words\n")
    proc = run_script("01_tokenizer.py", "--preset", "tiny", "--data", str(tmp_path / "lines.txt"),
                      "--out", str(tmp_path / "out"), timeout=120)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "trained vocab" in proc.stdout and (tmp_path / "out" / "tokenizer.json").is_file()


@pytest.mark.slow
def test_tiny_preset_end_to_end(tmp_path):
    proc = run_script("01_tokenizer.py", "--preset", "tiny", "--out", str(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "64 merges, 64 identical in order" in out
    assert "trained vocab 1,024" in out and "MB/s" in out
    assert out.count("plot: ") == 3
    t = tok.load_tokenizer(tmp_path / "tokenizer.json")
    assert t.get_vocab_size() == 1024 and tok.eot_id(t) == 0
    for name in ["compression", "token_lengths", "token_boundaries"]:
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    per_file = [line for line in out.splitlines() if "bytes/token" in line and "MB/s" in line]
    assert len(per_file) == 3  # python-docs, shakespeare, all
    for line in per_file:
        assert 1.5 < float(line.split("bytes/token")[0].split()[-1]) < 4.0
