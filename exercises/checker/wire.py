"""How the checker and the student's process talk: values by value over a pipe, the rest by handle.

Tensors, arrays and plain Python values are encoded as plain data (`encode` / `decode`); what the student's
process sends is unpickled without importing or calling anything (`SafeUnpickler`). Anything else stays
where it was made and travels as a marker (a handle, a callback) that the other side resolves.
"""
from __future__ import annotations

import io
import os
import pickle
import select
import time

import numpy as np
import torch


class TimedOut(BaseException):
    """The student's code ran past the time limit."""


TENSOR, ARRAY, NPSCALAR, DICT, SET, DTYPE, HANDLE, CALLBACK, PICKLED, GENERATOR, ATTR = (
    "\0tensor", "\0array", "\0npscalar", "\0dict", "\0set", "\0dtype", "\0handle", "\0callback", "\0pickled",
    "\0generator", "\0attr")     # ATTR: a name of the student's module (its class, its function), resolved there


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
        while deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimedOut()
            if select.select([fd], [], [], min(left, 3600.0))[0]:   # select takes no timeout of 1e300 s
                break
        chunk = os.read(fd, min(need, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        need -= len(chunk)
        if header and not need:
            need, header, chunks = int.from_bytes(b"".join(chunks), "little"), False, []
    data = b"".join(chunks)
    return SafeUnpickler(io.BytesIO(data)).load() if safe else pickle.loads(data)
