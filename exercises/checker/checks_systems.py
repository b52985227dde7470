"""The systems track's checks (exercises/build/specs/): `ddp` and `rope_triton`.

ddp: the student's BucketedDDP runs in TWO guarded student processes (two Sandboxes, ranks 0 and 1 of a gloo
process group on this CPU) on 02's LLM at a tiny shape; each step's loss, gradients and weights are compared
with one process's: the gradients of each rank's batch, averaged. A recorder on the process group's all-reduce
(installed by `join_group`, in the student's processes) sees each bucket's size, whether it started inside the
backward, asynchronously, and whether it was waited on before finish_gradient_synchronization returned.

rope_triton: the student's Triton kernel (RoPE + QK-norm forward) through Triton's interpreter
(TRITON_INTERPRET=1, set in the student's process before the file loads) against 02's rope_qk_norm_reference;
skipped, with the reason, where triton is not installed (`skip_reason`).

The functions of section 1 run INSIDE the student's processes (Sandbox.make); the checks run here.
"""
from __future__ import annotations

import datetime
import importlib
import importlib.util
import os
import shutil
import signal
import sys
import tempfile
import threading
import traceback
from pathlib import Path

import torch

from exercises.checker.report import (Crashed, Wrong, call, check_returns, compare_tensors, fresh_seed,
                                      is_float_tensor, run_seed)
from exercises.checker.sandbox import RemoteError, Sandbox

WORLD = 2
TINY = dict(depth=2, n_embd=32, head_dim=16, n_head=2, n_kv_head=1, ffn_dim=32, n_experts=4, vocab_size=64,
            block_size=16)    # 02's LLM, as train_step's check builds it: 18 parameters, 33,376 values
LR = 0.1                      # plain SGD after each step: p ← p − LR·p.grad
GLOO_TIMEOUT = 20             # seconds a collective may wait for the other rank before gloo gives up

# --- 1. Inside the student's processes: the process group, the recorder, the model, one step ---------------

RECORD = {"phase": "idle", "calls": [], "hooked": set()}   # all-reduces since the step began; hooked tensors


class RecordedWork:
    """The Work of one all-reduce, handed to the student's code: the check sees whether it was waited on."""

    def __init__(self, work, entry: dict):
        self._work, self._entry = work, entry

    def wait(self, *args, **kwargs):
        self._entry["waited"] = self._entry["waited"] or RECORD["phase"]     # when: "backward", "finish", ...
        return self._work.wait(*args, **kwargs)

    def get_future(self):
        self._entry["waited"] = self._entry["waited"] or "future"    # its wait is the student's: counted as waited
        return self._work.get_future()

    def __getattr__(self, name):
        return getattr(self._work, name)


def join_group(rank: int, store_file: str) -> int:
    """Rank `rank` of a 2-process gloo group (a FileStore the checker made); every all-reduce is recorded."""
    import torch.distributed as dist
    store = dist.FileStore(store_file, WORLD)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=GLOO_TIMEOUT))
    group_type = type(dist.distributed_c10d._get_default_group())
    allreduce = group_type.allreduce

    def recorded_allreduce(self, tensors, *args, **kwargs):
        opts = args[0] if args else kwargs.get("opts")
        entry = {"numel": sum(t.numel() for t in tensors), "phase": RECORD["phase"], "waited": False,
                 "async": getattr(opts, "asyncOp", True)}
        RECORD["calls"].append(entry)
        return RecordedWork(allreduce(self, tensors, *args, **kwargs), entry)

    group_type.allreduce = recorded_allreduce
    for method in ("register_post_accumulate_grad_hook", "register_hook"):
        setattr(torch.Tensor, method, hook_recorder(getattr(torch.Tensor, method)))
    return rank


def hook_recorder(register):
    """Tensor.register_...hook that remembers which tensors got a hook (to name a parameter the hooks missed)."""
    def recorded(self, hook):
        RECORD["hooked"].add(id(self))
        return register(self, hook)
    return recorded


