"""What the student's code may not do, per exercise, and the first line of defence: reading its source.

A check compares the student's function with a numbered lesson, so code that imports the lesson
(importlib.import_module("02_model"), __import__, runpy, reading 02_model.py by path) or the worked
solution would compare the lesson with itself and "pass". `pass_through` reads the student's source with
`ast` and refuses such a file before running anything; it looks at code, not at docstrings or comments
(which may name the lesson freely). Some exercises also refuse the one library call that would do the
whole exercise. The guards of student.py enforce the same rules on what the code does when it runs.
"""
from __future__ import annotations

import ast
import inspect
import re
import textwrap
from pathlib import Path

from exercises.checker import REPO_DIR

SOLUTIONS_DIR = REPO_DIR / "exercises" / "solutions"
FAST_DIR = REPO_DIR / "fast"   # the lessons' fast twins, out of reach like them (fp8_quantize is checked with fast.fp8)
CASES_DIR = REPO_DIR / "exercises" / "checker" / "cases"   # a handout's stored cases (exercises/handout.py): answers
LESSON_NAME = re.compile(r"0[1-6]_(tokenizer|model|muon|data|train|eval)")   # a numbered lesson's name
REFUSAL = ("the check compares your code with the lesson, so handing the work to the lesson (or to the worked "
           "solution) would compare it with itself")
CHANGE_REFUSAL = ("the lessons, the worked solutions, fast/, house/ and the checker decide the verdict, so your code "
                  "may not change them (nor add to or remove from their folders)")

# per exercise: lessons the student's process may hold because their objects are the exercise's INPUTS
# (train_step is handed 02's LLM and 03's optimizers, which use fast/; the answer, 05_train, stays out of reach)
INPUT_LESSONS = {"train_step": ("01_tokenizer", "02_model", "03_muon", "fast"),
                 "ddp": ("01_tokenizer", "02_model", "fast")}      # ddp wraps 02's LLM (systems track)
# per exercise: environment variables set in the student's process before its file loads (Triton reads
# TRITON_INTERPRET when a kernel is decorated: rope_triton runs on a CPU through Triton's interpreter)
ENVIRONMENT = {"rope_triton": {"TRITON_INTERPRET": "1"}}
# per exercise: modules the student's process may not import at all
BLOCKED_MODULES = {"bpe_trainer": ("tokenizers",), "tokenizer": ("tokenizers",)}
# per exercise: (module, attribute) replaced by a refusal in the student's process (the build track's Muon is
# compared with torch.optim.Muon, so it may not hand the work to it)
RUNTIME_FORBIDDEN_ATTRS = {
    "muon": ((("torch.optim", "Muon"), ("torch.optim._muon", "Muon"), ("torch.optim._muon", "muon"),
              ("torch.optim._muon", "_zeropower_via_newtonschulz"), ("torch.optim._muon", "_single_tensor_muon")),
             "write Muon yourself: torch.optim.Muon is what the check compares it with"),
}
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
# per exercise: the library call that would do the whole exercise, refused where the code names it
FORBIDDEN_CALLS = {
    "gqa_attention": {"scaled_dot_product_attention": "write the scores, the causal mask and the softmax yourself",
                      "MultiheadAttention": "write the attention yourself"},
    "train_step": {"clip_grad_norm_": "compute the global gradient norm and scale the gradients yourself",
                   "clip_grad_norm": "compute the global gradient norm and scale the gradients yourself"},
    "moe_forward": {"grouped_mm": "loop over the experts (the reference path)"},
    "rms_cross_entropy": {name: "write RMSNorm and the log-sum-exp yourself" for name in (
        "rms_norm", "logsumexp", "log_softmax", "cross_entropy", "nll_loss", "RMSNorm", "CrossEntropyLoss",
        "NLLLoss", "LogSoftmax")},
    "ddp": {"DistributedDataParallel": "write the buckets, the hooks and the all-reduces yourself"},
    "rope_triton": {name: "compute RoPE and the norm inside your Triton kernel" for name in (
        "layer_norm", "rms_norm", "LayerNorm", "RMSNorm")},
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
                        return f"{line} imports {mod}: " + REFUSAL
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
                found = LESSON_NAME.search(node.value) or ("solutions" in node.value and "exercises" in node.value)
                if found:
                    return (f"{line} names {node.value!r} in code: importing or reading the numbered lesson (or the "
                            "worked solution) would compare the lesson with itself — write the computation yourself")
            called = (node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None)
            if called in forbidden:
                return f"{line} uses {called}: this exercise is to {forbidden[called]}"
    return None
