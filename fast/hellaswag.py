"""HellaSwag scored fast: the fast twin of 06's plain `score_requests_reference` (one request per forward pass).

06 teaches the batched scorer itself (section 3: many endings per forward pass, padded on the right, sorted by
length, one upload, one host sync). What is here makes it faster still, each piece equal to what it replaces:
  * each context once (`score_packed`): an example's 4 endings share their context, so one row holds the context
    and then each ending after it — its RoPE positions counting on from the context's end, its token shift
    reading its own sequence, a mask letting each ending see the context and itself — and 02's `LLM.hidden`
    runs such rows directly (its `packed` argument): about half the tokens of 4 whole rows, the same numbers up to
    float rounding (tests/test_06_eval.py compares packed and whole rows);
  * each distinct token sequence scored once (`distinct_requests`);
  * the next part of the examples tokenised while the GPU scores this one (`tokenized_ahead`), with Python's
    garbage collector paused over the many small lists (`gc_paused`);
  * cuDNN's per-shape attention plans off while scoring (`attention_for_many_shapes`), every batch uploaded in
    one copy (`upload`), and `compiled_hidden` for a process that scores many times.
Measured (all 10,042 examples, linnet's shape): BENCHMARKS.md, "HellaSwag timing".
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import gc
import itertools

import numpy as np
import torch


# --- each distinct request once, each context once --------------------------------------------------------

def ranges(counts) -> np.ndarray:
    """np.concatenate([np.arange(c) for c in counts]) without a Python loop.

    >>> ranges([2, 0, 3]).tolist()
    [0, 1, 0, 1, 2]"""
    counts = np.asarray(counts, dtype=np.int64)
    ends = np.cumsum(counts)
    return np.arange(ends[-1] if len(ends) else 0) - np.repeat(ends - counts, counts)


def distinct_requests(fitted) -> tuple[list, list[int]]:
    """The distinct token sequences among `fitted` requests (as the model reads them: 06's `fit_to_window`), and
    for each request the index of its distinct one: score those, then share the results.

    Identical requests give identical log-probs, so scoring one of them loses nothing. With the tiny 64-token
    window, cutting a context from the left often removes lm-eval's "Label: " prefix, and then the
    nanoGPT-style request is the same token sequence as lm-eval's (11,552 of 40,168 on the full set); with
    linnet's 1,024-token window almost none coincide.

    >>> distinct_requests([([1, 2], [3]), ([1, 2], [3]), ([1], [2, 3])])   # the 1st and 2nd are one sequence
    ([([1, 2], [3]), ([1], [2, 3])], [0, 0, 1])"""
    index: dict = {}
    owner = [index.setdefault((key, tuple(k)), i)
             for i, (key, (_, k)) in enumerate(zip(context_keys([c for c, _ in fitted]), fitted))]
    firsts = sorted(set(owner))
    position = {i: j for j, i in enumerate(firsts)}
    return [fitted[i] for i in firsts], [position[i] for i in owner]


def context_keys(contexts: list[list[int]]) -> list[tuple]:
    """tuple(c) of each context list, made once per list: an example's 4 requests share one list
    (`encode_requests`), so this is a quarter of the work of tuple() on each.

    >>> shared = [1, 2]
    >>> context_keys([shared, shared, [3]])
    [(1, 2), (1, 2), (3,)]"""
    made: dict = {}
    keys = []
    for c in contexts:
        entry = made.get(id(c))
        if entry is None:
            entry = made[id(c)] = (c, tuple(c))          # holding c keeps its id from being reused
        keys.append(entry[1])
    return keys


def pack_requests(requests: list[tuple[list[int], list[int]]], max_tokens: int) -> dict:
    """(context, continuation) requests that fit the window → packed rows, one per distinct context (a new
    one when a request would pass `max_tokens`): the requests that share it in order, each adding its
    continuation's tokens but the last after the context. Flat arrays over all packed rows, packed row p
    at start[p]:start[p] + size[p]: `tokens`, `positions`, `segment` (0 the context, k its k-th ending);
    and per continuation token, grouped by packed row (`scored_start`): `query` (the flat index that
    predicts it), `target`, `slot` (request r's j-th token is output slot offsets[r] + j, offsets the
    running sum of the continuation lengths).

    >>> p = pack_requests([([5, 6], [7, 8]), ([5, 6], [9])], max_tokens=100)   # one context, two endings
    >>> p["tokens"].tolist(), p["positions"].tolist(), p["segment"].tolist()   # 9 is only a target
    ([5, 6, 7], [0, 1, 2], [0, 0, 1])
    >>> p["query"].tolist(), p["target"].tolist()       # 6 → 7, 7 → 8, 6 → 9
    ([1, 2, 1], [7, 8, 9])"""
    rows: dict = {}                      # context → the packed row being filled: [index, size, pieces, members]
    packed = []
    for r, (key, (context, k)) in enumerate(zip(context_keys([c for c, _ in requests]), requests)):
        row = rows.get(key)
        if row is None or row[1] + len(k) - 1 > max_tokens:
            row = rows[key] = [len(packed), len(context), [context], []]
            packed.append(row)
        row[2].append(k[:-1])                                  # its inputs after the context
        row[3].append((r, row[1]))                             # request r's inputs start at row[1]
        row[1] += len(k) - 1
    size = np.array([row[1] for row in packed], dtype=np.int64)
    start = np.cumsum(size) - size
    pieces = [piece for row in packed for piece in row[2]]     # context, ending 1, ending 2, … of each row
    piece_len = np.array([len(piece) for piece in pieces], dtype=np.int64)
    tokens = np.fromiter(itertools.chain.from_iterable(pieces), np.int64, int(size.sum()))
    L = np.array([len(row[2][0]) for row in packed], dtype=np.int64)
    member = np.array([k for row in packed for k in range(len(row[2]))], dtype=np.int64)
    piece_row = np.repeat(np.arange(len(packed)), [len(row[2]) for row in packed])
    piece_start = np.cumsum(piece_len) - piece_len - start[piece_row]  # in its packed row
    # a context's tokens sit at positions 0..L-1; an ending's count on from L, as in its whole row
    shift = np.where(member > 0, piece_start - L[piece_row], 0)
    positions = ranges(size) - np.repeat(shift, piece_len)
    segment = np.repeat(member, piece_len)
    # every continuation token is predicted at its sequence's previous position: the context's last
    # token for the first, the ending's own tokens after that
    order = [(p, r, s) for p, row in enumerate(packed) for r, s in row[3]]          # grouped by packed row
    p, r, s = (np.array(x, dtype=np.int64) for x in zip(*order))
    n = np.array([len(requests[i][1]) for i in r], dtype=np.int64)
    offsets = np.cumsum([0] + [len(k) for _, k in requests])[:-1]
    conts = np.fromiter(itertools.chain.from_iterable(requests[i][1] for i in r), np.int64, int(n.sum()))
    j, p, r, s = ranges(n), np.repeat(p, n), np.repeat(r, n), np.repeat(s, n)
    return {"start": start, "size": size, "members": np.array([len(row[3]) for row in packed], dtype=np.int64),
            "tokens": tokens, "positions": positions, "segment": segment,
            "query": start[p] + np.where(j == 0, L[p] - 1, s + j - 1), "target": conts,
            "slot": offsets[r] + j, "scored_start": np.searchsorted(p, np.arange(len(packed) + 1))}


def packed_batch_arrays(packed: dict, batch: list[int]) -> list[np.ndarray]:
    """The packed rows `batch` as (B, T) tokens, positions and segments (padding: token 0, position 0,
    segment -1, which only other padding sees), and (M,) the flat positions in (B·T) to score, their
    targets and output slots."""
    batch = np.asarray(batch)
    sizes, starts = packed["size"][batch], packed["start"][batch]
    B, T = len(batch), int(sizes.max())
    b, j = np.repeat(np.arange(B), sizes), ranges(sizes)
    src, dst = starts[b] + j, b * T + j
    tokens, positions = np.zeros(B * T, np.int64), np.zeros(B * T, np.int64)
    segment = np.full(B * T, -1, np.int64)
    tokens[dst], positions[dst], segment[dst] = packed["tokens"][src], packed["positions"][src], packed["segment"][src]
    counts = packed["scored_start"][batch + 1] - packed["scored_start"][batch]
    b = np.repeat(np.arange(B), counts)
    s = np.repeat(packed["scored_start"][batch], counts) + ranges(counts)
    flat = b * T + packed["query"][s] - starts[b]
    return [tokens.reshape(B, T), positions.reshape(B, T), segment.reshape(B, T), flat, packed["target"][s],
            packed["slot"][s]]


PACKED_ROW_WINDOWS = 4   # a packed row holds at most 4 windows of tokens (one context and its 4 endings fit)
PACKING_PAYS = 2 / 3   # pack only if that leaves at most 2/3 of the whole rows' tokens: a packed row needs a
                       # T × T mask and gathers, so its tokens cost more. On a CPU: a layer of linnet's width at
                       # its window (48 % fewer tokens) took 0.45× the time packed; 05's tiny model with its
                       # 64-token window (contexts cut apart: 20 % fewer) took 1.6–2.3×.


@torch.no_grad()
def score_packed(core, requests, device, plan_batches, batch_tokens: int, batch_size: int | None = None,
                 advance=None):
    """06's score_requests(share_prefix=True): requests that fit the window (06's `fit_to_window`) → each one's
    continuation log-probs, as 06's `score_whole_rows` computes them, with each distinct context read once
    (`pack_requests`); None when packing saves too little (PACKING_PAYS): then 06 reads whole rows. Packed rows
    are batched by the token budget (06's `plan_batches`), uploaded once, and run through 02's `LLM.hidden`
    with `packed` (positions, the tokens each token shift reads, the mask), then 02's `LLM.head`. `advance(n)`:
    told of every n requests done."""
    window = core.config.block_size
    packed = pack_requests(requests, max_tokens=PACKED_ROW_WINDOWS * window)   # a packed row's mask is T × T
    if packed["size"].sum() > PACKING_PAYS * sum(len(c) + len(k) - 1 for c, k in requests):
        return None
    batches = plan_batches(packed["size"].tolist(), batch_tokens, batch_size)
    arrays = iter(upload([a for batch in batches for a in packed_batch_arrays(packed, batch)], device))
    offsets = np.cumsum([0] + [len(k) for _, k in requests])
    out = torch.empty(int(offsets[-1]), dtype=torch.float32, device=device)
    for batch in attention_for_many_shapes(batches):
        tokens, positions, segment, flat, targets, slots = (next(arrays) for _ in range(6))
        if advance is not None:
            advance(int(packed["members"][batch].sum()))
        visible = (positions[:, None, :] <= positions[:, :, None]) & (
            (segment[:, None, :] == 0) | (segment[:, None, :] == segment[:, :, None]))   # (B, T query, T key)
        # the token d back in a token's own sequence: position p - d, in the context (row index p - d, as a
        # context starts its row) or else in its own ending (row index t - d); -1: none
        t, L = torch.arange(tokens.shape[1], device=device), (segment == 0).sum(1, keepdim=True)   # (T,), (B, 1)
        before = torch.stack([torch.where(positions - d < L, positions - d, t - d).clamp_min(-1)
                              for d in (1, 2)], -1)                                 # (B, T, 2)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            x, _ = core.hidden(tokens, packed=(positions, before, visible[:, None]))  # (B, T, C)
            logits = core.head(x.flatten(0, 1)[flat])                                # (M, V)
        out[slots] = logits.float().log_softmax(-1).gather(1, targets[:, None])[:, 0]
    result = out.double().cpu().numpy()                                           # the one host sync
    return [result[offsets[r]:offsets[r + 1]] for r in range(len(requests))]


def attention_for_many_shapes(batches):
    """Iterate over `batches` with SDPA's cuDNN backend switched off. cuDNN builds an execution plan for every
    new (batch, length) shape, on the CPU: 7–21 ms a call on an H200, which made HellaSwag's scoring CPU-bound
    (BENCHMARKS.md, "HellaSwag timing") since nearly every batch here has a new shape. Flash and memory-efficient
    attention need no plan. Training keeps the default: its one shape is planned once."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
        yield from batches


def upload(arrays: list[np.ndarray], device) -> list[torch.Tensor]:
    """Many int64 arrays → device tensors of the same shapes, in ONE host → device copy: a copy per batch
    would wait each time for the GPU to finish its queued work."""
    if not arrays:
        return []
    flat = torch.from_numpy(np.concatenate([a.ravel() for a in arrays]).astype(np.int64)).to(device)
    return [t.view(a.shape) for t, a in zip(flat.split([a.size for a in arrays]), arrays)]



# --- the host's share: tokenising ahead, the garbage collector, a compiled forward ----------------------------

TOKENIZE_AHEAD_PARTS = 4        # HellaSwag scored in up to 4 parts: part i + 1 is tokenised while part i is scored
TOKENIZE_AHEAD_MIN_EXAMPLES = 1000   # ... of at least this many examples each (a small run stays one part)
TOKENIZE_AHEAD_ON_CPU = False   # on a CPU tokenising competes with the model for the same cores: one part


def part_bounds(n: int) -> list[int]:
    """Where `tokenized_ahead` cuts n examples: up to TOKENIZE_AHEAD_PARTS parts of at least
    TOKENIZE_AHEAD_MIN_EXAMPLES each.

    >>> part_bounds(10042), part_bounds(2500), part_bounds(300)
    ([0, 2510, 5021, 7531, 10042], [0, 1250, 2500], [0, 300])"""
    k = max(1, min(TOKENIZE_AHEAD_PARTS, n // TOKENIZE_AHEAD_MIN_EXAMPLES))
    return np.linspace(0, n, k + 1).astype(int).tolist()


def tokenized_ahead(requests, examples: list[dict], split: bool = True):
    """Yield (part of `examples`, `requests(part)`) in order. A worker thread tokenises the next part
    while the caller scores this one: tokenising all 10,042 examples' requests took 3.1 s of 06's 13.5 s on an
    H200's host (BENCHMARKS.md, "HellaSwag timing"), time the GPU sat idle. `encode_batch`'s Rust part runs
    with the GIL released, so the scoring thread keeps launching kernels meanwhile. Parts are independent (each
    request belongs to one example), so the scores are those of one part; only the batches are cut at part ends
    (identical requests in two parts are scored twice). split=False (a CPU, unless TOKENIZE_AHEAD_ON_CPU): one part.
    An error in the worker reaches the caller when its part is due; Ctrl-C waits for the part being tokenised."""
    bounds = part_bounds(len(examples)) if split or TOKENIZE_AHEAD_ON_CPU else [0, len(examples)]
    parts = [examples[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        futures = [pool.submit(requests, part) for part in parts]
        for part, future in zip(parts, futures):
            yield part, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def gc_paused():
    """Python's garbage collector paused for the block. Tokenising and packing 80,000 requests makes
    hundreds of thousands of small lists and tuples, and every few hundred new ones the collector walks
    all of them again (on a CPU, pack_requests took 1.6–2.0 s with it on, 0.6 s with it paused). Nothing
    made here is a reference cycle, and the collector runs again afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def hidden_of(core, idx):
    """core.hidden(idx) as a plain function: one torch.compile then serves every model, and holds none."""
    return core.hidden(idx)


@functools.cache
def compiled_hidden_of():
    """torch.compile(hidden_of) with dynamic shapes (each HellaSwag batch has its own B and T): made once
    per process, on first use."""
    return torch.compile(hidden_of, dynamic=True)


def compiled_hidden(core):
    """core.hidden, compiled: what continuation_logits calls with compiled=True."""
    return functools.partial(compiled_hidden_of(), core)