def tiny_llm(seed: int):
    """02's LLM at the TINY shape, initialised from `seed` (here and in the student's processes)."""
    model_lib = importlib.import_module("02_model")
    torch.manual_seed(seed)
    return model_lib.LLM(model_lib.LLMConfig(**TINY)).train()


def weights(model) -> dict:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def after_wrapping(model) -> dict:
    """The weights right after BucketedDDP(model, ...), and the parameters that got no hook (none are named
    when no hook at all went through Tensor.register_*hook: the student hooked another way)."""
    params = list(model.named_parameters())
    any_hooked = any(id(p) in RECORD["hooked"] for _, p in params)
    unhooked = [name for name, p in params if p.requires_grad and id(p) not in RECORD["hooked"]]
    return {"weights": weights(model), "unhooked": unhooked if any_hooked else []}


def ddp_step(ddp, model, x, y) -> dict:
    """One step as the spec's loop makes it: forward through the wrapper, backward, finish, then SGD. What the
    student's code raised comes back as ("raised", type, message, traceback) — this function never raises."""
    RECORD["calls"] = []
    try:
        model.zero_grad(set_to_none=True)
        RECORD["phase"] = "forward"
        _, loss = ddp(x, y)
        RECORD["phase"] = "backward"
        loss.backward()
        RECORD["phase"] = "finish"
        ddp.finish_gradient_synchronization()
    except BaseException as error:  # noqa: BLE001 — the student's error, reported with the student's frames
        trace = traceback.format_exception(type(error), error, error.__traceback__)
        mine = str(Path(__file__).resolve())
        return {"raised": (type(error).__name__, str(error), "".join(l for l in trace if mine not in l).rstrip())}
    finally:
        RECORD["phase"] = "idle"
    calls = [dict(c) for c in RECORD["calls"]]                          # as they were when finish returned
    grads = {name: None if p.grad is None else p.grad.detach().clone() for name, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= LR * p.grad
    return {"loss": float(loss.detach()), "grads": grads, "calls": calls, "weights": weights(model)}


def joined(rank: int, store_file: str):
    """join_group, its failure said as a value (an exception here would end the student's process)."""
    try:
        return join_group(rank, store_file)
    except Exception as error:  # noqa: BLE001 — the machine's problem, not the student's
        return f"{type(error).__name__}: {error}"


# --- 2. ddp, seen from the checker: the cases, the two ranks, one process's reference -----------------------

def spec_buckets(model, cap_mb: float) -> list[list[tuple[str, int]]]:
    """The spec's buckets as (name, values) lists: the parameters that need a gradient in REVERSE order of
    model.parameters(); a bucket closes before the next parameter would take it past cap_mb·2^20 bytes (so a
    parameter bigger than the cap is a bucket of its own)."""
    names = {id(p): name for name, p in model.named_parameters()}
    buckets, size = [[]], 0
    for p in [p for p in model.parameters() if p.requires_grad][::-1]:
        nbytes = p.numel() * p.element_size()
        if buckets[-1] and size + nbytes > cap_mb * 2**20:
            buckets, size = buckets + [[]], 0
        buckets[-1].append((names[id(p)], p.numel()))
        size += nbytes
    return buckets


def ddp_cases() -> list[dict]:
    """(bucket cap, seed, steps × ranks × (x, y)); the last case is drawn from this run's seed."""
    fresh = fresh_seed("ddp")
    plan = [(0.01, 1, 3, "buckets of at most 10,485 bytes: several buckets"),
            (1000.0, 2, 2, "a cap larger than the model: one bucket"),
            (round(0.002 + (fresh % 1000) / 1000 * 0.05, 4), fresh % 10_000, 2, f"fresh seed {run_seed()}")]
    cases = []
    for cap, seed, n_steps, why in plan:
        gen = torch.Generator().manual_seed(seed)
        batches = [[(torch.randint(0, TINY["vocab_size"], (2, 8), generator=gen),
                     torch.randint(0, TINY["vocab_size"], (2, 8), generator=gen)) for _ in range(WORLD)]
                   for _ in range(n_steps)]
        cases.append({"cap": cap, "seed": seed, "batches": batches, "why": why,
                      "buckets": spec_buckets(tiny_llm(seed), cap)})
    return cases


def reference_steps(case: dict) -> list[dict]:
    """One process: per step, each rank's loss and gradient on its batch, their mean, the weights after SGD."""
    model = tiny_llm(case["seed"])
    steps = []
    for per_rank in case["batches"]:
        losses, local = [], []
        for x, y in per_rank:
            model.zero_grad(set_to_none=True)
            _, loss = model(x, y)
            loss.backward()
            losses.append(float(loss.detach()))
            local.append({name: p.grad.detach().clone() for name, p in model.named_parameters()})
        mean = {name: sum(g[name] for g in local) / WORLD for name in local[0]}
        with torch.no_grad():
            for name, p in model.named_parameters():
                p -= LR * mean[name]
        steps.append({"losses": losses, "local": local, "mean": mean, "weights": weights(model)})
    return steps


def describe_case(case: dict, step: int | None = None) -> str:
    buckets = case["buckets"]
    shown = (f"{WORLD} gloo processes, 02's LLM at a tiny shape (depth 2, n_embd 32, 4 experts: 18 parameters, "
             f"33,376 values), bucket_cap_mb {case['cap']:g} ({len(buckets)} bucket{'s' * (len(buckets) > 1)} by the "
             f"spec's rule) — {case['why']}")
    return shown if step is None else shown + f"; step {step} of {len(case['batches'])}, a (2, 8) batch per rank"


def rank_run(sandbox, rank: int, store_file: str, cases: list[dict]) -> list:
    """Everything rank `rank` does (in its own thread): join the group, then per case wrap a fresh model and run
    the steps. Returns per case (weights after wrapping, each step's record)."""
    ok = sandbox.make(joined, rank, store_file)
    if ok != rank:
        raise RuntimeError(f"the check could not start a gloo process group on this machine: {ok}")
    results = []
    for case in cases:
        model = sandbox.make(tiny_llm, case["seed"] + rank)      # rank 1 starts elsewhere: __init__ broadcasts
        ddp = call(sandbox.BucketedDDP, f"BucketedDDP(model, bucket_cap_mb={case['cap']:g}) on rank {rank}, "
                   f"{describe_case(case)}", model, case["cap"])
        after_init = sandbox.make(after_wrapping, model)
        steps = []
        for step, per_rank in enumerate(case["batches"]):
            record = sandbox.make(ddp_step, ddp, model, *per_rank[rank])
            if "raised" in record:
                raise Crashed(f"rank {rank}, {describe_case(case, step + 1)}", RemoteError(*record["raised"]))
            steps.append(record)
        results.append((after_init, steps))
    return results


def ddp_processes(ex) -> tuple[list, list]:
    """The two student processes (rank 0, rank 1) and those this check made (it closes them): rank 0 is `ex`
    when run_check made it; from a module (tests), both are made from a copy of its file."""
    if isinstance(ex, Sandbox):
        rank1 = Sandbox(ex.name, ex.path, ex.time_limit, ex.guarded)
        return [ex, rank1], [rank1]
    copy = copied(ex.__file__, "ddp")
    made = [Sandbox("ddp", copy), Sandbox("ddp", copy)]
    for sandbox in made:
        sandbox.copied = True                 # close_made removes the copy's folder
    return made, made


def copied(path: str, name: str) -> Path:
    """A copy of the student's file alone in a folder of its own (as run_check makes it for a Sandbox)."""
    copy = Path(tempfile.mkdtemp(prefix=f"linnet-check-{name}-")) / Path(path).name
    shutil.copyfile(path, copy)
    return copy


def run_ranks(sandboxes: list, work) -> list:
    """work(sandbox, rank) for every rank at once, one thread each (a collective waits for all ranks). The
    first rank to fail has the other's process ended (it would wait for it in vain); its error is raised."""
    results, errors, ended, lock = [None] * WORLD, [None] * WORLD, set(), threading.Lock()

    def run(rank: int) -> None:
        try:
            results[rank] = work(sandboxes[rank], rank)
        except BaseException as error:  # noqa: BLE001 — raised below, in the checker's thread
            with lock:
                errors[rank] = error
                for other, sandbox in enumerate(sandboxes):
                    if other != rank and errors[other] is None and results[other] is None and sandbox.pid:
                        ended.add(other)
                        try:
                            os.kill(sandbox.pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass

    threads = [threading.Thread(target=run, args=(rank,), daemon=True) for rank in range(WORLD)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for rank in range(WORLD):
        if errors[rank] is not None and rank not in ended:
            raise errors[rank]
    return results


def close_made(made: list) -> None:
    """Close the processes this check made, and remove the folder of their copy when the check made it too;
    what they printed goes to stderr, each line marked as the student's."""
    for i, sandbox in enumerate(made):
        printed = sandbox.close()
        if printed.strip():
            lines = "\n".join(f"| {line}" for line in printed.rstrip().split("\n"))
            print(f"--- what {sandbox.name} printed (process {i + 1} of {len(made)}) ---\n{lines}", file=sys.stderr)
    for home in {sandbox.path.parent for sandbox in made if getattr(sandbox, "copied", False)}:
        shutil.rmtree(home, ignore_errors=True)


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """a ≈ b as whole tensors: ‖a − b‖ ≤ 1e-3·‖b‖ + 1e-7 (the sum order of two processes differs a little)."""
    return a.shape == b.shape and float((a.double() - b.double()).norm()) <= 1e-3 * float(b.double().norm()) + 1e-7


BUCKET_RULE = ("one dist.all_reduce(flat, async_op=True) per bucket, of its gradients flattened into one tensor; "
               "buckets fill in REVERSE order of model.parameters() and close before the next parameter would take "
               "them past bucket_cap_mb·2^20 bytes (spec §2)")


def compare_init(case: dict, reference: dict, other_seed: dict, rank: int, got: dict) -> None:
    """After BucketedDDP(...): every rank holds rank 0's weights (rank 1 built its model from another seed)."""
    case_text = f"rank {rank}, right after BucketedDDP(model, bucket_cap_mb={case['cap']:g}) — {describe_case(case)}"
    for name, expected in reference.items():
        if rank > 0 and close(got[name], other_seed[name]) and not close(expected, other_seed[name]):
            raise Wrong(case_text, f"rank {rank}'s {name} is still its own (rank {rank} built its model from "
                        "another seed), not rank 0's", "broadcast every parameter from rank 0 in __init__ "
                        "(dist.broadcast(p.data, src=0)): the replicas must start equal")
        compare_tensors(got[name], expected, case_text, f"rank {rank}'s {name}", atol=1e-6, rtol=1e-5,
                        hint="__init__ changes no weight of rank 0; the other ranks get rank 0's by a broadcast")


def compare_waited(case_text: str, rank: int, calls: list) -> None:
    """Every all-reduce of the step was waited on before finish_gradient_synchronization returned."""
    for i, c in enumerate(calls):
        if not c["waited"]:
            raise Wrong(case_text, f"rank {rank}: all-reduce {i + 1} of {len(calls)} ({c['numel']:,} values) was "
                        "started but never waited on before finish_gradient_synchronization returned",
                        "keep every handle that dist.all_reduce(..., async_op=True) returns and call .wait() on "
                        "each in finish_gradient_synchronization, before the bucket is read back")


def compare_buckets(case_text: str, rank: int, calls: list, buckets: list) -> None:
    """The step's all-reduces: one per bucket of the spec's rule, asynchronous, started inside the backward."""
    sizes, expected = [c["numel"] for c in calls], [sum(n for _, n in bucket) for bucket in buckets]
    if sorted(sizes) != sorted(expected):
        per_param = len(sizes) == sum(len(b) for b in buckets) and len(buckets) < len(sizes)
        raise Wrong(case_text, f"rank {rank}: {len(sizes)} all-reduce{'s' * (len(sizes) != 1)} of {sizes} values "
                    f"in one step; the spec's buckets are {len(expected)} of {expected} values "
                    f"(the first: {', '.join(name for name, _ in buckets[0])})",
                    ("one all-reduce per PARAMETER is not bucketed: " if per_param else "") + BUCKET_RULE)
    for i, c in enumerate(calls):
        if c["waited"] == "backward" and c["phase"] == "backward":
            how = "synchronous (async_op=False)" if not c["async"] else "waited on inside the backward"
            raise Wrong(case_text, f"rank {rank}: all-reduce {i + 1} of {len(calls)} ({c['numel']:,} values) was "
                        f"{how}: the backward stood still until it finished", "start it with async_op=True and "
                        "wait for it in finish_gradient_synchronization, after the backward")
        if c["phase"] != "backward":
            raise Wrong(case_text, f"rank {rank}: all-reduce {i + 1} of {len(calls)} ({c['numel']:,} values) started "
                        f"in {'finish_gradient_synchronization' if c['phase'] == 'finish' else c['phase']}, not "
                        "during the backward: nothing overlapped", "start a bucket's all-reduce from the hook of "
                        "its last gradient (register_post_accumulate_grad_hook), while the backward goes on")


def compare_grads(case_text: str, rank: int, grads: dict, ref: dict, unhooked: list) -> None:
    """Each p.grad after finish: the mean over the ranks; the sum and a rank's own gradient are named, and the
    parameters that got no hook (`unhooked`, when the recorder saw hooks at all)."""
    for name, mean in ref["mean"].items():
        got = grads[name]
        if got is None:
            raise Wrong(case_text, f"rank {rank}: {name}.grad is None after finish_gradient_synchronization",
                        "write the averaged gradient back into each parameter's .grad")
        if close(got, mean):
            continue
        if close(got, WORLD * mean):
            raise Wrong(case_text, f"rank {rank}: the gradient of {name} is the SUM over the {WORLD} processes, "
                        f"{WORLD}× the mean", "divide by the world size (dist.get_world_size()) after the "
                        "all-reduce: each rank's loss is already a mean over its own batch")
        if close(got, ref["local"][rank][name]):
            missed = (f" — {', '.join(unhooked)} got no hook from BucketedDDP, so its bucket never went"
                      if unhooked else "")
            raise Wrong(case_text, f"rank {rank}: the gradient of {name} is rank {rank}'s own (its batch alone), "
                        f"not the mean over the {WORLD} processes: it was never all-reduced{missed}",
                        "a bucket goes when the hooks of ALL its parameters have fired: every parameter that "
                        "needs a gradient needs a hook (register_post_accumulate_grad_hook)")
        compare_tensors(got, mean, case_text, f"rank {rank}: gradient of {name}", atol=1e-6, rtol=1e-4,
                        hint="after finish_gradient_synchronization each p.grad is the mean of the ranks' gradients")


def check_ddp(ex) -> None:
    cases = ddp_cases()
    references = [reference_steps(case) for case in cases]
    sandboxes, made = ddp_processes(ex)
    store = tempfile.mkdtemp(prefix="linnet-ddp-store-")
    try:
        results = run_ranks(sandboxes, lambda sandbox, rank: rank_run(sandbox, rank, f"{store}/store", cases))
    finally:
        close_made(made)
        shutil.rmtree(store, ignore_errors=True)
    for c, (case, reference) in enumerate(zip(cases, references)):
        init, other = weights(tiny_llm(case["seed"])), weights(tiny_llm(case["seed"] + 1))
        for rank in range(WORLD):
            compare_init(case, init, other, rank, results[rank][c][0]["weights"])
        for step, ref in enumerate(reference):
            case_text = describe_case(case, step + 1)
            for rank in range(WORLD):
                got, unhooked = results[rank][c][1][step], results[rank][c][0]["unhooked"]
                compare_waited(case_text, rank, got["calls"])
                if abs(got["loss"] - ref["losses"][rank]) > 1e-5 * abs(ref["losses"][rank]):
                    raise Wrong(case_text, f"rank {rank}: loss {got['loss']:.6g}, expected {ref['losses'][rank]:.6g} "
                                "(the model on this rank's batch)", "forward returns what the wrapped module "
                                "returns, unchanged")
                compare_grads(case_text, rank, got["grads"], ref, unhooked)
                compare_buckets(case_text, rank, got["calls"], case["buckets"])
                for name, expected in ref["weights"].items():
                    compare_tensors(got["weights"][name], expected, case_text, f"rank {rank}'s {name} after the "
                                    "step", atol=1e-6, rtol=1e-4, hint="finish_gradient_synchronization changes "
                                    "the gradients only, never a weight")


# --- 3. rope_triton: the student's Triton kernel, through Triton's interpreter -----------------------------

TRITON_MISSING = ("triton is not installed here (the CPU wheels of torch do not bring it, the CUDA builds do): "
                  "`pip install triton` lets this check run on a CPU, through Triton's interpreter")


def skip_reason(name: str) -> str | None:
    """Why `name` cannot be checked on this machine (said as `skipped: NAME — WHY`), or None."""
    if name == "rope_triton" and importlib.util.find_spec("triton") is None:
        return TRITON_MISSING
    return None


def count_launches() -> int | str:
    """In the student's process (TRITON_INTERPRET=1): count the launches of interpreted Triton kernels (what
    went wrong, as a value: an exception here would end the student's process)."""
    try:
        from triton.runtime.interpreter import InterpretedFunction
    except Exception as error:  # noqa: BLE001
        return f"{type(error).__name__}: {error}"
    if not hasattr(InterpretedFunction, "counted_run"):
        InterpretedFunction.counted_run = InterpretedFunction.run

        def run(self, *args, **kwargs):
            RECORD["launches"] = RECORD.get("launches", 0) + 1
            return self.counted_run(*args, **kwargs)
        InterpretedFunction.run = run
    RECORD["launches"] = 0
    return 0


def launches() -> int:
    return RECORD.get("launches", 0)


def rope_slips(qkv, cos, sin, n_head: int, hd: int) -> dict:
    """q as the usual slips compute it (the hint names the one the student's q equals)."""
    B, T, _ = qkv.shape
    q = qkv[..., :n_head * hd].view(B, T, n_head, hd).float()
    c, s = cos[:, None, :], sin[:, None, :]
    half = lambda x: torch.cat([-x[..., hd // 2:], x[..., :hd // 2]], -1)              # noqa: E731
    rope = lambda x: x * c + half(x) * s                                               # noqa: E731
    norm = lambda x: torch.nn.functional.layer_norm(x, (hd,), eps=1e-5)                # noqa: E731
    rms = lambda x: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)            # noqa: E731
    pairs = q.view(B, T, n_head, hd // 2, 2)
    ci, si = c[..., :hd // 2], s[..., :hd // 2]
    interleaved = torch.stack([pairs[..., 0] * ci - pairs[..., 1] * si, pairs[..., 1] * ci + pairs[..., 0] * si], -1)
    return {"QK-norm before RoPE (linnet rotates first, then normalises)": rope(norm(q)),
            "RMSNorm in place of LayerNorm: the mean over head_dim is not subtracted": rms(rope(q)),
            "no QK-norm after RoPE": rope(q),
            "no RoPE before the norm": norm(q),
            "RoPE by minus the angle: rotate_half(x) is (−x2, x1), so the first half gets x1·cos − x2·sin":
                norm(q * c - half(q) * s),
            "RoPE on neighbouring pairs (2i, 2i+1); linnet pairs i with i + head_dim/2 (rotate half)":
                norm(interleaved.view(B, T, n_head, hd))}


def rope_cases() -> list[tuple]:
    """(B, T, n_head, n_kv_head, head_dim, offset, why): small, since the interpreter runs each program in Python."""
    gen = torch.Generator().manual_seed(fresh_seed("rope_triton"))
    draw = lambda low, high: int(torch.randint(low, high + 1, (1,), generator=gen))       # noqa: E731
    nkv = draw(1, 2)
    fresh = (draw(1, 2), draw(1, 9), nkv * draw(1, 3), nkv, [16, 32, 64][draw(0, 2)], draw(0, 900),
             f"fresh seed {run_seed()}")
    return [(2, 5, 2, 1, 16, 0, "the smallest head_dim, 2 query heads per KV head"),
            (1, 1, 1, 1, 32, 0, "one token at position 0"),
            (1, 9, 4, 2, 64, 0, "linnet's head_dim 64, 2 query heads per KV head"),
            (2, 7, 2, 2, 32, 1000, "positions 1000-1006: cos and sin are rows 1000-1006 of the tables"), fresh]


def check_rope_triton(ex) -> None:
    made = [] if isinstance(ex, Sandbox) else [Sandbox("rope_triton", copied(ex.__file__, "rope_triton"))]
    for sandbox in made:
        sandbox.copied = True
    try:
        check_rope_cases(ex if not made else made[0])
    finally:
        close_made(made)


def check_rope_cases(ex: Sandbox) -> None:
    model_lib = importlib.import_module("02_model")
    for B, T, nh, nkv, hd, offset, why in rope_cases():
        cos, sin = model_lib.RotaryEmbedding(hd, 50000.0, 1024)(T, offset)            # (T, hd) each
        gen = torch.Generator().manual_seed(B * 1000 + T * 10 + hd)
        qkv = torch.randn(B, T, (nh + 2 * nkv) * hd, generator=gen) * 2 + 0.5         # (B, T, (nh + 2·nkv)·hd)
        case = (f"qkv {tuple(qkv.shape)} float32 (n_head {nh}, n_kv_head {nkv}, head_dim {hd}), cos and sin "
                f"({T}, {hd}) for positions {offset}..{offset + T - 1} — {why}")
        expected = model_lib.rope_qk_norm_reference(qkv, cos, sin, nh, nkv)
        counting = ex.make(count_launches)
        got = call(ex.rope_qk_norm, case, qkv.clone(), cos.clone(), sin.clone(), nh, nkv)
        check_returns(got, [(n, "a float32 tensor", is_float_tensor) for n in ("q", "k", "v")], case, "rope_qk_norm")
        if counting == 0 and ex.make(launches) == 0:
            raise Wrong(case, "rope_qk_norm launched no Triton kernel", "the exercise is the kernel: an "
                        "@triton.jit function launched as kernel[grid](...) that rotates and normalises the rows")
        for name, got_t, exp_t in zip("qkv", got, expected):
            hint = "the rows of v are copied as they are" if name == "v" else "see the spec's steps 2-4"
            if name == "q" and got_t.shape == exp_t.shape and not torch.allclose(got_t, exp_t, atol=1e-4):
                slip = next((what for what, q in rope_slips(qkv, cos, sin, nh, hd).items()
                             if torch.allclose(got_t.float(), q, atol=1e-4, rtol=1e-4)), None)
                hint = f"yours equals {slip}" if slip else hint
            compare_tensors(got_t, exp_t, case, name, atol=1e-5, rtol=1e-5, hint=hint)


CHECKS = {"ddp": check_ddp, "rope_triton": check_rope_triton}

# The systems track's components as the build track's registry lists them (one entry each): the student's file,
# the spec it is written from, the worked solution (kept out of the handout), points, minutes, the check.
COMPONENTS = [
    {"name": "ddp", "student_file": "exercises/build/ddp.py", "spec_file": "exercises/build/specs/ddp.md",
     "solution_file": "exercises/solutions/build/ddp.py", "points": 15, "minutes": 120, "check": check_ddp,
     "what": "data-parallel training: gradients all-reduced in buckets, overlapped with the backward (2 gloo "
             "processes)"},
    {"name": "rope_triton", "student_file": "exercises/build/rope_triton.py",
     "spec_file": "exercises/build/specs/rope_triton.md", "solution_file": "exercises/solutions/build/rope_triton.py",
     "points": 10, "minutes": 90, "check": check_rope_triton,
     "what": "RoPE + QK-norm forward as one Triton kernel (checked through Triton's interpreter)"},
]
