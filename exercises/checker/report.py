"""How a check reports: Wrong (a value differs), Crashed (your code raised), the comparisons that raise
them (compare_tensors, check_shape, check_returns), and this run's seed, from which every check draws a
fresh case.
"""
from __future__ import annotations

import itertools
import zlib

import torch

# --- This run's seed (--seed replays a run) ---------------------------------------------------------------

RUN_SEED: int | None = None  # this run's fresh seed: every check adds a case drawn from it (--seed replays it)


def new_seed() -> int:
    import secrets
    return secrets.randbelow(1_000_000)


def use_seed(seed: int | None) -> None:
    """This run's seed: `seed`, else the one in use, else a new one."""
    global RUN_SEED
    RUN_SEED = seed if seed is not None else RUN_SEED if RUN_SEED is not None else new_seed()


def run_seed() -> int | None:
    return RUN_SEED


def fresh_seed(tag: str) -> int:
    """A seed for one exercise's fresh case: this run's seed mixed with the exercise's name."""
    return (RUN_SEED * 1_000_003 + zlib.crc32(tag.encode())) % 2**31


# --- How a check reports: Wrong (a value differs), Crashed (your code raised) ------------------------------

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
