"""Check an exercise against the lesson's real code: `python -m exercises.check NAME` (from the repo root).

    python -m exercises.check rope                # checks exercises/rope.py, the file you edit
    python -m exercises.check rope --solution     # checks the worked solution in exercises/solutions/
    python -m exercises.check --all               # every exercise, one line each, then "N of M exercises correct"
    python -m exercises.check --list              # the exercises and the lesson each one belongs to
    python -m exercises.check rope --seed 4711    # replays a run (each run prints its seed first)
    python -m exercises.check --all --strict      # grading: exercises/solutions/ importable nowhere

Every check feeds your function seeded random inputs of several shapes, the edge cases that catch the
usual slips, and at least one case drawn from this run's fresh seed, and compares what it returns with
what the NUMBERED LESSON FILE computes on the same input (01_tokenizer.count_pairs, 02_model.apply_rope,
03_muon.newton_schulz, 05_train.lr_multiplier, 06_eval.choose_endings, ...). Nothing here holds a second
copy of the answer: if a lesson changes, the check follows it. Your file runs in its own process, which
cannot reach the lessons or the worked solutions (section 0). It prints `correct: NAME` and exits 0, or the
first wrong value (which input, expected vs got, where) and exits 1.
"""
from __future__ import annotations

import argparse
import ast
import collections
import copy
import dataclasses
import functools
import importlib
import importlib.abc
import importlib.util
import inspect
import io
import itertools
import json
import math
import os
import pickle
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
import types
import zlib
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parents[1]
if str(REPO_DIR) not in sys.path:
    sys.path.insert(0, str(REPO_DIR))  # the lessons are imported by their file names: 01_tokenizer, ...

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# exercise -> (lesson file, what the student implements); the order is the order of the lessons
EXERCISES = {
    "bpe_merge": ("01_tokenizer.py", "count pairs, merge one pair, one BPE training step"),
    "bpe_trainer": ("01_tokenizer.py", "a whole byte-level BPE trainer: words -> the merge list, HF's tie rule"),
    "rope": ("02_model.py", "rotary position embedding, rotate-half pairs, base 50000"),
    "rms_cross_entropy": ("02_model.py", "RMSNorm, a log-sum-exp that never overflows, cross-entropy from the logits"),
    "router_top2": ("02_model.py", "softmax -> top-2 experts -> renormalise the two weights"),
    "balance_loss": ("02_model.py", "linnet's balance loss E * sum_e (mean prob_e)^2"),
    "gqa_attention": ("02_model.py", "causal grouped-query attention: heads, RoPE, QK-norm, repeat KV, mask, softmax"),
    "moe_forward": ("02_model.py", "the MoE layer: router, top-k, SwiGLU experts (reference loop), balance loss"),
    "fp8_quantize": ("02_model.py", "FP8 row-wise scales (powers of two, rounded up) and an FP8 matrix product"),
    "model_forward": ("02_model.py", "the whole model from its parts: embedding, blocks, final norm, tied head, loss"),
    "sampling": ("02_model.py", "temperature, top-k, a seeded generator, the KV cache's positions"),
    "newton_schulz_step": ("03_muon.py", "one quintic Newton-Schulz step (3.4445, -4.7750, 2.0315)"),
    "muon_update": ("03_muon.py", "one Muon step: momentum, Nesterov, Newton-Schulz, shape lr, weight decay"),
    "shard_loader": ("04_data.py", "the shard loader: T+1-token windows, seeded epoch order, resume"),
    "wsd_schedule": ("05_train.py", "the warm-up / stable / cosine-decay learning-rate multiplier"),
    "train_step": ("05_train.py", "one training step: accumulation over micro-batches, global-norm clipping"),
    "acc_norm": ("06_eval.py", "HellaSwag acc_norm: summed log-prob / characters, argmax"),
    "hellaswag_requests": ("06_eval.py", "HellaSwag requests: the three tokenisations, lm-eval's whitespace rule"),
}



# --- 0. The student's own process: what a check can and cannot be fooled by -----------------------------
# The lessons compute the expected values HERE, in the checker's process. The student's file is loaded in a
# second process (`child_main`) in which the numbered lessons, exercises/solutions/ and their files are out
# of reach: an import blocker on sys.meta_path, plus an audit hook (sys.addaudithook, which cannot be removed)
# that refuses `import`, `open`, `compile` and `exec` of those names and paths, and starting other processes.
# The library call an exercise is about (SDPA for gqa_attention, ...) is replaced there by a function that
# refuses. Any refusal is final, even if the student's code catches the exception. The two processes talk
# over a pipe: tensors, arrays and plain Python values travel by value (decoded here without running any
# code: `SafeUnpickler`), anything else the student returns stays there and is used through a handle
# (`Remote`); a function of the checker passed to the student (a model's forward) is a callback.

TIME_LIMIT = 60.0           # seconds of the student's code per exercise (--time-limit)
RUN_SEED: int | None = None  # this run's fresh seed: every check adds a case drawn from it (--seed replays it)
SOLUTIONS_DIR = REPO_DIR / "exercises" / "solutions"
# per exercise: lessons the student's process may hold because their objects are the exercise's INPUTS
# (train_step is handed 02's LLM and 03's optimizers; the answer, 05_train, stays out of reach)
INPUT_LESSONS = {"train_step": ("01_tokenizer", "02_model", "03_muon")}
# per exercise: modules the student's process may not import at all
BLOCKED_MODULES = {"bpe_trainer": ("tokenizers",)}
# per exercise: library functions replaced by a refusal in the student's process (name fragments, and where)
RUNTIME_FORBIDDEN = {
    "gqa_attention": (("scaled_dot_product", "multi_head_attention"),
                      "write the scores, the causal mask and the softmax yourself"),
    "train_step": (("clip_grad", "get_total_norm", "clip_grads_with_norm"),
                   "compute the global gradient norm and scale the gradients yourself"),
    "moe_forward": (("grouped_mm",), "loop over the experts (the reference path)"),
    "rms_cross_entropy": (("cross_entropy", "nll_loss", "log_softmax", "logsumexp", "rms_norm", "RMSNorm",
                           "CrossEntropyLoss", "NLLLoss", "LogSoftmax"),
                          "write RMSNorm and the log-sum-exp yourself"),
}


def fresh_seed(tag: str) -> int:
    """A seed for one exercise's fresh case: this run's seed mixed with the exercise's name."""
    return (RUN_SEED * 1_000_003 + zlib.crc32(tag.encode())) % 2**31


class StudentExit(BaseException):
    """The student's code called exit() / raised SystemExit."""


class TimedOut(BaseException):
    """The student's code ran past the time limit."""


class ProcessDied(BaseException):
    """The student's process ended by itself (os._exit, a crash)."""


class RefusedAtRun(BaseException):
    """The student's code reached for a lesson, a solution or a forbidden call while it ran."""


class RemoteError(Exception):
    """An exception raised by the student's code in its own process (type name, message, traceback text)."""

    def __init__(self, type_name: str, message: str, trace: str):
        super().__init__(message)
        self.type_name, self.trace = type_name, trace


TENSOR, ARRAY, NPSCALAR, DICT, SET, DTYPE, HANDLE, CALLBACK, PICKLED, GENERATOR = (
    "\0tensor", "\0array", "\0npscalar", "\0dict", "\0set", "\0dtype", "\0handle", "\0callback", "\0pickled",
    "\0generator")


def encode(value, on_other):
    """`value` as plain Python data (tensors/arrays as bytes); anything else becomes on_other(value)."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return value
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes()      # any dtype (bf16, float8) as its bytes
        return {TENSOR: (str(t.dtype).replace("torch.", ""), tuple(t.shape), raw)}
    if isinstance(value, np.ndarray) and value.dtype != object:
        return {ARRAY: (value.dtype.str, value.shape, np.ascontiguousarray(value).tobytes())}
    if isinstance(value, np.generic):
        return {NPSCALAR: (value.dtype.str, value.tobytes())}
    if isinstance(value, torch.dtype):
        return {DTYPE: str(value).replace("torch.", "")}
    if isinstance(value, torch.Generator):                       # a CPU generator travels as its state
        return {GENERATOR: encode(value.get_state(), on_other)}
    if isinstance(value, (list, tuple)):
        items = [encode(v, on_other) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {DICT: [(encode(k, on_other), encode(v, on_other)) for k, v in value.items()]}
    if isinstance(value, (set, frozenset)):
        return {SET: [encode(v, on_other) for v in value]}
    return on_other(value)


def decode(value, on_marker):
    if isinstance(value, list):
        return [decode(v, on_marker) for v in value]
    if isinstance(value, tuple):
        return tuple(decode(v, on_marker) for v in value)
    if not isinstance(value, dict):
        return value
    (marker, data), = value.items()
    if marker == TENSOR:
        dtype, shape, raw = data
        flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
        return flat.view(getattr(torch, dtype)).reshape(shape)
    if marker == ARRAY:
        return np.frombuffer(bytearray(data[2]), dtype=np.dtype(data[0])).reshape(data[1])
    if marker == NPSCALAR:
        return np.frombuffer(data[1], dtype=np.dtype(data[0]))[0]
    if marker == DTYPE:
        return getattr(torch, data)
    if marker == GENERATOR:
        gen = torch.Generator()
        gen.set_state(decode(data, on_marker))
        return gen
    if marker == DICT:
        return {decode(k, on_marker): decode(v, on_marker) for k, v in data}
    if marker == SET:
        return {decode(v, on_marker) for v in data}
    return on_marker(marker, data)


class SafeUnpickler(pickle.Unpickler):
    """What the student's process sends is decoded without importing or calling anything (no find_class)."""

    def find_class(self, module, name):
        if (module, name) == ("builtins", "complex"):
            return complex
        raise pickle.UnpicklingError(f"the student's process sent an object of {module}.{name}")


def send(fd: int, message) -> None:
    data = pickle.dumps(message, protocol=4)
    view = memoryview(len(data).to_bytes(8, "little") + data)
    while view:
        view = view[os.write(fd, view):]


