"""The student's own process, seen from the checker: `Sandbox` loads the student's file there and calls it.

The lessons compute the expected values HERE, in the checker's process. The student's file — a private
copy, in a folder of its own — is loaded in a second process (student.py) in which the numbered lessons,
fast/, exercises/solutions/ and their files are out of reach by any name, and nothing that grades it can
be changed (guarded.py, identity.py). The two processes talk over a pipe (wire.py): tensors, arrays and
plain Python values travel by value, anything else the student returns stays there and is used through a
handle (`Remote`); a function of the checker passed to the student (a model's forward) is a callback. Each
student process is forked by one `Zygote` that has imported torch once.
"""
from __future__ import annotations

import functools
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

from exercises.checker import REPO_DIR
from exercises.checker.report import Crashed, Wrong
from exercises.checker.wire import ATTR, CALLBACK, HANDLE, PICKLED, TimedOut, decode, encode, receive, send

TIME_LIMIT = 60.0           # seconds of the student's code per exercise (--time-limit)


class StudentExit(BaseException):
    """The student's code called exit() / raised SystemExit."""


class ProcessDied(BaseException):
    """The student's process ended by itself (os._exit, a crash)."""


class RefusedAtRun(BaseException):
    """The student's code reached for a lesson, a solution or a forbidden call while it ran."""


class RemoteError(Exception):
    """An exception raised by the student's code in its own process (type name, message, traceback text)."""

    def __init__(self, type_name: str, message: str, trace: str):
        super().__init__(message)
        self.type_name, self.trace = type_name, trace


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

    def __init__(self, name: str, path: Path, time_limit: float = None, guarded: dict | None = None):
        """`path`: the student's private copy, alone in its folder (the process's working folder); `guarded`:
        the identities of what grades it (guarded.py's Guarded.for_child)."""
        self.name, self.path, self.guarded = name, Path(path), guarded   # guarded: a second process (ddp) gets it too
        self.time_limit = TIME_LIMIT if time_limit is None else time_limit
        self.used, self.callbacks, self.pending, self.pid = 0.0, {}, None, None
        to_child, self.to_child = os.pipe()
        self.from_child, from_child = os.pipe()
        self.output = tempfile.TemporaryFile()
        try:
            self.pid = Zygote.get().start({"name": name, "path": str(self.path), "home": str(self.path.parent),
                                           "guarded": guarded or {}},
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

    def make(self, builder, *args):
        """Run the checker's own `builder(*args)` (e.g. tiny_training_setup) in the student's process and
        keep what it returns there: the objects the student's code works on in place. An argument `ex.NAME`
        arrives there as the student's own NAME (a builder that drives the student's class: the build track);
        what the student's code raises in it comes back as a RemoteError, with the student's frames."""
        return self.request(("make", builder.__module__, builder.__name__), args, {})

    def encode_arg(self, value):
        if isinstance(value, Remote):
            return {HANDLE: value._handle}
        if isinstance(value, RemoteFunction) and value.target[0] == "module":   # ex.Muon handed to a builder
            return {ATTR: value.target[1]}
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
            deadline = time.monotonic() + 5       # the verdict comes after the process has ended
            while time.monotonic() < deadline:
                try:
                    os.kill(self.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.005)
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
    (starting Python and torch for each would cost a second or more apiece). It holds no lesson: the checks
    import the lessons only inside their functions, which run in the checker's process."""

    running: "Zygote | None" = None

    def __init__(self):
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        path = os.pathsep.join([str(REPO_DIR)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
        env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
               "PYTHONDONTWRITEBYTECODE": "1"}             # it writes nothing into the guarded folders
        self.proc = subprocess.Popen([sys.executable, "-c", "from exercises.checker.student import zygote_main; "
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


def make(ex, builder, *args):
    """builder(*args), built where the student's code runs (its process, or here in tests)."""
    return ex.make(builder, *args) if isinstance(ex, Sandbox) else builder(*args)
