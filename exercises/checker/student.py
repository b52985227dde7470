"""Inside the student's process: the zygote that forks it, the guards, then a loop that runs what the
checker asks.

The process starts in a session of its own (no terminal to write to) and in a folder of its own, which
holds only its copy of the student's file. The guards: an import blocker on sys.meta_path, plus an audit
hook (sys.addaudithook, which cannot be removed) that refuses `import`, `open`, `compile` and `exec` of the
lessons, their fast twins (fast/) and the solutions, and starting other processes; it judges every file
opened, linked, moved, removed or changed by its identity (identity.py): the answers may not be read by any
name, and nothing that grades the student (guarded.py) may be changed, nor the checker's own output written.
The library call an exercise is about (SDPA for gqa_attention, ...) is replaced by a function that refuses.
Any refusal is final, even if the student's code catches the exception.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import json
import os
import pickle
import signal
import socket
import sys
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

from exercises.checker import REPO_DIR
from exercises.checker.identity import make_judge
from exercises.checker.rules import (BLOCKED_MODULES, CASES_DIR, ENVIRONMENT, FAST_DIR, INPUT_LESSONS, LESSON_NAME,
                                     REFUSAL, RUNTIME_FORBIDDEN, RUNTIME_FORBIDDEN_ATTRS, SOLUTIONS_DIR)
from exercises.checker.wire import ATTR, HANDLE, PICKLED, decode, encode, receive, send

CHECKER_FILES = os.path.dirname(__file__) + os.sep   # the checker's frames are left out of the student's traceback
VIOLATIONS: list[str] = []
REPORT_FD: int | None = None     # the pipe to the checker, in the student's process
STUDENT_FILES: set[str] = set()   # the file being checked (and its .pyc): the one solution it may read (--solution)


def zygote_main(fd: int) -> None:
    """The zygote: torch is imported (with this module); each request forks one student process."""
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
                os.setsid()                                # no controlling terminal: /dev/tty is not there
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


def protected(path, allowed: tuple = ()) -> bool:
    """A numbered lesson's file (any extension, anywhere in the repo: .py, .pyc, .ipynb), exercises/solutions/,
    a handout's stored cases, or fast/ unless the exercise's inputs use it (`allowed`)."""
    try:
        real = os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
        return False
    if real in STUDENT_FILES:
        return False
    fast = FAST_DIR.name not in allowed and real.startswith(str(FAST_DIR) + os.sep)
    cases = real.startswith(str(CASES_DIR) + os.sep)
    return real.startswith(str(SOLUTIONS_DIR)) or fast or cases or (real.startswith(str(REPO_DIR)) and
                                                             bool(LESSON_NAME.match(os.path.basename(real))))


def forbidden_module(name: str, blocked: tuple, allowed: tuple) -> bool:
    top = name.split(".")[0]
    return (((LESSON_NAME.match(top) is not None or top == FAST_DIR.name) and top not in allowed) or top in blocked
            or name.startswith("exercises.solutions"))


def refuse(message: str):
    """Refuse, and tell the checker at once: clearing VIOLATIONS afterwards does not take it back."""
    VIOLATIONS.append(message)
    if REPORT_FD is not None:
        send(REPORT_FD, ("violation", message))
    raise PermissionError(f"refused by the checker: {message}")


def install_guards(name: str, guarded: dict) -> None:
    """The import blocker, the audit hook and the runtime refusals of one exercise (in the student's process).
    The hook holds the judge (identity.py), which binds all it uses: rebinding names later does not blind it."""
    allowed, blocked = INPUT_LESSONS.get(name, ()), BLOCKED_MODULES.get(name, ())
    say, judge, is_protected, is_forbidden = refuse, make_judge(guarded), protected, forbidden_module

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            if is_forbidden(fullname, blocked, allowed):
                say(f"your code imports {fullname}: " + (REFUSAL if fullname not in blocked else
                                                         f"{name} is to be written without {fullname}"))
            return None

    sys.meta_path.insert(0, Blocker())
    for module in list(sys.modules):
        if forbidden_module(module, blocked, allowed):
            del sys.modules[module]
    processes = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                 "os.forkpty", "pty.spawn")
    own = os.getpid()                      # its own process group too (a session of its own, zygote_main)

    def hook(event, args):
        if event == "import" and is_forbidden(str(args[0]), blocked, allowed):
            say(f"your code imports {args[0]}: " + REFUSAL)
        elif event == "open" and not isinstance(args[0], int) and is_protected(args[0], allowed):
            say(f"your code opens {args[0]}: " + REFUSAL)
        elif event == "exec" and is_protected(getattr(args[0], "co_filename", ""), allowed):
            say(f"your code runs the code of {args[0].co_filename}: " + REFUSAL)
        elif event == "compile" and args[1] is not None and is_protected(args[1], allowed):
            say(f"your code compiles {args[1]}: " + REFUSAL)
        elif event in processes:
            say(f"your code starts another process ({event}): a check runs your code in one guarded process")
        elif event in ("os.kill", "os.killpg") and args[0] not in (own, 0):
            say(f"your code sends a signal to another process ({event}({args[0]}, ...)): a check runs your code "
                "in one guarded process")
        else:
            why = judge(event, args)          # the same file by any other name, and changes to what grades
            if why:
                say(why)

    sys.addaudithook(hook)
    forbid_calls(name)


def forbid_calls(name: str) -> None:
    """Replace the library functions this exercise is about by ones that refuse (and remember the refusal)."""
    if name in RUNTIME_FORBIDDEN_ATTRS:
        attrs, why = RUNTIME_FORBIDDEN_ATTRS[name]
        say = refuse
        for module_name, attr in attrs:
            def refused(*args, where=f"{module_name}.{attr}", **kwargs):
                say(f"your code uses {where}: {why}")
            setattr(importlib.import_module(module_name), attr, refused)
    if name not in RUNTIME_FORBIDDEN:
        return
    fragments, what = RUNTIME_FORBIDDEN[name]
    say = refuse
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
            say(f"your code calls {attr}: this exercise is to {what}")
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
    os.environ.update(ENVIRONMENT.get(name, {}))         # before the file loads (rope_triton: TRITON_INTERPRET)
    os.chdir(spec["home"])                               # a folder of its own, holding only its copy of the file
    install_guards(name, spec["guarded"])
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
        if marker == ATTR:
            return getattr(module, data)
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
            trace = [line for line in trace if CHECKER_FILES not in line]
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
            builder = getattr(importlib.import_module(target[1]), target[2])
            send(wfd, run(lambda: builder(*args)))   # a builder may run the student's code (the build track)
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