def receive(fd: int, safe: bool, deadline: float | None = None):
    """One message from fd; None at end of file; TimedOut after `deadline` (time.monotonic())."""
    chunks, need, header = [], 8, True
    while need:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimedOut()
        chunk = os.read(fd, min(need, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        need -= len(chunk)
        if header and not need:
            need, header, chunks = int.from_bytes(b"".join(chunks), "little"), False, []
    data = b"".join(chunks)
    return SafeUnpickler(io.BytesIO(data)).load() if safe else pickle.loads(data)


class Remote:
    """An object that lives in the student's process (a ShardLoader, an iterator): used through a handle."""

    def __init__(self, sandbox: "Sandbox", handle: int):
        self._sandbox, self._handle = sandbox, handle

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return RemoteFunction(self._sandbox, ("handle", self._handle, name))

    def __len__(self):
        return self._sandbox.request(("handle", self._handle, "__len__"), (), {})

    def __iter__(self):
        return self._sandbox.request(("handle", self._handle, "__iter__"), (), {})

    def __next__(self):
        return self._sandbox.request(("handle", self._handle, "__next__"), (), {})


class RemoteFunction:
    def __init__(self, sandbox: "Sandbox", target: tuple):
        self.sandbox, self.target = sandbox, target
        self.__name__ = target[-1]

    def __call__(self, *args, **kwargs):
        return self.sandbox.request(self.target, args, kwargs)


class Sandbox:
    """The student's file, loaded in its own guarded process; `sandbox.NAME(...)` calls the function there."""

    def __init__(self, name: str, path: Path, time_limit: float = None):
        self.name, self.path = name, Path(path)
        self.time_limit = TIME_LIMIT if time_limit is None else time_limit
        self.used, self.callbacks, self.pending, self.pid = 0.0, {}, None, None
        to_child, self.to_child = os.pipe()
        self.from_child, from_child = os.pipe()
        self.output = tempfile.TemporaryFile()
        try:
            self.pid = Zygote.get().start({"name": name, "path": str(self.path)},
                                          [to_child, from_child, self.output.fileno()])
        finally:
            os.close(to_child)
            os.close(from_child)
        self.wait(startup=True)          # importing torch is not the student's time: the limit starts after
        self.used = 0.0
        self.names = set(self.wait())    # loading the student's file is

    def __getattr__(self, attr):
        if attr.startswith("_") or attr not in self.__dict__.get("names", ()):
            raise AttributeError(f"exercises/{self.path.name} has no attribute {attr!r}")
        return RemoteFunction(self, ("module", attr))

    def make(self, builder: str, *args):
        """Run the checker's own `builder(*args)` (e.g. tiny_training_setup) in the student's process and
        keep what it returns there: the objects the student's code works on in place."""
        return self.request(("make", builder), args, {})

    def encode_arg(self, value):
        if isinstance(value, Remote):
            return {HANDLE: value._handle}
        if isinstance(value, (types.FunctionType, types.MethodType, types.BuiltinFunctionType, functools.partial)):
            self.callbacks[id(value)] = value
            return {CALLBACK: id(value)}
        return {PICKLED: pickle.dumps(value)}

    def request(self, target: tuple, args, kwargs):
        send(self.to_child, ("call", target, encode(list(args), self.encode_arg),
                             encode(dict(kwargs), self.encode_arg)))
        return self.wait()

    def wait(self, startup: bool = False):
        while True:
            start = time.monotonic()
            limit = self.time_limit + (120.0 if startup else 0.0) - self.used
            try:
                message = receive(self.from_child, safe=True, deadline=start + max(0.0, limit))
            except TimedOut:
                self.close()
                raise
            finally:
                self.used += time.monotonic() - start
            if message is None:
                self.pid = None
                raise ProcessDied()
            kind, *rest = message
            if kind == "violation":                       # said the moment it happened; it stands
                self.violation = getattr(self, "violation", None) or rest[0]
                continue
            if getattr(self, "violation", None):
                raise RefusedAtRun(self.violation)
            if kind == "callback":
                send(self.to_child, self.run_callback(*rest))
                continue
            pending, self.pending = self.pending, None
            if pending is not None:                      # a callback said the student's call was wrong
                raise pending
            if kind == "ok":
                return decode(rest[0], lambda marker, data: Remote(self, data))
            if kind == "stop":
                raise StopIteration
            if kind == "todo":
                raise NotImplementedError(rest[0])
            if kind == "exit":
                raise StudentExit(rest[0])
            if kind == "refused":
                raise RefusedAtRun(rest[0])
            if kind == "raised":
                raise RemoteError(*rest)
            if kind == "missing":
                raise AttributeError(rest[0])
            if kind == "import_error":
                raise ImportError(rest[0])
            raise RuntimeError(f"unexpected message from the student's process: {kind}")

    def run_callback(self, callback_id, args):
        self.n_callbacks = getattr(self, "n_callbacks", 0) + 1
        if self.n_callbacks > 10_000:      # the model's time is not the student's: cap the calls instead
            self.pending = Wrong("(the whole check)", f"your code called the check's functions (the model) more "
                                 "than 10,000 times", "one call per token or per block is all it takes")
            return ("cb_error", "the check stopped here: see its message")
        try:
            args = decode(args, lambda marker, data: Remote(self, data))
            return ("cb_ok", encode(self.callbacks[callback_id](*args), self.encode_arg))
        except (Wrong, Crashed) as error:
            self.pending = error
            return ("cb_error", "the check stopped here: see its message")
        except Exception as error:  # noqa: BLE001 — a wrong argument from the student's code
            return ("cb_error", f"{type(error).__name__}: {error}")

    def close(self) -> str:
        """Stop the student's process; returns what it printed."""
        if self.pid is not None:
            try:
                send(self.to_child, ("bye",))
                receive(self.from_child, safe=True, deadline=time.monotonic() + 2)   # its end of file
            except (OSError, TimedOut, Exception):  # noqa: BLE001 — it is going away in any case
                pass
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.pid = None
        for fd in (self.to_child, self.from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        self.output.seek(0)
        return self.output.read().decode("utf-8", "replace")


class Zygote:
    """One process per checker that has imported torch once and FORKS a fresh student process per exercise
    (starting Python and torch for each would cost a second or more apiece). It holds no lesson: check.py
    imports the lessons only inside the check functions, which run in the checker's process."""

    running: "Zygote | None" = None

    def __init__(self):
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = {**os.environ, "PYTHONPATH": str(REPO_DIR), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        self.proc = subprocess.Popen([sys.executable, "-c", "from exercises.check import zygote_main; "
                                      f"zygote_main({theirs.fileno()})"], cwd=REPO_DIR, pass_fds=(theirs.fileno(),),
                                     env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        theirs.close()

    @classmethod
    def get(cls) -> "Zygote":
        if cls.running is None or cls.running.proc.poll() is not None:
            import atexit
            cls.running = Zygote()
            atexit.register(cls.running.stop)
        return cls.running

    def start(self, spec: dict, fds: list[int]) -> int:
        """Fork a student process with the pipe ends `fds` (read, write, output); returns its pid."""
        data = json.dumps(spec).encode()
        socket.send_fds(self.sock, [len(data).to_bytes(8, "little") + data], fds)
        reply = b""
        while len(reply) < 8:
            chunk = self.sock.recv(8 - len(reply))
            if not chunk:
                raise RuntimeError("the checker's helper process (which starts the students' processes) ended")
            reply += chunk
        return int.from_bytes(reply, "little")

    def stop(self) -> None:
        self.sock.close()
        try:
            self.proc.wait(timeout=5)
        except Exception:  # noqa: BLE001
            self.proc.kill()


def zygote_main(fd: int) -> None:
    """The zygote: torch is imported (with check.py); each request forks one student process."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)       # the children are reaped automatically
    sock = socket.socket(fileno=fd)
    while True:
        try:
            header, fds, _, _ = socket.recv_fds(sock, 8, 3)
        except OSError:
            return
        if len(header) < 8:
            return
        need, data = int.from_bytes(header, "little"), b""
        while len(data) < need:
            data += sock.recv(need - len(data))
        spec = json.loads(data)
        pid = os.fork()
        if pid == 0:                                       # the student's process
            try:
                sock.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                os.dup2(fds[2], 1)
                os.dup2(fds[2], 2)
                os.close(fds[2])
                child_main({**spec, "rfd": fds[0], "wfd": fds[1]})
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(0)
        for f in fds:
            os.close(f)
        sock.sendall(pid.to_bytes(8, "little"))


def make(ex, builder: str, *args):
    """globals()[builder](*args), built where the student's code runs (its process, or here in tests)."""
    return ex.make(builder, *args) if isinstance(ex, Sandbox) else globals()[builder](*args)


# --- 0b. Inside the student's process: the guards, then a loop that runs what the checker asks -----------

VIOLATIONS: list[str] = []
REPORT_FD: int | None = None     # the pipe to the checker, in the student's process
STUDENT_FILES: set[str] = set()   # the file being checked (and its .pyc): the one solution it may read (--solution)


def protected(path) -> bool:
    """A numbered lesson's file (any extension, anywhere in the repo: .py, .pyc, .ipynb) or exercises/solutions/."""
    try:
        real = os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
        return False
    if real in STUDENT_FILES:
        return False
    return real.startswith(str(SOLUTIONS_DIR)) or (real.startswith(str(REPO_DIR)) and
                                                     bool(LESSON_NAME.match(os.path.basename(real))))


def forbidden_module(name: str, blocked: tuple, allowed: tuple) -> bool:
    top = name.split(".")[0]
    return ((LESSON_NAME.match(top) is not None and top not in allowed) or top in blocked
            or name.startswith("exercises.solutions"))


def refuse(message: str):
    """Refuse, and tell the checker at once: clearing VIOLATIONS afterwards does not take it back."""
    VIOLATIONS.append(message)
    if REPORT_FD is not None:
        send(REPORT_FD, ("violation", message))
    raise PermissionError(f"refused by the checker: {message}")


REFUSAL = ("the check compares your code with the lesson, so handing the work to the lesson (or to the worked "
           "solution) would compare it with itself")


def install_guards(name: str) -> None:
    """The import blocker, the audit hook and the runtime refusals of one exercise (in the student's process)."""
    allowed, blocked = INPUT_LESSONS.get(name, ()), BLOCKED_MODULES.get(name, ())

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            if forbidden_module(fullname, blocked, allowed):
                refuse(f"your code imports {fullname}: " + (REFUSAL if fullname not in blocked else
                                                            f"{name} is to be written without {fullname}"))
            return None

    sys.meta_path.insert(0, Blocker())
    for module in list(sys.modules):
        if forbidden_module(module, blocked, allowed):
            del sys.modules[module]
    processes = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                 "os.forkpty", "pty.spawn")

    def hook(event, args):
        if event == "import" and forbidden_module(str(args[0]), blocked, allowed):
            refuse(f"your code imports {args[0]}: " + REFUSAL)
        elif event == "open" and not isinstance(args[0], int) and protected(args[0]):
            refuse(f"your code opens {args[0]}: " + REFUSAL)
        elif event == "exec" and protected(getattr(args[0], "co_filename", "")):
            refuse(f"your code runs the code of {args[0].co_filename}: " + REFUSAL)
        elif event == "compile" and args[1] is not None and protected(args[1]):
            refuse(f"your code compiles {args[1]}: " + REFUSAL)
        elif event in processes:
            refuse(f"your code starts another process ({event}): a check runs your code in one guarded process")

    sys.addaudithook(hook)
    forbid_calls(name)


def forbid_calls(name: str) -> None:
    """Replace the library functions this exercise is about by ones that refuse (and remember the refusal)."""
    if name not in RUNTIME_FORBIDDEN:
        return
    fragments, what = RUNTIME_FORBIDDEN[name]
    import torch.nn.utils  # noqa: F401
    import torch.special  # noqa: F401
    places = [F, torch, torch.Tensor, torch._C._nn, torch._C._VariableFunctions, torch.special, torch.nn,
              torch.nn.utils, torch.nn.utils.clip_grad, torch.ops.aten]
    known = ["scaled_dot_product_attention", "_scaled_dot_product_attention_math", "_grouped_mm",
             "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_efficient_attention",
             "_scaled_dot_product_flash_attention", "cross_entropy_loss", "nll_loss", "nll_loss_nd",
             "log_softmax", "_log_softmax", "logsumexp", "rms_norm", "_fused_rms_norm", "special_logsumexp",
             "special_log_softmax", "grouped_mm"]

    def refusing(attr):
        def refused(*args, **kwargs):
            refuse(f"your code calls {attr}: this exercise is to {what}")
        return refused

    for place in places:
        names = set(dir(place)) | (set(known) if place is torch.ops.aten else set())
        for attr in names:
            if any(f.lower() in attr.lower() for f in fragments):
                value = getattr(place, attr, None) if place is not torch.ops.aten else None
                if isinstance(value, type):
                    if hasattr(value, "forward"):
                        try:
                            value.forward = refusing(attr)
                        except (AttributeError, TypeError):
                            pass
                    continue
                try:
                    setattr(place, attr, refusing(attr))
                except (AttributeError, TypeError):
                    pass


def child_main(spec: dict) -> None:
    """The student's process: guards on, load the file, then run what the checker asks until it says bye."""
    global REPORT_FD
    name, path, rfd, wfd = spec["name"], spec["path"], spec["rfd"], spec["wfd"]
    STUDENT_FILES.update(os.path.realpath(p) for p in (path, importlib.util.cache_from_source(path)))
    for lesson in INPUT_LESSONS.get(name, ()):           # the exercise's inputs (02's LLM for train_step):
        file = importlib.import_module(lesson).__file__  # torch may read their source (torch.compile)
        STUDENT_FILES.update(os.path.realpath(p) for p in (file, importlib.util.cache_from_source(file)))
    if name == "hellaswag_requests":
        import tokenizers  # noqa: F401 — the checker sends a tokenizers.Tokenizer
    REPORT_FD = wfd
    install_guards(name)
    send(wfd, ("ok", None))
    objects = {}

    def on_other(value):
        objects[id(value)] = value
        return {HANDLE: id(value)}

    def callback(callback_id):
        def call_checker(*args):
            send(wfd, ("callback", callback_id, encode(list(args), on_other)))
            reply = receive(rfd, safe=False)
            if reply is None:
                os._exit(0)
            if reply[0] == "cb_error":
                raise RuntimeError(reply[1])
            return decode(reply[1], lambda marker, data: objects[data])
        return call_checker

    def on_marker(marker, data):
        if marker == PICKLED:
            return pickle.loads(data)
        return objects[data] if marker == HANDLE else callback(data)

    def run(fn):
        """(kind, payload) of running fn(): the student's code, with every way out turned into a message."""
        try:
            result = fn()
            outcome = ("ok", encode(result, on_other))
        except StopIteration:
            outcome = ("stop",)
        except NotImplementedError as todo:
            outcome = ("todo", str(todo))
        except SystemExit as stop:
            outcome = ("exit", stop.code)
        except BaseException as error:  # noqa: BLE001 — reported with the student's frames
            trace = traceback.format_exception(type(error), error, error.__traceback__)
            trace = [line for line in trace if __file__ not in line]
            outcome = ("raised", type(error).__name__, str(error), "".join(trace).rstrip())
        return ("refused", VIOLATIONS[0]) if VIOLATIONS else outcome

    def load():
        module_spec = importlib.util.spec_from_file_location(f"exercise_{name}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return module

    loaded = run(load)
    if loaded[0] == "ok":
        module = objects[loaded[1][HANDLE]]
        send(wfd, ("ok", sorted(n for n in vars(module) if not n.startswith("_"))))
    else:
        send(wfd, loaded if loaded[0] in ("refused", "exit", "todo") else
             ("import_error", f"{loaded[1]}: {loaded[2]}" if loaded[0] == "raised" else str(loaded)))
        return
    while True:
        message = receive(rfd, safe=False)
        if message is None or message[0] == "bye":
            return
        _, target, args, kwargs = message
        args, kwargs = decode(args, on_marker), decode(kwargs, on_marker)
        if target[0] == "make":               # the checker's own code (tiny_training_setup), not the student's
            send(wfd, ("ok", encode(globals()[target[1]](*args), on_other)))
            continue
        owner = module if target[0] == "module" else objects[target[1]]
        attr = target[-1]
        if attr == "__len__":
            fn = lambda: len(owner)                               # noqa: E731
        elif attr == "__iter__":
            fn = lambda: iter(owner)                              # noqa: E731
        elif attr == "__next__":
            fn = lambda: next(owner)                              # noqa: E731
        elif not hasattr(owner, attr):
            send(wfd, ("missing", f"exercises/{Path(path).name} has no attribute {attr!r}"))
            continue
        else:
            fn = lambda: getattr(owner, attr)(*args, **kwargs)    # noqa: E731
        send(wfd, run(fn))


# --- 1. How a check reports: Wrong (a value differs), Crashed (your code raised) ----------------------

class Wrong(Exception):
    """Your function returned a wrong value; the message names the input, expected vs got, and where."""

    def __init__(self, case: str, detail: str, hint: str = ""):
        super().__init__(detail)
        self.case, self.detail, self.hint = case, detail, hint

    def report(self) -> str:
        lines = [f"  input:    {self.case}", f"  {self.detail}"]
        if self.hint:
            lines.append(f"  hint:     {self.hint}")
        return "\n".join(lines)


class Crashed(Exception):
    """Your function raised something other than NotImplementedError on one input."""

    def __init__(self, case: str, error: BaseException):
        super().__init__(str(error))
        self.case, self.error = case, error


def call(fn, case: str, *args):
    """fn(*args), turning any exception except NotImplementedError into Crashed(case, ...)."""
    try:
        return fn(*args)
    except (NotImplementedError, Wrong, Crashed):
        raise                      # Wrong: a callback of the check (a model's forward) found the slip
    except Exception as error:  # noqa: BLE001 — any bug in the student's code is reported, with its input
        raise Crashed(case, error) from error


def fmt_index(index) -> str:
    return "[" + ", ".join(str(int(i)) for i in index) + "]"


def check_shape(got, expected: torch.Tensor, case: str, name: str, hint: str = "") -> None:
    """Raise Wrong unless `got` is a tensor of the same shape as `expected`."""
    if not isinstance(got, torch.Tensor):
        raise Wrong(case, f"{name} should be a torch.Tensor, got {type(got).__name__}", hint)
    if got.dtype != expected.dtype:   # the dtype before any value: float64 (or float16) where float32 is asked
        show = lambda t: str(t.dtype).replace("torch.", "")  # noqa: E731
        raise Wrong(case, f"{name} has dtype {show(got)}, expected {show(expected)}: a dtype error (the values "
                    "are compared once the dtype is right)", f"return {show(expected)}: a float64 result comes from "
                    "a .double() or a float64 tensor somewhere, a float16 one from .half(); end with .to(x.dtype) "
                    "or compute in the input's dtype")
    if tuple(got.shape) != tuple(expected.shape):
        raise Wrong(case, f"{name} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}", hint)


def compare_tensors(got, expected: torch.Tensor, case: str, name: str = "out", atol: float = 1e-5,
                    rtol: float = 1e-5, hint: str = "") -> None:
    """Raise Wrong at the first element of `got` that is not close to `expected` (row-major order)."""
    check_shape(got, expected, case, name, hint)
    g, e = got.detach().double().cpu(), expected.detach().double().cpu()
    bad = ~torch.isclose(g, e, rtol=rtol, atol=atol)  # NaN is never close: a NaN is reported too
    if bad.any():
        index = torch.nonzero(bad)[0].tolist()
        where = f"{name}{fmt_index(index)}" if index else name
        count = f"{int(bad.sum()):,} of {bad.numel():,} values differ; " if bad.numel() > 1 else ""
        raise Wrong(case, f"{where}: expected {e[tuple(index)].item():.6g}, got {g[tuple(index)].item():.6g}   "
                          f"({count}tolerance {atol:g} + {rtol:g}·|expected|)", hint)


def is_float_tensor(t) -> bool:
    return isinstance(t, torch.Tensor) and t.is_floating_point()


def is_int_tensor(t) -> bool:
    return isinstance(t, torch.Tensor) and not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool


def describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {str(value.dtype).replace('torch.', '')} tensor of shape {tuple(value.shape)}"
    return type(value).__name__


def check_returns(got, spec: list, case: str, fn: str, single: bool = False) -> None:
    """Check WHAT came back before any value: the number of outputs, their types/dtypes, their order.

    spec: one (name, what it should be, predicate) per output. With single=True the function returns one
    value (not a tuple). Two outputs that would each pass the other's test mean they were swapped."""
    names = ", ".join(name for name, _, _ in spec)
    if single:
        name, what, ok = spec[0]
        if not ok(got):
            raise Wrong(case, f"{fn} should return {name}, {what}; got {describe(got)}")
        return
    if not (isinstance(got, (tuple, list)) and len(got) == len(spec)):
        n = f"{len(got)} values" if isinstance(got, (tuple, list)) else describe(got)
        raise Wrong(case, f"{fn} should return a tuple of {len(spec)} ({names}); got {n}")
    fits = [[ok(value) for _, _, ok in spec] for value in got]      # fits[i][j]: output i looks like spec j
    if all(fits[i][i] for i in range(len(spec))):
        return
    for order in itertools.permutations(range(len(spec))):
        if all(fits[i][j] for i, j in enumerate(order)):
            shown = ", ".join(spec[j][0] for j in order)
            raise Wrong(case, f"the outputs are in the wrong order: you returned ({shown}) — "
                        f"{', '.join(describe(v) for v in got)}", f"return ({names})")
    i = next(i for i in range(len(spec)) if not fits[i][i])
    raise Wrong(case, f"output {i} ({spec[i][0]}) should be {spec[i][1]}; got {describe(got[i])}",
                f"{fn} returns ({names})")


# --- Pass-through refusal: the student's code must not call the lesson it is checked against -----------
# Every check compares the student's function with a numbered lesson. A stub that imports the lesson
# (importlib.import_module("02_model"), __import__, runpy, reading 02_model.py by path) or the worked
# solution would compare the lesson with itself and "pass". The check reads the student's source with
# `ast` and refuses such a file before running anything. It looks at code, not at docstrings or comments
# (which may name the lesson freely). Some exercises also refuse the one library call that would do the
# whole exercise (the point of gqa_attention is to write the mask and softmax yourself).

LESSON_NAME = re.compile(r"0[1-6]_(tokenizer|model|muon|data|train|eval)")
FORBIDDEN_CALLS = {
    "gqa_attention": {"scaled_dot_product_attention": "write the scores, the causal mask and the softmax yourself",
                      "MultiheadAttention": "write the attention yourself"},
    "train_step": {"clip_grad_norm_": "compute the global gradient norm and scale the gradients yourself",
                   "clip_grad_norm": "compute the global gradient norm and scale the gradients yourself"},
    "moe_forward": {"grouped_mm": "loop over the experts (the reference path)"},
    "rms_cross_entropy": {name: "write RMSNorm and the log-sum-exp yourself" for name in (
        "rms_norm", "logsumexp", "log_softmax", "cross_entropy", "nll_loss", "RMSNorm", "CrossEntropyLoss",
        "NLLLoss", "LogSoftmax")},
    "bpe_trainer": {"BpeTrainer": "count and merge the pairs yourself (HF's trainer is what the check compares with)",
                    "train_from_iterator": "count and merge the pairs yourself"},
}


def student_sources(module) -> list[tuple[str, str]]:
    """(where, source) of the student's code: the module's file, else the source of each of its functions."""
    path = getattr(module, "__file__", None)
    if path and str(path).endswith(".py"):
        return [(Path(path).name, Path(path).read_text(encoding="utf-8"))]
    sources = []
    for value in vars(module).values():
        if inspect.isfunction(value):
            try:
                sources.append((value.__name__, textwrap.dedent(inspect.getsource(value))))
            except (OSError, TypeError):
                pass
    return sources


def docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def pass_through(name: str, module) -> str | None:
    """Why the student's code is refused (one sentence naming the line), or None."""
    forbidden = FORBIDDEN_CALLS.get(name, {})
    for where, source in student_sources(module):
        try:
            tree = ast.parse(source)
        except SyntaxError:
            return None                   # the import already failed and said so
        skip = docstring_nodes(tree)
        for node in ast.walk(tree):
            line = f"{where} line {getattr(node, 'lineno', '?')}"
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                modules += [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) else []
                for mod in modules:
                    if "solutions" in mod or LESSON_NAME.search(mod):
                        return (f"{line} imports {mod}: the check compares your code with the lesson, so handing "
                                "the work to the lesson (or to the worked solution) would compare it with itself")
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
                found = LESSON_NAME.search(node.value) or ("solutions" in node.value and "exercises" in node.value)
                if found:
                    return (f"{line} names {node.value!r} in code: importing or reading the numbered lesson (or the "
                            "worked solution) would compare the lesson with itself — write the computation yourself")
            called = (node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None)
            if called in forbidden:
                return f"{line} uses {called}: this exercise is to {forbidden[called]}"
    return None


# --- 2. bpe_merge (01_tokenizer.py, section 3: count_pairs, merge_pair, train_bpe_scratch) ------------

BPE_TEXTS = [
    "the cat sat on the mat; the cat ate the rat.",
    "aaaa aaa aa a banana bandana",                 # overlapping pairs: ('a','a') in 'aaaa' merges twice
    "abab abba baba ab ba ab ba",                   # equal counts: the tie rule decides
    "low lower lowest newer wider new wide",        # Sennrich et al.'s classic example
    "café naïve — 東京 2024!",                        # multi-byte UTF-8: tokens are byte-characters
]


def random_words(gen: np.random.Generator, n: int, alphabet: str = "abcĠ") -> dict[tuple[str, ...], int]:
    words = {}
    for _ in range(n):
        word = tuple(gen.choice(list(alphabet), size=int(gen.integers(1, 7))))
        words[tuple(str(t) for t in word)] = int(gen.integers(1, 6))
    return words


def check_bpe_merge(ex) -> None:
    tokenizer_lib = importlib.import_module("01_tokenizer")
    gen = np.random.default_rng(0)

    # count_pairs: a Counter of adjacent pairs, each weighted by its word's count
    cases = [("01's docstring example", {("a", "a", "a"): 2, ("b", "a"): 1}),
             ("words of one token each (no pairs at all)", {("a",): 3, ("b",): 1}),
             ("words made of merged tokens", {("th", "e"): 5, ("Ġ", "th", "e"): 7})]
    cases += [(f"random words #{i} (alphabet 'abcĠ', counts 1-5)", random_words(gen, 12)) for i in range(20)]
    fresh = np.random.default_rng(fresh_seed("bpe_merge"))
    cases += [(f"fresh random words (seed {RUN_SEED})", random_words(fresh, 15, "abcdĠ"))]
    for why, words in cases:
        case = f"count_pairs({words}) — {why}"
        got = call(ex.count_pairs, case, dict(words))
        expected = tokenizer_lib.count_pairs(words)
        if not isinstance(got, dict):
            raise Wrong(case, f"count_pairs should return a Counter (or dict), got {type(got).__name__}")
        got_nonzero = {pair: n for pair, n in got.items() if n}
        for pair in sorted(set(expected) | set(got_nonzero)):
            if got_nonzero.get(pair, 0) != expected.get(pair, 0):
                raise Wrong(case, f"count of pair {pair}: expected {expected.get(pair, 0)}, "
                            f"got {got_nonzero.get(pair, 0)}",
                            "each adjacent pair counts once per occurrence, times how often its word occurs")

    # merge_pair: left to right, never overlapping
    cases = [(("a", "a", "a"), ("a", "a")), (("a", "a", "a", "a"), ("a", "a")), (("a", "b", "a", "b"), ("a", "b")),
             (("x", "a", "b"), ("a", "b")), (("a",), ("a", "b")), (("b", "a"), ("a", "b")),
             (("Ġ", "th", "e"), ("th", "e"))]
    for _ in range(30):
        (word, _n), = random_words(gen, 1, "ab").items()
        cases.append((word, tuple(str(t) for t in gen.choice(list("ab"), size=2))))
    for _ in range(5):                                  # fresh words: recorded answers do not pass
        (word, _n), = random_words(fresh, 1, "ab").items()
        cases.append((word, tuple(str(t) for t in fresh.choice(list("ab"), size=2))))
    for word, pair in cases:
        case = f"merge_pair({word}, {pair})"
        got = call(ex.merge_pair, case, word, pair)
        expected = tokenizer_lib.merge_pair(word, pair)
        if isinstance(got, list) and tuple(got) == expected:
            raise Wrong(case, f"right tokens {expected}, but as a list: return a tuple",
                        "words are dict keys (word -> count), so they must be hashable tuples")
        if got != expected:
            raise Wrong(case, f"expected {expected}, got {got}",
                        "scan left to right; after merging at i, continue at i + 2, so ('a','a','a') -> ('aa','a')")

    # bpe_merge_step: first two hand-made steps, then every merge of train_bpe_scratch, one step at a time
    _, start_vocab = tokenizer_lib.train_bpe_scratch(["ab"], tokenizer_lib.MIN_VOCAB_SIZE)   # specials + the 256 byte-characters
    vocab = {**start_vocab, "ab": len(start_vocab), "bc": len(start_vocab) + 1}
    for words, why in [({("a", "b", "c"): 1, ("ab", "c"): 2, ("a", "b"): 3},
                        "two splits of 'abc' that become the same word after merging ('a', 'b')"),
                       ({("x", "y"): 5, ("y", "x"): 1, ("x", "y", "x"): 1}, "one clear winner")]:
        pairs = tokenizer_lib.count_pairs(words)
        best = max(pairs, key=pairs.get)                # these words have one most frequent pair, no tie
        check_bpe_step(ex, tokenizer_lib, words, vocab, best, f"bpe_merge_step({words}, vocab) — {why}")
    for text in BPE_TEXTS:
        vocab_size = tokenizer_lib.MIN_VOCAB_SIZE + 30
        merges, _ = tokenizer_lib.train_bpe_scratch([text], vocab_size)
        vocab, words = dict(start_vocab), dict(tokenizer_lib.count_words([text]))
        for step, best in enumerate(merges, start=1):
            case = f"step {step} of training BPE on {text!r} (01's train_bpe_scratch, vocab_size {vocab_size})"
            words = check_bpe_step(ex, tokenizer_lib, words, vocab, best, case)
            vocab.setdefault(best[0] + best[1], len(vocab))


def check_bpe_step(ex, tokenizer_lib, words: dict, vocab: dict, best: tuple[str, str], case: str) -> dict:
    """Compare ex.bpe_merge_step(words, vocab) with merging `best` by 01's merge_pair; returns the merged words."""
    got = call(ex.bpe_merge_step, case, dict(words), dict(vocab))
    if not (isinstance(got, tuple) and len(got) == 2):
        raise Wrong(case, f"bpe_merge_step should return (best_pair, new_words), got {type(got).__name__}")
    got_pair, got_words = got
    pairs = tokenizer_lib.count_pairs(words)
    if tuple(got_pair) != best:
        hint = ("the two pairs have the same count: on a tie the pair with the smallest (vocab[left], "
                "vocab[right]) wins — the oldest tokens, not the alphabetically first"
                if pairs.get(tuple(got_pair), 0) == pairs[best] else "pick the pair with the largest count")
        raise Wrong(case, f"best pair: expected {best} (count {pairs[best]}), got {tuple(got_pair)} "
                    f"(count {pairs.get(tuple(got_pair), 0)})", hint)
    expected_words = collections.Counter()
    for word, n in words.items():
        expected_words[tokenizer_lib.merge_pair(word, best)] += n
    got_words = {w: n for w, n in dict(got_words).items() if n}
    for word in sorted(set(expected_words) | set(got_words)):
        if got_words.get(word, 0) != expected_words.get(word, 0):
            raise Wrong(case, f"after merging {best}: word {word} should have count "
                        f"{expected_words.get(word, 0)}, got {got_words.get(word, 0)}",
                        "rebuild the word counts with merge_pair applied to every word; two words can "
                        "become the same after a merge, so add their counts")
    return dict(expected_words)


# --- 3. rope (02_model.py, section 3: RotaryEmbedding + rotate_half + apply_rope) -------------------

def check_rope(ex) -> None:
    model_lib = importlib.import_module("02_model")
    gen = torch.Generator().manual_seed(0)
    cases = [((2, 3, 16, 64), 0, 50000.0, "linnet's head size 64"),
             ((1, 2, 5, 8), 0, 50000.0, "a small head, 8 dims = 4 pairs"),
             ((1, 1, 1, 64), 0, 50000.0, "one token at position 0 (RoPE must leave it unchanged)"),
             ((2, 2, 4, 64), 1000, 50000.0, "generation with a cache: positions 1000..1003"),
             ((1, 2, 6, 32), 7, 10000.0, "head size 32, base 10000 (the original RoPE paper's base)")]
    fresh = np.random.default_rng(fresh_seed("rope"))
    cases.append(((int(fresh.integers(1, 3)), int(fresh.integers(1, 4)), int(fresh.integers(1, 12)),
                   int(2 * fresh.integers(2, 33))), int(fresh.integers(0, 500)), 50000.0, f"fresh seed {RUN_SEED}"))
    for shape, offset, base, why in cases:
        x = torch.randn(*shape, generator=gen)
        case = f"x of shape {shape}, offset {offset}, base {base:g} — {why}"
        got = call(ex.rope, case, x.clone(), offset, base)
        cos, sin = model_lib.RotaryEmbedding(shape[-1], base)(shape[-2], offset)
        expected = model_lib.apply_rope(x, cos, sin)
        # an fp32 angle at position p is only good to ≈ p·6e-8 rad: two correct fp32 codes may differ that much
        atol = 1e-4 + 2e-7 * (offset + shape[-2]) * x.abs().max().item()
        compare_tensors(got, expected, case, atol=atol, rtol=1e-4,
                        hint="pair dim i with dim i + head_dim/2 (rotate half), angle = position · base^(-2i/head_dim)")


# --- 3b. rms_cross_entropy (02_model.py, section 3: RMSNorm; section 6: LLM.forward's cross-entropy) -------

def check_rms_cross_entropy(ex) -> None:
    model_lib = importlib.import_module("02_model")
    gen = torch.Generator().manual_seed(0)
    fresh = torch.Generator().manual_seed(fresh_seed("rms_cross_entropy"))
    # rmsnorm: against 02's RMSNorm with the same weight
    cases = [("x (2, 5, 64), weight ≈ 1 ± 0.2", torch.randn(2, 5, 64, generator=gen), 64),
             ("x (3, 16) of size ≈ 1e-4: eps matters here (mean(x²) ≈ 1e-8 is below eps = 1e-6)",
              1e-4 * torch.randn(3, 16, generator=gen), 16),
             ("x (4, 8) with a mean of 5: LayerNorm would subtract it, RMSNorm does not",
              5 + torch.randn(4, 8, generator=gen), 8),
             (f"x (3, 7, 32), fresh seed {RUN_SEED}", 3 * torch.randn(3, 7, 32, generator=fresh), 32)]
    for why, x, C in cases:
        norm = model_lib.RMSNorm(C)
        with torch.no_grad():
            norm.weight.copy_(1 + 0.2 * torch.randn(C, generator=gen))
            expected = norm(x)
        weight = norm.weight.detach().clone()
        case = f"rmsnorm({why}, eps 1e-6)"
        got = call(ex.rmsnorm, case, x.clone(), weight.clone(), 1e-6)
        check_returns(got, [("out", f"a float32 tensor of shape {tuple(x.shape)}", is_float_tensor)], case,
                      "rmsnorm", single=True)
        check_shape(got, expected, case, "out")
        ms = (x.double() ** 2).mean(-1, keepdim=True)
        slips = [((x - x.mean(-1, keepdim=True)) * torch.rsqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-6) * weight,
                  "RMSNorm does not subtract the mean (that is LayerNorm): x / sqrt(mean(x²) + eps) · weight"),
                 (x / (ms.sqrt() + 1e-6) * weight, "eps goes INSIDE the square root: x · rsqrt(mean(x²) + eps)"),
                 (expected / weight, "multiply by weight at the end (one number per channel)"),
                 (x / (x.double().pow(2).sum(-1, keepdim=True) + 1e-6).sqrt() * weight,
                  "the MEAN of x² over the C channels, not the sum")]
        for slip, hint in slips:
            if not torch.allclose(got.double(), expected.double(), atol=1e-5, rtol=1e-4) and \
                    torch.allclose(got.double(), slip.double(), atol=1e-5, rtol=1e-4):
                compare_tensors(got, expected, case, "out", hint=hint)
        compare_tensors(got, expected, case, "out", atol=1e-5, rtol=1e-4,
                        hint="x · rsqrt(mean(x², last dim) + eps) · weight")
    # log_sum_exp: against torch.logsumexp (what F.cross_entropy computes inside)
    cases = [("x (4, 10)", torch.randn(4, 10, generator=gen)),
             ("x (3, 50) in the hundreds: exp overflows above ≈ 88 in float32",
              400 + 100 * torch.randn(3, 50, generator=gen)),
             ("x (2, 6) near −1000: exp underflows to 0 and log(0) = −inf",
              -1000 + torch.randn(2, 6, generator=gen)),
             ("x (2, 3, 5): a batch of rows", torch.randn(2, 3, 5, generator=gen)),
             (f"x (5, 20), fresh seed {RUN_SEED}", 30 * torch.randn(5, 20, generator=fresh))]
    for why, x in cases:
        case = f"log_sum_exp({why})"
        got = call(ex.log_sum_exp, case, x.clone())
        expected = torch.logsumexp(x, dim=-1)
        check_returns(got, [("out", f"a float32 tensor of shape {tuple(expected.shape)}", is_float_tensor)], case,
                      "log_sum_exp", single=True)
        check_shape(got, expected, case, "out", hint="reduce over the LAST dim only: (..., V) → (...)")
        if not torch.isfinite(got).all():
            index = torch.nonzero(~torch.isfinite(got))[0].tolist()
            raise Wrong(case, f"out{fmt_index(index)} is {got[tuple(index)].item()}, expected "
                        f"{expected[tuple(index)].item():.6g}", "subtract each row's max m before exp: "
                        "m + log(sum(exp(x − m))) — every exponent is then ≤ 0 and one of them is exactly 0")
        compare_tensors(got, expected, case, "out", atol=1e-4, rtol=1e-5,
                        hint="m + log(sum(exp(x − m))) over the last dim, m = the row's max")
    # log_softmax: against F.log_softmax
    for why, x in [("x (3, 12)", torch.randn(3, 12, generator=gen)),
                   ("x (2, 4, 30) in the hundreds", 500 + 100 * torch.randn(2, 4, 30, generator=gen)),
                   (f"x (4, 9), fresh seed {RUN_SEED}", 10 * torch.randn(4, 9, generator=fresh))]:
        case = f"stable_log_softmax({why})"
        got = call(ex.stable_log_softmax, case, x.clone())
        expected = F.log_softmax(x, dim=-1)
        check_returns(got, [("out", f"a float32 tensor of shape {tuple(x.shape)}", is_float_tensor)], case,
                      "stable_log_softmax", single=True)
        compare_tensors(got, expected, case, "out", atol=1e-4, rtol=1e-5,
                        hint="x − log_sum_exp(x)[..., None]: subtract each row's log-sum-exp from every entry "
                             "(log(softmax) underflows to −inf for the small probabilities)")
    # cross_entropy_loss: against F.cross_entropy exactly as LLM.forward calls it
    cases = []
    for why, B, T, V, scale, n_ignored, g in [("logits (2, 5, 64)", 2, 5, 64, 1.0, 0, gen),
                                             ("logits (2, 6, 32), 4 targets are −1 (ignored)", 2, 6, 32, 2.0, 4, gen),
                                             ("logits (1, 4, 16) ×300: in the hundreds", 1, 4, 16, 300.0, 0, gen),
                                             ("logits (3, 7, 40) with 5 ignored targets, fresh seed "
                                              f"{RUN_SEED}", 3, 7, 40, 3.0, 5, fresh)]:
        logits = scale * torch.randn(B, T, V, generator=g)
        targets = torch.randint(0, V, (B, T), generator=g)
        targets.view(-1)[torch.randperm(B * T, generator=g)[:n_ignored]] = -1
        cases.append((why, logits, targets, n_ignored))
    for why, logits, targets, n_ignored in cases:
        case = f"cross_entropy_loss({why}, targets {targets.tolist()}, ignore_index −1)"
        got = call(ex.cross_entropy_loss, case, logits.clone(), targets.clone(), -1)
        expected = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.reshape(())
        check_returns(got, [("loss", "a 0-dim float32 tensor", is_float_tensor)], case, "cross_entropy_loss",
                      single=True)
        n, kept = targets.numel(), targets.numel() - n_ignored
        e, g_ = expected.item(), got.item()
        hint = ("−log softmax(logits)[target] per token = log_sum_exp(logits) − logits[target]; the MEAN over "
                "the tokens whose target is not −1")
        if not math.isfinite(g_):
            hint = "use your log_sum_exp (max subtracted), not log(sum(exp(logits)))"
        elif math.isclose(g_, e * kept, rel_tol=1e-4):
            hint = "that is the SUM over the tokens: divide by the number of tokens not ignored"
        elif n_ignored and math.isclose(g_, e * kept / n, rel_tol=1e-4):
            hint = (f"you divided by all {n} tokens: the {n_ignored} ignored ones count neither in the sum nor "
                    f"in the number you divide by ({kept})")
        elif math.isclose(g_, -e, rel_tol=1e-4):
            hint = "the loss is the NEGATIVE log-probability of the target (log_sum_exp − the target's logit)"
        compare_tensors(got, expected, case, "loss", atol=1e-4, rtol=1e-5, hint=hint)


# --- 4. router_top2 and balance_loss (02_model.py, section 5: route and balance_loss) -----------------
# MoE.forward hands its router logits to 02's `route` (softmax → top-k → renormalise) and the router's
# probabilities to `balance_loss`; the check calls those two lesson functions on the same logits.

def real_moe_router(logits: torch.Tensor, k: int = 2) -> dict:
    """02's route and balance_loss on router logits (N, E): top_e, top_w (N, k) and balance (scalar)."""
    model_lib = importlib.import_module("02_model")
    probs, top_w, top_e = model_lib.route(logits, k)   # (N, E), (N, k), (N, k)
    return dict(top_e=top_e, top_w=top_w, balance=model_lib.balance_loss(probs))


def router_cases() -> list[tuple[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return [("logits (5, 8): 5 tokens, linnet's 8 experts", torch.randn(5, 8, generator=gen)),
            ("logits (64, 8), scaled ×4: confident router", 4 * torch.randn(64, 8, generator=gen)),
            ("logits (7, 4): 4 experts (05's tiny preset)", torch.randn(7, 4, generator=gen)),
            ("logits (1, 8): a single token", torch.randn(1, 8, generator=gen)),
            ("logits (3, 8) in the hundreds: a stable softmax must not overflow",
             300 + 50 * torch.randn(3, 8, generator=gen)),
            (f"logits (9, 8), fresh seed {RUN_SEED}",
             2 * torch.randn(9, 8, generator=torch.Generator().manual_seed(fresh_seed("router"))))]


def check_router_top2(ex) -> None:
    for case, logits in router_cases():
        got = call(ex.router_top2, case, logits.clone())
        check_returns(got, [("top_w", "a float tensor (N, 2) of weights", is_float_tensor),
                            ("top_e", "an integer tensor (N, 2) of expert ids (int64, as topk gives)", is_int_tensor)],
                      case, "router_top2")
        top_w, top_e = got
        ref = real_moe_router(logits)
        check_shape(top_w, ref["top_w"], case, "top_w")
        check_shape(top_e, ref["top_e"], case, "top_e")
        if not torch.isfinite(top_w).all():
            index = torch.nonzero(~torch.isfinite(top_w))[0].tolist()
            raise Wrong(case, f"top_w{fmt_index(index)} is {top_w[tuple(index)].item()}",
                        "exp() overflows above ≈ 88 in float32: subtract each row's max logit before exp "
                        "(softmax is unchanged by that), or use torch.softmax, which does it for you")
        # the two chosen experts may come in either order: sort both answers by expert id before comparing
        got_e, order = top_e.long().sort(dim=-1)
        exp_e, exp_order = ref["top_e"].sort(dim=-1)
        compare_tensors(got_e, exp_e, case, "top_e (sorted by expert id)", atol=0, rtol=0,
                        hint="top-2 = the two experts with the largest probability (torch.topk)")
        compare_tensors(top_w.gather(-1, order), ref["top_w"].gather(-1, exp_order), case, "top_w (sorted by expert id)", atol=1e-5, rtol=1e-5,
                        hint="softmax over ALL experts first, then keep the top 2 and divide them by their sum "
                             "(so each row sums to 1)")


def check_balance_loss(ex) -> None:
    gen = torch.Generator().manual_seed(1)
    cases = router_cases()[:4] + router_cases()[-1:] + [
        ("logits (16, 8) all equal: uniform router, balance must be exactly 1", torch.zeros(16, 8)),
        ("logits (10, 8) with expert 3 at +20: collapsed router, balance ≈ 8", torch.randn(10, 8, generator=gen)
         + 20 * F.one_hot(torch.tensor(3), 8))]
    for case, logits in cases:
        probs = F.softmax(logits.float(), dim=-1)       # (N, E): what MoE.forward computes before routing
        case = case.replace("logits", "probs = softmax(logits) of shape", 1)
        got = call(ex.balance_loss, case, probs.clone())
        expected = real_moe_router(logits)["balance"]
        if isinstance(got, (int, float)):
            got = torch.tensor(float(got))              # a Python number is fine too
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.reshape(())
        compare_tensors(got, expected, case, "balance", atol=1e-5, rtol=1e-5,
                        hint="average each expert's probability over the tokens FIRST, then square and sum, "
                             "times the number of experts E (1.0 for a uniform router)")


# --- 5. newton_schulz_step (03_muon.py, section 1: ns_polynomial, newton_schulz) -----------------------

def matrix_with_singular_values(s: torch.Tensor, rows: int, cols: int, batch=(), seed: int = 0):
    """X = U·diag(s)·Vᵀ in float64 with random orthonormal U (rows×r), V (cols×r), r = len(s)."""
    gen = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(*batch, rows, len(s), generator=gen, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(*batch, cols, len(s), generator=gen, dtype=torch.float64))
    return U, V, U @ torch.diag_embed(s.expand(*batch, len(s))) @ V.mT


def check_newton_schulz_step(ex) -> None:
    muon = importlib.import_module("03_muon")
    # (a) exact maths in float64: one step maps U·diag(s)·Vᵀ to U·diag(φ(s))·Vᵀ, φ = 03's ns_polynomial
    for rows, cols, batch, why in [(4, 4, (), "square"), (3, 7, (), "wide (m < n)"), (7, 3, (), "tall (m > n)"),
                                   (4, 6, (8,), "a batch of 8 stacked experts (..., m, n)")]:
        r = min(rows, cols)
        s = torch.linspace(0.05, 1.0, r, dtype=torch.float64)
        U, V, X = matrix_with_singular_values(s, rows, cols, batch, seed=rows * 10 + cols)
        case = f"X of shape {tuple(X.shape)}, float64, {why}, singular values {[round(v, 3) for v in s.tolist()]}"
        got = call(ex.newton_schulz_step, case, X.clone())
        expected = U @ torch.diag_embed(muon.ns_polynomial(s).expand(*batch, r)) @ V.mT
        compare_tensors(got, expected, case, atol=1e-6, rtol=1e-6,
                        hint="A = X·Xᵀ (use X.mT so batches work), B = b·A + c·A·A, return a·X + B·X; "
                             "stay in X's dtype")
    # (b) against 03's real newton_schulz (bf16): one step, then five steps, on gradient-like matrices
    gen = torch.Generator().manual_seed(0)
    for rows, cols, steps in [(64, 32, 1), (32, 96, 1), (48, 48, 5), (24, 40, 2)]:
        if steps == 2:                                  # the last case: a fresh matrix
            gen = torch.Generator().manual_seed(fresh_seed("newton_schulz_step"))
        G = torch.randn(rows, cols, generator=gen)
        X = G / G.norm()                                # 03 divides by the Frobenius norm first
        case = (f"G = randn({rows}, {cols}); X = G / ‖G‖_F; {steps} of your steps in float32 vs 03's "
                f"newton_schulz(G, steps={steps}) (bf16)")
        got = X.clone()
        for _ in range(steps):
            got = call(ex.newton_schulz_step, case, got)
        expected = muon.newton_schulz(G, steps=steps).float()
        scale = expected.abs().max().item()
        compare_tensors(got, expected, case, atol=0.03 * scale, rtol=0.03,
                        hint="03 runs in bf16, so the tolerance here is loose; if (a) passed this one should too")


# --- 6. wsd_schedule (05_train.py, section 1: lr_multiplier) -----------------------------------------

def check_wsd_schedule(ex) -> None:
    train = importlib.import_module("05_train")
    cases = [(20, 0.10, 0.80, 0.06, "20 steps: warm-up over steps 0-1, stable to 15, cosine over 16-19"),
             (300, 0.10, 0.80, 0.1, "05's tiny preset: 300 steps, min_lr/lr = 3e-4/3e-3"),
             (100, 0.05, 0.50, 0.0, "short warm-up, decay from half-way down to 0"),
             (5, 0.10, 0.80, 0.06, "5 steps: 10 % of 5 rounds down to 0, so warm-up lasts 1 step"),
             (1, 0.10, 0.80, 0.06, "a single step"),
             (18_965, 0.10, 0.80, 0.06, "linnet: 18,965 planned steps, min_lr/lr = 6e-5/1e-3")]
    fresh = np.random.default_rng(fresh_seed("wsd_schedule"))
    cases.append((int(fresh.integers(10, 400)), round(float(fresh.uniform(0.01, 0.3)), 3),
                  round(float(fresh.uniform(0.4, 0.9)), 3), round(float(fresh.uniform(0, 0.2)), 3),
                  f"fresh seed {RUN_SEED}"))
    for planned, warmup_frac, decay_frac, min_ratio, why in cases:
        cfg = dataclasses.replace(train.PRESETS["linnet"], planned_steps=planned, warmup_frac=warmup_frac,
                                  decay_start_frac=decay_frac, lr=1.0, min_lr=min_ratio)
        args = (planned, warmup_frac, decay_frac, min_ratio)
        for step in range(planned + 3):               # +3: steps past the plan stay at the minimum
            case = (f"step {step}, planned_steps {planned}, warmup_frac {warmup_frac}, decay_start_frac "
                    f"{decay_frac}, min_ratio {min_ratio} — {why}")
            got = call(ex.lr_multiplier, case, step, *args)
            expected = train.lr_multiplier(step, cfg)
            if not isinstance(got, (int, float)) or not math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-12):
                around = range(max(0, step - 2), step + 3)
                yours = [call(ex.lr_multiplier, case, s, *args) for s in around]
                raise Wrong(case, f"multiplier: expected {expected!r}, got {got!r}\n"
                            f"  steps {around.start}-{around.stop - 1}: 05 gives "
                            f"{[round(train.lr_multiplier(s, cfg), 6) for s in around]}, yours "
                            f"{[round(y, 6) if isinstance(y, (int, float)) else y for y in yours]}",
                            "warm-up ends at max(1, int(warmup_frac·planned)) and step 0 already gets 1/warmup; "
                            "the cosine runs from int(decay_start_frac·planned) to planned - 1 and then stays "
                            "at min_ratio")


# --- 7. acc_norm (06_eval.py, section 4: choose_endings) ------------------------------------------------

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


# --- 8. gqa_attention (02_model.py, section 4: CausalSelfAttention.project + forward) ------------------

def attention_module(C: int, n_head: int, n_kv_head: int, seed: int, T: int = 16):
    """02's CausalSelfAttention with seeded random weights (std 0.2, so the softmax is far from uniform)."""
    model_lib = importlib.import_module("02_model")
    config = model_lib.LLMConfig(depth=1, n_embd=C, n_head=n_head, n_kv_head=n_kv_head, head_dim=C // n_head,
                                 block_size=max(T, 8), vocab_size=64)
    attn = model_lib.CausalSelfAttention(config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for weight in (attn.c_attn.weight, attn.c_proj.weight, attn.l_conv.weight):
            weight.copy_(0.2 * torch.randn(weight.shape, generator=gen))
    return attn


def check_gqa_attention(ex) -> None:
    model_lib = importlib.import_module("02_model")
    cases = [(1, 1, 32, 4, 2, "ONE token: attention can only copy its own value, so RoPE, QK-norm, scaling and "
              "the mask cannot matter here", "the error is in the projection split (q | k | v, in that order), "
              "the heads (view (B, T, heads, hd) then transpose) or which KV head a query head reads: query head "
              "i reads KV head i // (n_head / n_kv_head) (neighbouring query heads share a KV head)"),
             (2, 6, 32, 2, 2, "n_kv_head = n_head (plain multi-head attention, nothing to repeat)",
              "with no repetition, check RoPE (pairs i, i + hd/2, positions from 0), QK-norm (a LayerNorm over "
              "head_dim, eps 1e-5, AFTER RoPE), the 1/sqrt(head_dim) scale and the softmax over the keys"),
             (2, 9, 64, 4, 2, "GQA: 4 query heads share 2 KV heads", "query head i reads KV head i // 2: "
              "repeat each KV head in place (0, 0, 1, 1), not the whole block (0, 1, 0, 1)"),
             (1, 12, 48, 6, 3, "GQA with head_dim 8, 6 query heads on 3 KV heads", "see the hints above")]
    fresh = np.random.default_rng(fresh_seed("gqa_attention"))
    nkv = int(fresh.choice([1, 2]))
    nh = nkv * int(fresh.choice([1, 2, 4]))
    cases.append((int(fresh.integers(1, 3)), int(fresh.integers(2, 14)), nh * 8, nh, nkv, f"fresh seed {RUN_SEED}",
                  "see the hints above", int(fresh.integers(1000, 10**6))))
    for B, T, C, nh, nkv, why, hint, *seed in cases:
        s = seed[0] if seed else T
        attn = attention_module(C, nh, nkv, seed=s * 7 + nh)
        x = torch.randn(B, T, C, generator=torch.Generator().manual_seed(s))
        h = model_lib.token_shift(x, attn.l_conv.weight)       # the part before attention, done for you
        case = f"h (B, T, C) = {(B, T, C)}, n_head {nh}, n_kv_head {nkv}, head_dim {C // nh} — {why}"
        with torch.no_grad():
            expected = attn(x)
            got = call(ex.gqa_attention, case, h.clone(), attn.c_attn.weight.clone(), attn.c_proj.weight.clone(),
                       nh, nkv, 50000.0)
        check_returns(got, [("y", f"a float32 tensor of shape {tuple(expected.shape)}", is_float_tensor)],
                      case, "gqa_attention", single=True)
        check_shape(got, expected, case, "y")
        if T > 1 and nh > 1 and merged_without_transpose(got, expected, attn.c_proj.weight.detach(), nh):
            raise Wrong(case, "y is the output of heads merged WITHOUT a transpose: (B, n_head, T, hd) reshaped "
                        "straight to (B, T, C) mixes the positions (the mask and the softmax were right)",
                        "bring time before heads first: y.transpose(1, 2).reshape(B, T, C), then the output "
                        "projection")
        if T > 1:  # causality: a change in the future must not move the past
            x2 = x.clone()
            x2[:, T // 2:] += torch.randn(B, T - T // 2, C, generator=torch.Generator().manual_seed(1))
            h2 = model_lib.token_shift(x2, attn.l_conv.weight)
            with torch.no_grad():
                got2 = call(ex.gqa_attention, case, h2, attn.c_attn.weight.clone(), attn.c_proj.weight.clone(),
                            nh, nkv, 50000.0)
            moved = (got2[:, :T // 2] - got[:, :T // 2]).abs().max().item()
            if moved > 1e-5:
                raise Wrong(case + f"; then tokens {T // 2}..{T - 1} changed", f"the outputs at positions "
                            f"0..{T // 2 - 1} moved by up to {moved:.3g} when only LATER tokens changed: the "
                            "future leaks into the past",
                            "mask the scores of keys after the query (set them to -inf before the softmax): "
                            "position t may read positions 0..t, itself included")
        compare_tensors(got, expected, case, "y", atol=2e-5, rtol=1e-4, hint=hint)


def merged_without_transpose(got: torch.Tensor, expected: torch.Tensor, w_proj: torch.Tensor, n_head: int) -> bool:
    """Is `got` what attention gives when the heads (B, nh, T, hd) are reshaped to (B, T, C) without the
    transpose? Undo the output projection of 02's answer (w_proj is square), re-merge it the wrong way."""
    B, T, C = expected.shape
    merged = torch.linalg.solve(w_proj.double(), expected.double().reshape(-1, C).T).T   # (B·T, C) before c_proj
    heads = merged.reshape(B, T, n_head, C // n_head).transpose(1, 2)                    # (B, nh, T, hd)
    wrong = heads.reshape(B, T, C) @ w_proj.double().T                                   # no transpose back
    return bool(torch.allclose(got.double(), wrong, atol=1e-4, rtol=1e-3))


# --- 9. moe_forward (02_model.py, section 5: MoE.forward with moe_impl="reference") --------------------

def moe_module(C: int, Fd: int, E: int, k: int, seed: int, same_experts: bool = False):
    model_lib = importlib.import_module("02_model")
    config = model_lib.LLMConfig(depth=1, n_embd=C, n_head=1, n_kv_head=1, head_dim=C, ffn_dim=Fd, n_experts=E,
                                 n_active_experts=k, moe_impl="reference", vocab_size=64)
    moe = model_lib.MoE(config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        moe.router.weight.copy_(torch.randn(E, C, generator=gen))
        moe.w_v.copy_(0.3 * torch.randn(E, 2 * Fd, C, generator=gen))
        moe.c_proj.copy_(0.3 * torch.randn(E, C, Fd, generator=gen))
        if same_experts:
            moe.w_v.copy_(moe.w_v[:1].expand_as(moe.w_v))
            moe.c_proj.copy_(moe.c_proj[:1].expand_as(moe.c_proj))
    return moe


def check_moe_forward(ex) -> None:
    cases = [(2, 3, 8, 16, 4, 2, True, "all experts have the SAME weights, so routing cannot matter: every "
              "token's output is that one expert's output (the 2 weights sum to 1)",
              "one expert = silu(gate) · value with gate = the FIRST ffn_dim rows of w_v[e] @ x, then c_proj[e]"),
             (2, 5, 8, 16, 4, 2, False, "4 different experts, top-2", "each token: top-2 experts by router "
              "probability, their outputs weighted by the renormalised probabilities and summed"),
             (1, 16, 16, 32, 8, 2, False, "linnet's 8 experts, top-2", "see the hints above"),
             (3, 4, 8, 8, 4, 1, False, "top-1 (k = 1): each token uses one expert, at weight 1", "k is an argument")]
    fresh = np.random.default_rng(fresh_seed("moe_forward"))
    cases.append((2, int(fresh.integers(1, 9)), 8, 16, int(fresh.choice([4, 8])), int(fresh.integers(1, 3)), False,
                  f"fresh seed {RUN_SEED}", "see the hints above", int(fresh.integers(1000, 10**6))))
    for B, T, C, Fd, E, k, same, why, hint, *seed in cases:
        s = seed[0] if seed else T
        moe = moe_module(C, Fd, E, k, seed=s + E, same_experts=same)
        x = torch.randn(B, T, C, generator=torch.Generator().manual_seed(s))
        case = f"x (B, T, C) = {(B, T, C)}, ffn_dim {Fd}, {E} experts, k {k} — {why}"
        with torch.no_grad():
            y_ref, stats = moe(x)
            got = call(ex.moe_forward, case, x.clone(), moe.router.weight.clone(), moe.w_v.clone(),
                       moe.c_proj.clone(), k)
        check_returns(got, [("y", "a float tensor (B, T, C)", lambda t: is_float_tensor(t) and t.ndim == 3),
                            ("balance", "a 0-dim float tensor", lambda t: is_float_tensor(t) and t.ndim == 0)],
                      case, "moe_forward")
        y, balance = got
        check_shape(y, y_ref, case, "y")
        if same:   # a per-token multiple of the right answer: the weights do not sum to 1
            g, e = y.reshape(-1, C).double(), y_ref.reshape(-1, C).double()
            ratio = (g * e).sum(-1) / (e * e).sum(-1)
            if ((g - ratio[:, None] * e).abs().max() < 1e-5 and (ratio - 1).abs().max() > 1e-3):
                raise Wrong(case, f"y: each token's output is a multiple of the right one (ratios "
                            f"{[round(r, 3) for r in ratio[:4].tolist()]}...)",
                            "renormalise the k chosen probabilities so that they sum to 1 before weighting")
        compare_tensors(y, y_ref, case, "y", atol=1e-5, rtol=1e-4, hint=hint)
        compare_tensors(balance, stats["balance"], case, "balance", atol=1e-5, rtol=1e-5,
                        hint="from the router's FULL softmax (N, E), not the top-k weights: average over the "
                             "tokens first, then square, sum over experts, times E")


# --- 9b. fp8_quantize (fast/fp8.py, 02's moe_impl "grouped_fp8": quantize_rows, scaled_grouped_mm_reference) --

def fp8_cases() -> list[tuple[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(5)
    spread = torch.randn(8, 64, generator=gen) * torch.logspace(-3, 3, 8)[:, None]
    with_zero = torch.randn(4, 32, generator=gen)
    with_zero[2] = 0.0
    outlier = torch.randn(3, 48, generator=gen) * 0.01
    outlier[:, 7] = 1000.0
    return [("x (8, 64): rows from 1e-3 to 1e3 in size", spread),
            ("x (4, 32) whose row 2 is all zeros: that row must stay zeros (no log2(0) = -inf)", with_zero),
            ("x (3, 48): one value of 1000 per row, the rest ≈ 0.01 (they round to tiny float8 numbers)", outlier),
            ("x (2, 3, 16): a 3-D tensor, rows along the last dim", torch.randn(2, 3, 16, generator=gen)),
            ("x (5, 32) in bfloat16", torch.randn(5, 32, generator=gen).bfloat16()),
            (f"x (6, 40), fresh seed {RUN_SEED}",
             torch.randn(6, 40, generator=torch.Generator().manual_seed(fresh_seed("fp8"))) * 10)]


def check_fp8_quantize(ex) -> None:
    fp8 = importlib.import_module("fast.fp8")
    for case, x in fp8_cases():
        got = call(ex.quantize_rows, case, x.clone())
        check_returns(got, [("q", "a torch.float8_e4m3fn tensor", lambda t: isinstance(t, torch.Tensor)
                             and t.dtype == torch.float8_e4m3fn),
                            ("scale", "a float32 tensor", lambda t: isinstance(t, torch.Tensor)
                             and t.dtype == torch.float32)], case, "quantize_rows")
        q_ref, scale_ref = fp8.quantize_rows(x)
        compare_tensors(got[1], scale_ref, case, "scale", atol=0, rtol=0,
                        hint="one scale per ROW: amax over the last dim / 448, rounded UP to a power of two "
                             "(2 ** ceil(log2(...))) — not amax / 448 itself, not rounded down, not one per tensor")
        compare_tensors(got[0].float(), q_ref.float(), case, "q", atol=0, rtol=0,
                        hint="q = x / scale (in float32), then .to(torch.float8_e4m3fn); with the scale rounded "
                             "UP no value of x / scale is above 448")
    gen = torch.Generator().manual_seed(6)
    for M, N, K in [(4, 3, 16), (16, 8, 64)]:
        x, w = torch.randn(M, K, generator=gen) * 3, torch.randn(N, K, generator=gen) * 0.02
        case = f"fp8_matmul(x {tuple(x.shape)}, w {tuple(w.shape)})"
        got = call(ex.fp8_matmul, case, x.clone(), w.clone())
        check_returns(got, [("out", "a float tensor (M, N)", is_float_tensor)], case, "fp8_matmul", single=True)
        xq, xs = fp8.quantize_rows(x)
        wq, ws = fp8.quantize_rows(w)
        expected = fp8.scaled_grouped_mm_reference(xq, xs, wq[None], ws[None],
                                                   torch.tensor([M], dtype=torch.int32), torch.float32)
        compare_tensors(got, expected, case, "out", atol=1e-6, rtol=1e-5,
                        hint="quantize BOTH x and w row by row, multiply the float8 values as float32 "
                             "(xq.float() @ wq.float().T), then multiply row i by x_scale[i] and column j by "
                             "w_scale[j]")


# --- 9d. model_forward (02_model.py, section 6: Block.forward, LLM.forward and LLM.hidden) ----------------

def forward_model(seed: int, n_layer: int, C: int = 32, V: int = 64):
    """A small 02 LLM with seeded weights, norms not all 1 (so that a missing norm weight shows)."""
    model_lib = importlib.import_module("02_model")
    torch.manual_seed(seed)
    config = model_lib.LLMConfig(depth=1, n_layer=n_layer, n_embd=C, head_dim=16, n_head=C // 16, n_kv_head=1,
                                 ffn_dim=32, n_experts=4, vocab_size=V, block_size=16)
    model = model_lib.LLM(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("ln1.weight", "ln2.weight", "ln_f.weight")):
                p.copy_(1 + 0.3 * torch.randn(p.shape))
            elif "c_proj" in name:
                p.mul_(20)                   # blocks that move x: a missing residual or norm shows
    return model


def block_parts(model) -> list[dict]:
    """What the student gets for each block: the two norm weights and the two branches as functions."""
    def moe(block):
        def run(x):
            y, router = block.moe(x)
            return y, router["balance"]
        return run
    def attn(block):
        return lambda x: block.attn(x)
    return [{"ln1": b.ln1.weight.detach().clone(), "ln2": b.ln2.weight.detach().clone(),
             "attn": attn(b), "moe": moe(b)} for b in model.transformer.h]


def check_model_forward(ex) -> None:
    gen = torch.Generator().manual_seed(0)
    fresh = np.random.default_rng(fresh_seed("model_forward"))
    cases = [(0, 1, False, False, "1 block, no targets (eval mode)",
              "x = wte[idx]; each block pre-norm with residuals: x = x + attn(rmsnorm(x, ln1)); x = x + "
              "moe(rmsnorm(x, ln2))[0]; then rmsnorm(x, ln_f_weight) (eps 1e-6); logits = x @ wte.T"),
             (1, 2, False, False, "2 blocks, no targets (eval mode)",
              "each block is pre-norm with residuals: x = x + attn(rmsnorm(x, ln1)); x = x + moe(rmsnorm(x, ln2))[0]"),
             (2, 2, True, False, "2 blocks, targets with two −1 (ignored), eval mode: cross-entropy alone",
              "loss = cross-entropy over the targets that are not −1 (ignore_index=-1); no balance term in eval "
              "mode"),
             (3, 3, True, True, "3 blocks, targets, TRAINING mode: cross-entropy + balance_coef × mean balance",
              "in training mode add balance_coef × the MEAN over the layers of the balance losses"),
             (int(fresh.integers(10**6)), int(fresh.integers(1, 4)), True, True, f"fresh seed {RUN_SEED}, training",
              "see the hints above")]
    for seed, n_layer, with_targets, training, why, hint in cases:
        model = forward_model(seed % 1000, n_layer)
        model.train(training)
        B, T = 2, int(5 + seed % 4)
        idx = torch.randint(0, 64, (B, T), generator=gen)
        targets = torch.randint(0, 64, (B, T), generator=gen) if with_targets else None
        if targets is not None and not training:
            targets[0, 1] = targets[1, 3] = -1
        seen = []                                # the final norm's input, to recognise a missing or weightless norm
        hook = model.transformer.ln_f.register_forward_hook(lambda m, args, out: seen.append(args[0]))
        with torch.no_grad():
            logits, loss = model(idx, targets)
        hook.remove()
        with torch.no_grad():
            ce = None if targets is None else F.cross_entropy(logits.reshape(-1, 64), targets.reshape(-1),
                                                              ignore_index=-1)
        wte, ln_f = model.transformer.wte.weight.detach().clone(), model.transformer.ln_f.weight.detach().clone()
        case = (f"llm_forward(idx {tuple(idx.shape)}, wte {tuple(wte.shape)}, {n_layer} blocks, ln_f_weight, "
                f"targets {None if targets is None else targets.tolist()}, training={training}, balance_coef "
                f"{model.config.balance_coef}) — {why}")
        with torch.no_grad():
            got = call(ex.llm_forward, case, idx.clone(), wte, block_parts(model), ln_f, targets, training,
                       model.config.balance_coef)
        check_returns(got, [("logits", "a float tensor (B, T, V)", is_float_tensor),
                            ("loss", "None without targets, else a 0-dim float tensor",
                             lambda t: t is None if targets is None else is_float_tensor(t) and t.numel() == 1)],
                      case, "llm_forward")
        got_logits, got_loss = got
        check_shape(got_logits, logits, case, "logits", hint="logits = x @ wte.T: one score per vocabulary entry")
        x = seen[0]                                                  # (B, T, C) before the final norm
        close = lambda a: torch.allclose(got_logits.double(), a.double(), atol=1e-4, rtol=1e-4)  # noqa: E731
        if not close(logits):
            if close(x @ wte.T):
                hint = "apply the final RMSNorm (with ln_f_weight) to x before the head"
            elif close(F.rms_norm(x, (x.shape[-1],), None, 1e-6) @ wte.T):
                hint = "the final RMSNorm multiplies by ln_f_weight"
        compare_tensors(got_logits, logits, case, "logits", atol=1e-4, rtol=1e-4, hint=hint)
        if targets is None:
            continue
        got_loss = got_loss.reshape(())
        mean_balance = None
        if training:
            mean_balance = (loss - ce).item() / model.config.balance_coef
            g = got_loss.item()
            if math.isclose(g, ce.item(), rel_tol=1e-5):
                hint = "in training mode add balance_coef × the mean of the layers' balance losses"
            summed = ce.item() + model.config.balance_coef * mean_balance * n_layer
            if n_layer > 1 and not math.isclose(g, ce.item(), rel_tol=1e-5) and math.isclose(g, summed, rel_tol=1e-5):
                hint = "the MEAN of the layers' balance losses, not their sum"
        compare_tensors(got_loss, loss.reshape(()), case, "loss", atol=1e-5, rtol=1e-5, hint=hint)


# --- 9c. sampling (02_model.py, section 6: LLM.generate and LLM._sample) ----------------------------------

class LogitsModel:
    """Stands in for 02's LLM inside LLM._sample: whatever it is fed, the last position's logits are `logits`.
    So 02's own sampling code picks a token from logits the check chooses."""

    def __init__(self, logits: torch.Tensor, block_size: int = 8):
        self.logits = logits
        self.config = types.SimpleNamespace(block_size=block_size)
        self.transformer = types.SimpleNamespace(h=[])

    def __call__(self, idx, caches=None):
        return self.logits.expand(1, idx.shape[1], -1), None


def sampling_model(seed: int, block_size: int = 8):
    """A small 02 LLM (1 layer, vocab 64) with seeded weights, in eval mode, for generate."""
    model_lib = importlib.import_module("02_model")
    torch.manual_seed(seed)
    config = model_lib.LLMConfig(depth=1, n_embd=32, head_dim=16, n_head=2, n_kv_head=1, ffn_dim=32, n_experts=4,
                                 vocab_size=64, block_size=block_size)
    model = model_lib.LLM(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(5)          # logits of a few units: every draw depends on the generator
    return model


def check_sample_next(ex, model_lib, gen, fresh) -> None:
    V = 50
    ties = (torch.randint(0, 4, (V,), generator=gen) / 2).float()           # many logits share the k-th value
    cases = [("random logits ×3", 3 * torch.randn(V, generator=gen), 1.0, None),
             ("random logits ×3, temperature 0.7, top_k 5", 3 * torch.randn(V, generator=gen), 0.7, 5),
             ("temperature 0: greedy", torch.randn(V, generator=gen), 0.0, 5),
             ("temperature 2.5, top_k 10", 3 * torch.randn(V, generator=gen), 2.5, 10),
             ("top_k 1: always the largest logit", torch.randn(V, generator=gen), 1.0, 1),
             ("top_k 100 > V = 50: k = min(top_k, V)", torch.randn(V, generator=gen), 1.0, 100),
             ("logits in {0, 0.5, 1, 1.5}, top_k 8: several logits EQUAL the 8th largest", ties, 1.0, 8),
             (f"fresh seed {RUN_SEED}, temperature 0.9, top_k 12", 4 * torch.randn(V, generator=fresh), 0.9, 12)]
    for why, logits, temperature, top_k in cases:
        for draw in range(12):
            seed = 1000 * draw + 17
            case = (f"sample_next(logits (V = {V},) — {why}, temperature {temperature}, top_k {top_k}, "
                    f"gen = torch.Generator().manual_seed({seed}))")
            expected = model_lib.LLM._sample(LogitsModel(logits), [0], 1, temperature, top_k, False,
                                             torch.Generator().manual_seed(seed), None, "cpu")[-1]
            got = call(ex.sample_next, case, logits.clone(), temperature, top_k, torch.Generator().manual_seed(seed))
            if not isinstance(got, (int, np.integer)) and not (isinstance(got, torch.Tensor) and got.numel() == 1
                                                               and not got.is_floating_point()):
                raise Wrong(case, f"sample_next should return one token id (an int), got {describe(got)}")
            if int(got) == expected:
                continue
            scaled = logits / (temperature or 1.0)
            kept = scaled >= torch.topk(scaled, min(top_k or V, V)).values[-1]
            if temperature == 0:
                hint = "temperature 0 is greedy: return int(logits.argmax()), no draw"
            elif top_k is not None and not kept[int(got)]:
                hint = (f"token {int(got)} is not among the top {top_k}: keep the logits >= the k-th largest, set "
                        "the others to −inf BEFORE the softmax")
            elif int(kept.sum()) > min(top_k or V, V):
                hint = ("several logits equal the k-th largest: keep them ALL (logits < kth → −inf), as 02 does, "
                        "not exactly k by index")
            else:
                hint = ("divide the logits by the temperature, softmax, then ONE draw with torch.multinomial(probs, "
                        "1, generator=gen): the seeded generator you are given, not the global one")
            raise Wrong(case, f"token: expected {expected} (02's _sample with the same generator), got {int(got)}",
                        hint)


def check_generate(ex, model_lib, fresh) -> None:
    cases = [(3, [5, 6, 7], 8, 0.8, 10, "prompt of 3 tokens, 8 new ones: the cache fills at 4 and restarts", 4),
             (7, list(range(10, 20)), 6, 0.0, None, "greedy, a prompt of 10 > block_size 8: feed its last 8", 8),
             (11, [1], 12, 1.3, 20, "a one-token prompt, 12 new tokens, block_size 8", 8),
             (int(fresh.integers(10**6)), [int(t) for t in fresh.integers(0, 64, size=int(fresh.integers(1, 9)))],
              int(fresh.integers(4, 14)), round(float(fresh.uniform(0.5, 1.5)), 2), int(fresh.integers(2, 30)),
              f"fresh seed {RUN_SEED}", 8)]
    for seed, prompt, n_new, temperature, top_k, why, block in cases:
        model = sampling_model(seed % 1000, block)
        feeds = []
        hook = model.register_forward_pre_hook(
            lambda m, args, kwargs: feeds.append((kwargs["caches"][0].length, args[0].shape[1])), with_kwargs=True)
        try:
            expected = model.generate(prompt, max_new_tokens=n_new, temperature=temperature, top_k=top_k,
                                      use_cache=True, seed=seed)
        finally:
            hook.remove()
        case = (f"generate(forward, prompt {prompt}, max_new_tokens {n_new}, temperature {temperature}, top_k "
                f"{top_k}, seed {seed}, block_size {block}) — {why}")
        state = {"caches": None, "step": 0}

        def forward(new_ids, past):
            step = state["step"]
            state["step"] += 1
            if step >= len(feeds):
                raise Wrong(case, f"forward call {step}: 02 calls forward only {len(feeds)} times here (once per "
                            "new token)", "one forward call per new token: max_new_tokens calls in all")
            ints = isinstance(new_ids, (list, tuple)) and all(isinstance(t, (int, np.integer)) for t in new_ids)
            if not (ints and new_ids):
                raise Wrong(case, f"forward call {step}: new_ids should be a non-empty list of ints, got "
                            f"{new_ids!r:.60}")
            if past != 0 and (state["caches"] is None or state["caches"][0].length != past):
                held = 0 if state["caches"] is None else state["caches"][0].length
                raise Wrong(case, f"forward call {step}: forward({list(new_ids)}, past={past}) but the cache holds "
                            f"{held} tokens", "past = how many tokens the cache already holds (everything fed "
                            "since the last restart): the new tokens sit at positions past, past + 1, ...")
            if past + len(new_ids) > block:
                raise Wrong(case, f"forward call {step}: forward(<{len(new_ids)} ids>, past={past}) would put tokens "
                            f"at positions up to {past + len(new_ids) - 1}, beyond block_size − 1 = {block - 1}",
                            "when the cache holds block_size tokens, restart: forward(ids[-block_size:], 0)")
            if step < len(feeds) and (past, len(new_ids)) != feeds[step]:
                want_past, want_n = feeds[step]
                raise Wrong(case, f"forward call {step}: you fed {len(new_ids)} token(s) at past={past}; 02 feeds "
                            f"{want_n} at past={want_past}",
                            "feed only the token sampled last, at past = the cache's length; feed a whole window "
                            "(with past 0) only at the start and when the cache is full" if want_n == 1 else
                            "at the start and when the cache holds block_size tokens: the last block_size ids, "
                            "past 0")
            if past == 0:
                state["caches"] = [model_lib.LayerCache() for _ in model.transformer.h]
            with torch.no_grad():
                logits, _ = model(torch.tensor([list(map(int, new_ids))]), caches=state["caches"])
            return logits[0, -1].float()                                      # (V,)

        got = call(ex.generate, case, forward, list(prompt), n_new, temperature, top_k, seed, block)
        if not (isinstance(got, list) and all(isinstance(t, (int, np.integer)) for t in got)):
            raise Wrong(case, f"generate should return a list of ints (prompt + new ids), got {describe(got)}")
        if list(got) != expected:
            i = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
            raise Wrong(case, f"ids: expected {expected}, got {list(got)} (first difference at index {i})",
                        "return prompt + the new ids" if i < len(prompt) or len(got) != len(expected) else
                        "one torch.Generator().manual_seed(seed) made once, used for every draw in order; each "
                        "token from sample_next on the logits forward returned")
        if state["step"] != len(feeds):
            raise Wrong(case, f"you called forward {state['step']} times, 02 calls it {len(feeds)} times",
                        "one forward call per new token")


def check_sampling(ex) -> None:
    model_lib = importlib.import_module("02_model")
    gen = torch.Generator().manual_seed(0)
    fresh_gen = torch.Generator().manual_seed(fresh_seed("sampling"))
    check_sample_next(ex, model_lib, gen, fresh_gen)
    check_generate(ex, model_lib, np.random.default_rng(fresh_seed("generate")))


# --- 10. muon_update (03_muon.py, section 2: Muon.step → muon_update_ → newton_schulz, adjust_lr) ------

def check_muon_update(ex) -> None:
    muon = importlib.import_module("03_muon")
    gen = torch.Generator().manual_seed(0)
    lr, wd = 0.02, 0.1
    base_hint = ("buf ← μ·buf + (1−μ)·g; Nesterov update (1−μ)·g + μ·buf; then Newton–Schulz on EACH matrix "
                 "(divide by its own Frobenius norm, 5 quintic steps; bf16 like 03 matches best)")
    cases = [((32, 32), 0.0, "square, no weight decay: momentum, Nesterov and Newton–Schulz only", base_hint),
             ((32, 32), wd, "square, weight decay 0.1", "decay multiplies p by (1 − lr·weight_decay) with the "
              "lr you were given, before the orthogonal step"),
             ((64, 16), 0.0, "tall 64×16, no decay: the shape-dependent lr", "the step is lr·sqrt(max(1, A/B)) "
              "for an A×B matrix (A = rows): ×2 here"),
             ((16, 64), 0.0, "wide 16×64, no decay", "wide matrices get no boost: sqrt(max(1, A/B)) = 1 when A < B"),
             ((64, 16), wd, "tall 64×16 with decay", "the decay uses the RAW lr, not the shape-scaled one"),
             ((4, 48, 16), wd, "a stack of 4 experts (E, A, B) whose slices have very different scales",
              "each of the E matrices is orthogonalised on its own: one Frobenius norm per slice, and the lr "
              "scale of one A×B slice"),
             ((24, 40), wd, f"24×40 with decay, fresh seed {RUN_SEED}", "see the hints above")]
    for shape, decay, why, hint in cases:
        if "fresh" in why:
            gen = torch.Generator().manual_seed(fresh_seed("muon_update"))
        p = torch.randn(*shape, generator=gen)
        scales = torch.logspace(-2, 1, shape[0])[:, None, None] if len(shape) == 3 else 1.0
        grad = torch.randn(*shape, generator=gen) * scales
        buf = torch.randn(*shape, generator=gen) * scales
        case = (f"p, grad, buf of shape {shape}, lr {lr}, momentum 0.95, weight_decay {decay}, nesterov True, "
                f"5 Newton–Schulz steps — {why}")
        param = torch.nn.Parameter(p.clone())
        opt = muon.Muon([{"params": [param], "stacked": len(shape) == 3}], lr=lr, weight_decay=decay)
        param.grad = grad.clone()
        opt.state[param]["momentum_buffer"] = buf.clone()
        opt.step()
        exp_p, exp_buf = param.detach(), opt.state[param]["momentum_buffer"]
        got = call(ex.muon_update, case, p.clone(), grad.clone(), buf.clone(), lr, 0.95, decay, True, 5)
        check_returns(got, [("new_p", f"a float tensor of shape {shape}", is_float_tensor),
                            ("new_buf", f"a float tensor of shape {shape}", is_float_tensor)], case, "muon_update")
        new_p, new_buf = got
        check_shape(new_p, exp_p, case, "new_p")
        check_shape(new_buf, exp_buf, case, "new_buf")
        if (torch.allclose(new_p.double(), exp_buf.double(), atol=1e-5) and
                torch.allclose(new_buf.double(), exp_p.double(), atol=1e-4)):
            raise Wrong(case, "the outputs are in the wrong order: you returned (new_buf, new_p)",
                        "return (new p, new momentum buffer)")
        compare_tensors(new_buf, exp_buf, case, "new_buf", atol=1e-5, rtol=1e-5,
                        hint="the momentum buffer is a running AVERAGE: μ·buf + (1−μ)·g (torch's lerp), "
                             "not μ·buf + g")
        step = (p * (1 - lr * decay) - exp_p).abs().max().item()   # how far the orthogonal step moved p
        loose = 0.12 if "fresh" in why else 0.08            # bf16 rounding: ≈ 4 %, on some fresh inputs 8 %
        compare_tensors(new_p, exp_p, case, "new_p", atol=loose * step, rtol=0, hint=hint)


# --- 11. train_step (05_train.py, section 2: train_step) -------------------------------------------------

def tiny_training_setup(seed: int):
    """A small 02 LLM, its 03 optimizers (Muon + AdamW) and 3 steps × 2 micro-batches of random tokens."""
    model_lib = importlib.import_module("02_model")
    muon = importlib.import_module("03_muon")
    torch.manual_seed(seed)
    config = model_lib.LLMConfig(depth=2, n_embd=32, head_dim=16, n_head=2, n_kv_head=1, ffn_dim=32,
                                 n_experts=4, vocab_size=64, block_size=16)
    model = model_lib.LLM(config).train()
    optimizers, _ = muon.build_optimizers(model, lr=3e-3)
    return model, optimizers


def check_train_step(ex) -> None:
    train = importlib.import_module("05_train")
    gen = torch.Generator().manual_seed(0)
    for grad_clip, n_micro, n_steps, why in [(0.05, 2, 2, "clipping on (grad_clip 0.05 is below the gradient norm)"),
                                             (100.0, 3, 2, "clipping off in effect (grad_clip 100), 3 micro-batches"),
                                             (0.2, 2, 1, f"fresh batches, seed {RUN_SEED}")]:
        if "fresh" in why:
            gen = torch.Generator().manual_seed(fresh_seed("train_step"))
        batches = [[(torch.randint(0, 64, (2, 8), generator=gen), torch.randint(0, 64, (2, 8), generator=gen))
                    for _ in range(n_micro)] for _ in range(n_steps)]
        ref_model, ref_opts = tiny_training_setup(1)
        model, opts = make(ex, "tiny_training_setup", 1)    # the same model, where the student's code runs
        cfg = dataclasses.replace(train.PRESETS["tiny"], grad_clip=grad_clip)
        for step, micro in enumerate(batches):
            case = (f"step {step} of {n_steps} on 02's LLM (depth 2, n_embd 32, 4 experts) with 03's Muon + AdamW, "
                    f"{n_micro} micro-batches of (2, 8) tokens, grad_clip {grad_clip} — {why}")
            loss_ref, norm_ref, _ = train.train_step(ref_model, ref_model, ref_opts, micro, cfg, torch.device("cpu"))
            got = call(ex.train_step, case, model, opts, list(micro), grad_clip)
            scalar = lambda t: isinstance(t, torch.Tensor) and t.numel() == 1 and t.is_floating_point()
            check_returns(got, [("loss", "a one-element float tensor", scalar),
                                ("grad_norm", "a one-element float tensor", scalar)], case, "train_step")
            loss, norm = (t.detach().reshape(()) for t in got)
            if math.isclose(loss.item(), norm_ref.item(), rel_tol=1e-4) and math.isclose(norm.item(), loss_ref.item(), rel_tol=1e-4):
                raise Wrong(case, "the outputs are in the wrong order: you returned (grad_norm, loss)",
                            "return (mean loss, grad norm)")
            compare_tensors(loss, loss_ref, case, "loss", atol=1e-5, rtol=1e-5,
                            hint="the MEAN of the micro-batches' losses (not the last one, not the sum)")
            ratio = norm.item() / norm_ref.item()
            compare_tensors(norm, norm_ref, case, "grad_norm", atol=1e-6, rtol=1e-4,
                            hint=f"yours is {ratio:.3g}× 05's. " + (
                                "Divide each micro-batch's loss by the number of micro-batches before backward: "
                                "the gradient must be that of the MEAN loss" if abs(ratio - n_micro) < 1e-3 else
                                "Report the global norm BEFORE clipping (the norm of all gradients together)"
                                if abs(norm.item() - grad_clip) < 1e-4 else
                                "right at step 0 but not later: the previous step's gradients are still there; "
                                "clear them after the optimizers step" if step > 0 else
                                "the global norm: sqrt of the sum of every gradient element squared, over all parameters"))
            after = call(model.state_dict, case)
            for name, p_ref in ref_model.named_parameters():
                compare_tensors(after[name].detach(), p_ref.detach(), case, f"parameter {name} after the step", atol=1e-6,
                                rtol=1e-4, hint="clip (scale every gradient by min(1, grad_clip / (norm + 1e-6))) "
                                "BEFORE the optimizers step; step every optimizer; then zero the gradients, or "
                                "the next step adds onto these")


# --- 12. hellaswag_requests (06_eval.py, section 2: example_pairs, encode_requests, hellaswag_requests) ---

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


# --- 13. bpe_trainer (01_tokenizer.py, section 3: train_bpe_scratch; section 4: train_tokenizer) ----------

def bpe_trainer_texts() -> list[tuple[str, list[str], int, int]]:
    """(why, texts, vocab_size, min_frequency): small texts, edge cases, and a few KB of real text."""
    import house
    tokenizer_lib = importlib.import_module("01_tokenizer")
    base = tokenizer_lib.MIN_VOCAB_SIZE
    cases = [(f"{text!r}", [text], base + 30, 2 if text.isascii() else 1) for text in BPE_TEXTS]
    cases += [("a tie at the first step: ('a','b') and ('b','a') both occur 4 times", ["ab ba ab ba ab ba ab ba"], base + 5, 2),
              ("words of one character only: no pair to merge", ["a!b?c;d"], base + 10, 1),
              ("min_frequency 1: pairs that occur once are merged too", ["low lower lowest newer wider"], base + 40, 1),
              ("min_frequency 3: stops at the first pair seen fewer than 3 times", [BPE_TEXTS[0] * 2], base + 40, 3),
              ("one word repeated against one long word: 'xy' is 4 times in one word, 'ab' once in each of 5",
               ["ab ab ab ab ab xyxyxyxy"], base + 10, 2),
              ("the vocabulary limit stops training: room for 8 merges, many pairs left above min_frequency",
               [BPE_TEXTS[0] * 3], base + 8, 2)]
    files = [house.EMBEDDED_CORPUS_DIR / name for name in ("shakespeare.jsonl.zst", "python-docs.jsonl.zst")]
    if all(path.is_file() for path in files):
        texts = ["\n".join(itertools.islice(house.iter_file_texts(path), 3))[:3000] for path in files]
        why = "the first 3,000 characters of shakespeare and of python-docs (embedded/corpus)"
    else:
        texts = [" ".join(BPE_TEXTS) * 20, "def train_bpe(words, vocab):\n    return merges\n" * 10]
        why = "a built-in text of 3,670 characters (embedded/corpus is not here)"
    fresh = np.random.default_rng(fresh_seed("bpe_trainer"))
    words = ["".join(fresh.choice(list("abcde"), size=int(fresh.integers(1, 6)))) for _ in range(12)]
    text = " ".join(fresh.choice(words, size=80))
    return cases + [(why, texts, base + 150, 2), (f"80 random words (fresh seed {RUN_SEED})", [text], base + 25, 2)]


def first_only_merge(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    """`pair` merged at its FIRST occurrence only (the slip the check recognises, not the rule)."""
    for i in range(len(word) - 1):
        if (word[i], word[i + 1]) == pair:
            return word[:i] + (word[i] + word[i + 1],) + word[i + 2:]
    return word


def bpe_state(tokenizer_lib, words: list[str], vocab: dict, merges: list, merge=None) -> tuple[dict, dict]:
    """(word counts, vocab) after applying `merges` in order, with 01's merge_pair (or `merge`)."""
    merge = merge or tokenizer_lib.merge_pair
    counts, vocab = collections.Counter(tuple(w) for w in words), dict(vocab)
    for pair in merges:
        merged = collections.Counter()
        for word, n in counts.items():
            merged[merge(word, pair)] += n
        counts = merged
        vocab.setdefault(pair[0] + pair[1], len(vocab))
    return counts, vocab


def best_pair(pairs: dict, vocab: dict):
    return min(pairs, key=lambda p: (-pairs[p], vocab[p[0]], vocab[p[1]])) if pairs else None


def bpe_merge_hint(tokenizer_lib, words, vocab, expected, got, i, min_frequency,
                   vocab_size: int = 0) -> tuple[str, str]:
    """(what differs at merge i, a hint naming the likely slip)."""
    counts, state_vocab = bpe_state(tokenizer_lib, words, vocab, expected[:i])
    pairs = tokenizer_lib.count_pairs(counts)
    right = f"your first {i} merges are right; " if i else ""
    # what two common slips would pick next (None: they would stop here)
    unweighted = collections.Counter(pair for word in counts for pair in zip(word, word[1:]))
    first_counts, first_vocab = bpe_state(tokenizer_lib, words, vocab, expected[:i], first_only_merge)
    first_pairs = tokenizer_lib.count_pairs(first_counts)
    slips = [(unweighted, state_vocab, "yours follows from counting each pair once per distinct word: count it once "
              "per occurrence TIMES how often its word occurs"),
             (first_pairs, first_vocab, "yours follows from merging only the FIRST occurrence of a pair in each "
              "word: replace EVERY occurrence, left to right, without overlap (('a','a','a','a') → ('aa','aa'))")]
    slip_picks = [(b if b is not None and counts_[b] >= min_frequency else None, hint)
                  for counts_, v, hint in slips for b in [best_pair(counts_, v)]]
    if i >= len(got):
        best = expected[i]
        made = [a + b for a, b in expected[:i]]
        repeated = next((m for k, m in enumerate(made) if m in made[:k] or m in vocab), None)
        if pairs[best] == min_frequency:
            hint = (f"{best} occurs exactly min_frequency = {min_frequency} times, and a pair seen min_frequency "
                    "times IS merged: stop only when the best count is BELOW min_frequency (count < "
                    "min_frequency, not <=)")
        elif repeated is not None and len(got) == vocab_size - len(vocab):
            hint = (f"an earlier merge made {repeated!r}, a token that was already in the vocab: it added no id, so "
                    "the vocab is not full yet — stop when len(vocab) reaches vocab_size, not after "
                    "vocab_size − (start size) merges")
        else:
            hint = next((h for pick, h in slip_picks if pick is None), f"keep going while the vocab has fewer "
                        f"than vocab_size tokens, some pair is left and the best one occurs at least min_frequency "
                        f"({min_frequency}) times")
        return (f"{right}you stopped after {len(got)} merges, expected {len(expected)}: merge {i} should be {best} "
                f"(count {pairs[best]})", hint)
    if i >= len(expected):
        best = best_pair(pairs, state_vocab)
        why = ("no pair is left" if best is None else f"the best pair {best} occurs {pairs[best]}×, below "
               f"min_frequency {min_frequency}" if pairs[best] < min_frequency else
               f"the vocab is full ({len(state_vocab)} tokens): a merge whose token already exists adds no id")
        return (f"{right}you went on to merge {got[i]}, expected to stop after {len(expected)} merges: {why}",
                "stop when the vocab holds vocab_size tokens, no pair is left, or the best pair occurs fewer than "
                "min_frequency times")
    best, mine = expected[i], tuple(got[i])
    what = f"{right}merge {i}: expected {best} (count {pairs[best]}), got {mine} (count {pairs.get(mine, 0)})"
    if pairs.get(mine, 0) == pairs[best]:
        ids = lambda p: (state_vocab.get(p[0]), state_vocab.get(p[1]))
        return what, (f"a tie: both occur {pairs[best]} times. The pair with the smallest (vocab[left], vocab[right]) "
                      f"wins — {best} has ids {ids(best)}, yours {ids(mine)}: the OLDEST tokens, "
                      "not the alphabetically first pair")
    hint = next((h for pick, h in slip_picks if pick == mine), None)
    return what, hint or "count the pairs of the words as they are after the previous merges, then take the most frequent"


def check_bpe_trainer(ex) -> None:
    tokenizer_lib = importlib.import_module("01_tokenizer")
    _, start_vocab = tokenizer_lib.train_bpe_scratch([""], tokenizer_lib.MIN_VOCAB_SIZE)   # specials + 256 bytes
    for why, texts, vocab_size, min_frequency in bpe_trainer_texts():
        words = [w for text in texts for w in tokenizer_lib.split_words(text)]
        expected, _ = tokenizer_lib.train_bpe_scratch(texts, vocab_size, min_frequency)
        hf = tokenizer_lib.tokenizer_merges(tokenizer_lib.train_tokenizer(texts, vocab_size, min_frequency,
                                                                          show_progress=False))
        if hf != expected:     # the lesson's own claim; if it ever fails, the check cannot say who is right
            raise RuntimeError(f"01's train_bpe_scratch and HF's BpeTrainer disagree on {why}: fix 01 first")
        case = (f"train_bpe(<{len(words)} words of {why}>, vocab, vocab_size {vocab_size}, "
                f"min_frequency {min_frequency}) — {len(expected)} merges expected (01's train_bpe_scratch and "
                "HF's BpeTrainer agree)")
        got = call(ex.train_bpe, case, list(words), dict(start_vocab), vocab_size, min_frequency)
        if not (isinstance(got, (list, tuple)) and all(isinstance(m, (tuple, list)) and len(m) == 2
                                                        and all(isinstance(t, str) for t in m) for m in got)):
            raise Wrong(case, f"train_bpe should return a list of (left, right) pairs of str; got {describe(got)}"
                        + (f" whose first item is {got[0]!r:.60}" if isinstance(got, (list, tuple)) and got else ""))
        got = [tuple(m) for m in got]
        if got != expected:
            i = next(i for i in range(max(len(got), len(expected)))
                     if i >= len(got) or i >= len(expected) or got[i] != expected[i])
            detail, hint = bpe_merge_hint(tokenizer_lib, words, start_vocab, expected, got, i, min_frequency,
                                          vocab_size)
            raise Wrong(case, detail, hint)


# --- 14. shard_loader (04_data.py, section 5: ShardLoader.epoch_order, batch_windows, get_batch, state_dict) --

def write_shard_folder(data_dir: Path, sizes: list[int], seed: int) -> list[np.ndarray]:
    """Shards of random uint16 tokens + a manifest.json, written the way 04 writes them (np.save of a 1-D
    uint16 array, one record per shard: index, file, split, tokens, sha256); shard 0 is the val split.
    Returns the train shards' arrays, in manifest order."""
    data_lib = importlib.import_module("04_data")
    gen = np.random.default_rng(seed)
    records, arrays = [], []
    for index, n in enumerate(sizes):
        tokens = gen.integers(0, 60_000, size=n).astype(np.uint16)     # random ids: every window is unique
        path = data_dir / data_lib.shard_name(index)
        np.save(path, tokens)
        records.append({"index": index, "file": path.name, "split": "val" if index == 0 else "train",
                        "tokens": n, "sha256": importlib.import_module("house.shards").sha256_file(path)})
        arrays.append(tokens)
    (data_dir / "manifest.json").write_text(json.dumps({"shards": records}), encoding="utf-8")
    return arrays[1:]


def find_window(shards: list[np.ndarray], row: np.ndarray) -> tuple[int, int] | None:
    """(shard, start) where `row` occurs as consecutive tokens, or None."""
    for s, tokens in enumerate(shards):
        if len(tokens) >= len(row):
            views = np.lib.stride_tricks.sliding_window_view(tokens.astype(np.int64), len(row))
            hits = np.nonzero((views == row).all(axis=1))[0]
            if len(hits):
                return s, int(hits[0])
    return None


LOADER_ORDER_HINT = ("the epoch's order: rng = np.random.default_rng(seed + epoch); rng.permutation(number of "
                     "shards) first, then rng.permutation(windows of s) for each shard s in that order; batch g "
                     "is windows g·B … g·B + B − 1 of that list")


def compare_batch(got, expected: tuple[torch.Tensor, torch.Tensor], shards: list[np.ndarray], T: int,
                  case: str, what: str = "get_batch") -> None:
    """Raise Wrong unless `got` is 04's (x, y); say which window each wrong row of x really is."""
    int64 = lambda t: isinstance(t, torch.Tensor) and t.dtype == torch.int64
    check_returns(got, [("x", "an int64 tensor (B, T)", int64), ("y", "an int64 tensor (B, T)", int64)], case, what)
    (x, y), (ex, ey) = got, expected
    check_shape(x, ex, case, "x")
    check_shape(y, ey, case, "y")
    if torch.equal(x, ey) and torch.equal(y, ex):
        raise Wrong(case, "x and y are swapped", "x is a window's first T tokens, y its last T (the next tokens)")
    for b in range(ex.shape[0]):
        if torch.equal(x[b], ex[b]):
            continue
        at, want = find_window(shards, x[b].numpy()), find_window(shards, ex[b].numpy())
        detail = (f"x[{b}] is not the window expected: expected tokens {want[1]}…{want[1] + T - 1} of train shard "
                  f"{want[0]}, got " + (f"tokens {at[1]}…{at[1] + T - 1} of train shard {at[0]}" if at else
                                        f"{x[b, :6].tolist()}…, which is not T consecutive tokens of any shard"))
        if at and at[1] % T and at[1] % (T + 1) == 0:
            hint = ("windows start at multiples of T (0, T, 2T, …): each is T + 1 tokens, so consecutive windows "
                    "share one token at their edges — yours start at multiples of T + 1")
        elif at and at[1] % T:
            hint = "a window starts at a multiple of T"
        else:
            hint = LOADER_ORDER_HINT
        raise Wrong(case, detail, hint)
    if not torch.equal(y, ey):
        b = int(torch.nonzero((y != ey).any(dim=1))[0])
        hint = ("y is x itself: y must be x shifted by one — y[b, t] is the token AFTER x[b, t]" if torch.equal(y[b], x[b])
                else "y is shifted the wrong way: y[b, t] is the token AFTER x[b, t] (the window's last T tokens), "
                "not the one before" if torch.equal(y[b, 1:], x[b, :-1]) else
                "y is the window's last T tokens: y[b, t] = the token after x[b, t]")
        raise Wrong(case, f"x is right; y[{b}]: expected {ey[b, :6].tolist()}…, got {y[b, :6].tolist()}…", hint)


def check_shard_loader(ex) -> None:
    import tempfile
    data_lib = importlib.import_module("04_data")
    cases = [([300, 160, 176, 193], 4, 16, 0, "3 train shards of 160, 176 and 193 tokens, B 4, T 16, seed 0"),
             ([50, 97], 3, 8, 7, "one train shard of 97 tokens (12 windows of 8 + 1), B 3, T 8, seed 7"),
             ([40, 10, 129, 64], 2, 16, 3, "train shards of 10 (no window: fewer than T + 1 tokens), 129 and 64 "
                                            "tokens, B 2, T 16, seed 3")]
    fresh = np.random.default_rng(fresh_seed("shard_loader"))
    sizes = [int(n) for n in fresh.integers(20, 120, size=int(fresh.integers(2, 4)))]
    cases.append(([30] + sizes, 2, 8, int(fresh.integers(0, 100)), f"train shards of {sizes} tokens, B 2, T 8, "
                  f"fresh seed {RUN_SEED}"))
    with tempfile.TemporaryDirectory() as tmp:
        for i, (sizes, B, T, seed, why) in enumerate(cases):
            data_dir = Path(tmp) / f"shards_{i}"
            data_dir.mkdir()
            shards = write_shard_folder(data_dir, sizes, seed=100 + i if i < 3 else fresh_seed("shards"))
            real = data_lib.ShardLoader(data_dir, "train", B, T, seed=seed)
            case = f"ShardLoader(<{why}>, B={B}, T={T}, seed={seed})"
            mine = call(ex.ShardLoader, case, [s.copy() for s in shards], B, T, seed)
            n = call(len, f"len({case})", mine)
            if n != len(real):
                raise Wrong(case, f"len(loader): expected {len(real)} batches per epoch, got {n}",
                            "a shard of n tokens holds (n − 1) // T windows (each needs T + 1 tokens); an epoch "
                            "has (all windows) // B batches")
            for epoch, batch in [(e, g) for e in (0, 1) for g in range(len(real))]:
                where = f"{case}.get_batch(epoch {epoch}, batch {batch})"
                compare_batch(call(mine.get_batch, where, epoch, batch), real.get_batch(epoch, batch), shards, T, where)
            check_resume(ex, real, shards, B, T, seed, case)


def check_resume(ex, real, shards: list[np.ndarray], B: int, T: int, seed: int, case: str) -> None:
    """Iterate both loaders past an epoch boundary, save the student's state, resume a fresh loader from it."""
    n_epoch = len(real)
    # stops where a repeated, a skipped and a restarted batch are three different batches come first
    for stop in dict.fromkeys(s for s in (n_epoch + 2, 3, n_epoch - 1, n_epoch, 1) if s > 0):
        real.load_state_dict({**real.state_dict(), "epoch": 0, "batch": 0})
        mine = call(ex.ShardLoader, case, [s.copy() for s in shards], B, T, seed)
        real_it, mine_it = iter(real), call(iter, case, mine)
        for k in range(stop):
            where = f"{case}: batch {k} of iterating from the start ({n_epoch} batches per epoch)"
            compare_batch(call(next, where, mine_it), next(real_it), shards, T, where, "next(iter(loader))")
        where = (f"{case}: iterate {stop} batches, state = loader.state_dict(), then a NEW loader, "
                 f"load_state_dict(state), next(iter(new))")
        state = copy.deepcopy(call(mine.state_dict, where))
        if not isinstance(state, dict):
            raise Wrong(where, f"state_dict should return a dict, got {describe(state)}")
        fresh = call(ex.ShardLoader, where, [s.copy() for s in shards], B, T, seed)
        call(fresh.load_state_dict, where, state)
        got = call(next, where, call(iter, where, fresh))
        expected = next(real_it)
        position = divmod(stop, n_epoch)             # (epoch, batch) of the batch that must come next
        same = lambda e, g: (isinstance(got, (tuple, list)) and len(got) == 2 and
                             all(torch.equal(a, b) for a, b in zip(got, real.get_batch(e, g))))
        slips = [(divmod(stop - 1, n_epoch), "the batch the run had ALREADY seen (the state was taken before "
                  "moving on): count a batch as used before yielding it"),
                 (divmod(stop + 1, n_epoch), "the batch AFTER the next one: one batch is skipped — the state "
                  "names the batch that next() returns next, and resuming starts there"),
                 ((position[0], 0), "the FIRST batch of the epoch: resuming restarted the epoch — keep the "
                  "saved batch index too"),
                 ((0, 0), "the first batch of epoch 0: the saved position was not used")]
        for (e, g), what in slips:
            if (e, g) != position and same(e, g) and not same(*position):   # (equal batches by chance: fine)
                raise Wrong(where, f"the resumed loader returned batch {g} of epoch {e}, expected batch "
                            f"{position[1]} of epoch {position[0]} (your state: {state})", f"it returned {what}")
        compare_batch(got, expected, shards, T, where, "next(iter(resumed loader))")


CHECKS = {"bpe_merge": check_bpe_merge, "bpe_trainer": check_bpe_trainer, "rope": check_rope,
          "rms_cross_entropy": check_rms_cross_entropy,
          "router_top2": check_router_top2, "balance_loss": check_balance_loss, "gqa_attention": check_gqa_attention, "moe_forward": check_moe_forward,
          "fp8_quantize": check_fp8_quantize, "model_forward": check_model_forward, "sampling": check_sampling,
          "newton_schulz_step": check_newton_schulz_step, "muon_update": check_muon_update,
          "shard_loader": check_shard_loader,
          "wsd_schedule": check_wsd_schedule, "train_step": check_train_step, "acc_norm": check_acc_norm,
          "hellaswag_requests": check_hellaswag_requests}
assert CHECKS.keys() == EXERCISES.keys()


# --- 15. Running a check and saying what happened -------------------------------------------------------

def exercise_path(name: str, solution: bool = False) -> Path:
    return REPO_DIR / "exercises" / ("solutions" if solution else "") / f"{name}.py"


def load_exercise(name: str, solution: bool = False):
    """exercises.<name> (the file a student edits) or exercises.solutions.<name>, imported HERE (for tests)."""
    return importlib.import_module(f"exercises.{'solutions.' if solution else ''}{name}")


def new_seed() -> int:
    import secrets
    return secrets.randbelow(1_000_000)


def run_check(name: str, module, seed: int | None = None, time_limit: float | None = None) -> tuple[bool, str]:
    """Check one exercise; returns (passed, what to print). `module` is the path of the student's file (run
    in its own guarded process, see section 0) or anything with the exercise's functions (run here: tests).
    A file that names a lesson (or the solution) in its code is refused before anything runs."""
    global RUN_SEED
    RUN_SEED = seed if seed is not None else RUN_SEED if RUN_SEED is not None else new_seed()
    limit = TIME_LIMIT if time_limit is None else time_limit
    is_file = isinstance(module, (str, Path))
    refused = pass_through(name, types.SimpleNamespace(__file__=str(module)) if is_file else module)
    if refused:
        return False, f"refused: {name} — {refused}"
    inside = is_file and Path(module).resolve().is_relative_to(REPO_DIR)
    where = str(Path(module).resolve().relative_to(REPO_DIR)) if inside else str(module) if is_file else name
    sandbox = None
    try:
        if is_file:
            sandbox = Sandbox(name, Path(module), limit)
        CHECKS[name](sandbox or module)
    except NotImplementedError as todo:
        return False, f"not done yet: {todo}"
    except Wrong as wrong:
        return False, f"wrong: {name}\n{wrong.report()}"
    except Crashed as crash:
        error = crash.error
        if isinstance(error, RemoteError):
            kind, trace = error.type_name, error.trace
        else:
            kind = type(error).__name__
            students_frames = error.__traceback__.tb_next   # skip call() in this file: show the student's code
            trace = "".join(traceback.format_exception(type(error), error, students_frames)).rstrip()
        return False, f"error: {name} raised {kind}: {error}\n  input:    {crash.case}\n{trace}"
    except RemoteError as error:     # raised outside call(): while the student's object was being used
        return False, f"error: {name} raised {error.type_name}: {error}\n{error.trace}"
    except ImportError as error:
        return False, f"error: {where} does not import: {error}"
    except AttributeError as missing:  # the module lacks the function the check calls
        return False, f"error: {name} — {missing}: keep the function names from the exercise file"
    except TimedOut:
        return False, (f"error: {name} took longer than {limit:g} s (the time limit per exercise, --time-limit): "
                       "look for a loop that never ends")
    except StudentExit as stop:
        return False, (f"error: {name} called exit() (SystemExit {stop.args[0]!r}): a function returns its result; "
                       "exit() would end the whole check")
    except ProcessDied as died:
        return False, f"error: {name} ended its own process: os._exit, abort or a crash in your code"
    except RefusedAtRun as why:
        return False, f"refused: {name} — {why}"
    finally:
        if sandbox is not None:
            printed = sandbox.close()
            if printed.strip():
                print(f"--- what {name} printed ---\n{printed.rstrip()}", file=sys.stderr)
    return True, f"correct: {name}"


def check_one(name: str, solution: bool, seed: int | None = None, time_limit: float | None = None) -> tuple[bool, str]:
    """Check exercises/<name>.py (or the worked solution) in its own process."""
    path = exercise_path(name, solution)
    if not path.is_file():
        return False, f"error: {path.relative_to(REPO_DIR)} is not there"
    return run_check(name, path, seed, time_limit)


class NoSolutions(importlib.abc.MetaPathFinder):
    """--strict: exercises.solutions cannot be imported in the checker's process either."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith("exercises.solutions"):
            raise ImportError(f"--strict: {fullname} is not importable")
        return None


def main(argv=None) -> int:
    global TIME_LIMIT
    parser = argparse.ArgumentParser(
        prog="python -m exercises.check",
        description="Check an exercise against the numbered lesson's real implementation. Your code runs in its "
                    "own process, which cannot reach the lessons or the worked solutions.",
        epilog="Exercises: " + ", ".join(EXERCISES) + ". Run from the repo root.")
    parser.add_argument("name", nargs="?", help="which exercise (the file name in exercises/, without .py)")
    parser.add_argument("--all", action="store_true", help="check every exercise, one line each")
    parser.add_argument("--solution", action="store_true",
                        help="check the worked solution in exercises/solutions/ instead of your file")
    parser.add_argument("--list", action="store_true", help="list the exercises and their lessons")
    parser.add_argument("--seed", type=int, default=None,
                        help="replay a run: the seed of its fresh cases (each run prints its seed first)")
    parser.add_argument("--time-limit", type=float, default=TIME_LIMIT, metavar="SECONDS",
                        help=f"seconds your code may run per exercise (default {TIME_LIMIT:g})")
    parser.add_argument("--strict", action="store_true",
                        help="for grading: exercises/solutions/ is importable in neither process; --solution refused")
    args = parser.parse_args(argv)
    if args.list:
        for name, (lesson_file, what) in EXERCISES.items():
            print(f"{name:20s} {lesson_file:16s} {what}")
        return 0
    if args.all == bool(args.name):
        raise SystemExit("error: name one exercise (python -m exercises.check rope) or pass --all; "
                         f"exercises: {', '.join(EXERCISES)}")
    if args.name and args.name not in EXERCISES:
        raise SystemExit(f"error: there is no exercise {args.name!r}; choose one of: {', '.join(EXERCISES)}")
    if args.time_limit <= 0:
        raise SystemExit(f"error: --time-limit must be a positive number of seconds, got {args.time_limit:g}")
    if args.seed is not None and args.seed < 0:
        raise SystemExit(f"error: --seed must be 0 or more, got {args.seed}")
    if args.strict:
        if args.solution:
            raise SystemExit("error: --strict grades the students' files; --solution needs exercises/solutions/")
        sys.meta_path.insert(0, NoSolutions())
        for module in [m for m in sys.modules if m.startswith("exercises.solutions")]:
            del sys.modules[module]
    TIME_LIMIT = args.time_limit
    seed = new_seed() if args.seed is None else args.seed
    print(f"seed {seed}: every exercise adds a case drawn from it (--seed {seed} replays this run)"
          + (" — strict" if args.strict else ""), flush=True)
    names = list(EXERCISES) if args.all else [args.name]
    n_correct = 0
    try:
        for name in names:
            passed, message = check_one(name, args.solution, seed)
            print(message, flush=True)
            n_correct += passed
    except KeyboardInterrupt:
        print(f"interrupted: {n_correct} of {len(names)} exercises correct so far", flush=True)
        return 130
    if args.all:
        print(f"{n_correct} of {len(names)} exercises correct")
    return 0 if n_correct == len(names) else 1


if __name__ == "__main__":
    sys.exit(main())
