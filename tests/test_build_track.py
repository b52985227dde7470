"""The build track (exercises/checker/tracks.py): each worked solution passes in the sandbox, three wrong designs
per component each end with a message naming what differs, the handout holds none of the lessons' defining lines
and grades "0 of N" with exit status 1."""
import re
import subprocess
import sys
import types

import pytest

from helpers import REPO_DIR

from exercises.checker import run as check
from exercises.checker import tracks

SOLUTIONS = REPO_DIR / "exercises" / "solutions" / "build"


def variant(component: str, *replacements) -> types.ModuleType:
    """The worked solution with each (old, new) replaced once (old must be there): a wrong design, in-process."""
    source = (SOLUTIONS / f"{component}.py").read_text()
    for old, new in replacements:
        assert source.count(old) == 1, f"{old!r} is not in the worked solution once"
        source = source.replace(old, new)
    module = types.ModuleType(f"wrong_{component}")
    exec(compile(source, f"<wrong {component}>", "exec"), module.__dict__)
    return module


def wrong(component: str, *replacements, seed: int = 11) -> str:
    passed, message = check.run_check(component, variant(component, *replacements), seed=seed)
    assert not passed, message
    return message


@pytest.mark.slow
@pytest.mark.parametrize("name", [c.name for c in tracks.of_track("build")])
def test_worked_solution_passes_in_the_sandbox(name):
    passed, message = check.check_component(tracks.BY_NAME[name], solution=True, seed=5)
    assert passed, message


# --- tokenizer --------------------------------------------------------------------------------------------

def test_tokenizer_tie_to_the_alphabetically_first_pair():
    message = wrong("tokenizer", ("heap = [(-n, vocab[a], vocab[b], (a, b))", "heap = [(-n, a, b, (a, b))"),
                    ("heapq.heappush(heap, (-pairs[pair], vocab[pair[0]], vocab[pair[1]], pair))",
                     "heapq.heappush(heap, (-pairs[pair], pair[0], pair[1], pair))"))
    assert re.search(r"merge \d+: expected .* got .*\n.*hint: +a tie", message), message


def test_tokenizer_encoder_merges_the_leftmost_pair_first():
    message = wrong("tokenizer", ("r, i = min((self.rank.get(p, len(self.rank)), i)",
                                  "i, r = min((i, self.rank.get(p, len(self.rank)))"),
                    ("if r == len(self.rank):\n                    break",
                     "if all(self.rank.get(p) is None for p in zip(parts, parts[1:])):\n                    break\n"
                     "                i = next(i for i, p in enumerate(zip(parts, parts[1:])) if p in self.rank)"))
    assert re.search(r"token \d+: expected id \d+ .* got \d+ — around", message) and "LOWEST rank" in message, message


def test_tokenizer_decode_per_token_loses_bytes():
    message = wrong("tokenizer", ('return b"".join(self.bytes[int(i)] for i in ids)',
                                  'return b"".join(self.bytes[int(i)].decode("utf-8", "replace").encode() for i in ids)'))
    assert "differs from the text at character" in message and "JOINED bytes" in message, message


# --- muon -------------------------------------------------------------------------------------------------

def test_muon_momentum_applied_after_orthogonalisation():
    message = wrong("muon", ("buf.lerp_(p.grad, 1 - mu)                                  # μ·buf + (1−μ)·g\n"
                             "                update = p.grad.lerp(buf, mu) if group[\"nesterov\"] else buf\n"
                             "                O = orthogonalise(update, group[\"ns_coefficients\"], group[\"ns_steps\"], group[\"eps\"])",
                             "O = orthogonalise(p.grad, group[\"ns_coefficients\"], group[\"ns_steps\"], group[\"eps\"])\n"
                             "                buf.lerp_(O.float(), 1 - mu)\n"
                             "                O = p.grad.lerp(buf, mu) if group[\"nesterov\"] else buf"))
    assert "step 0, parameter 0" in message and "momentum_buffer[" in message and "RAW gradients" in message, message


def test_muon_decay_with_the_adjusted_lr():
    message = wrong("muon", ("p.mul_(1 - lr * group[\"weight_decay\"])", "p.mul_(1 - lr * ratio * group[\"weight_decay\"])"))
    assert "step 0, parameter 1 of shape (48, 16)" in message and "parameter after the step[" in message, message
    assert "yours decayed with the shape-adjusted lr" in message, message


@pytest.mark.slow
def test_muon_embedding_on_muon():
    message = wrong("muon", ('hidden_matrix = p.ndim == 2 and "wte" not in name and "lm_head" not in name',
                             "hidden_matrix = p.ndim == 2"))
    assert "transformer.wte.weight is in Muon" in message and "tied embedding" in message, message


# --- model ------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_model_transposed_weight():
    message = wrong("model", ("return self.c_proj(y.transpose(1, 2).reshape(B, T, C))",
                              "return y.transpose(1, 2).reshape(B, T, C) @ self.c_proj.weight"))
    assert "transformer.h.0.attn (attn; everything before it in the block matched)[" in message, message
    assert "nn.Linear computes x @ W.T" in message, message


@pytest.mark.slow
def test_model_kv_cache_position_off_by_one():
    message = wrong("model", ("q = F.layer_norm(self.rotary_emb(q, past)", "q = F.layer_norm(self.rotary_emb(q, max(past - 1, 0))"),
                    ("k = F.layer_norm(self.rotary_emb(k, past)", "k = F.layer_norm(self.rotary_emb(k, max(past - 1, 0))"))
    assert re.search(r"logits of the token at position \d+ \(cached step 1; the steps before matched\)", message), message
    assert "RoPE position is the number of tokens already in the cache" in message, message


def test_model_router_weights_not_renormalised():
    message = wrong("model", ("top_w = top_w / top_w.sum(dim=-1, keepdim=True)", "top_w = top_w"))
    assert "transformer.h.0.moe (moe; everything before it in the block matched)[" in message, message
    assert "renormalised to sum to 1" in message, message


# --- train ------------------------------------------------------------------------------------------------

def test_train_accumulation_sums_the_losses():
    message = wrong("train", ("(loss / len(micro_batches)).backward()", "loss.backward()"))
    assert "3 micro-batches of 2 rows ≡ one batch of 6: step 0" in message and "grad_norm (before clipping)" in message
    assert "yours is 3× one big batch's" in message, message


def test_train_warmup_off_by_one():
    message = wrong("train", ("return (step + 1) / warmup", "return step / warmup"))
    assert re.search(r"lr_multiplier\(step 0, planned_steps 20.*\n.*expected 0\.5, got 0\.0", message), message


@pytest.mark.slow
def test_train_resume_without_the_optimizer_state():
    message = wrong("train", ("        for opt, state in zip(optimizers, saved[\"optimizers\"]):\n"
                              "            opt.load_state_dict(state)\n", ""))
    assert "stopped after 11 steps (as if killed)" in message and "step 9's loss" in message, message
    assert "every optimizer's state" in message, message


# --- hellaswag --------------------------------------------------------------------------------------------

def test_hellaswag_acc_norm_per_word_not_per_character():
    message = wrong("hellaswag", ("per_char = [v / max(len(c), 1) for v, c in zip(s, choices)]",
                                  "per_char = [v / max(len(c.split()), 1) for v, c in zip(s, choices)]"))
    assert re.search(r"example \d+ .*\n.*pred_norm: expected \d, got \d", message) and "in characters" in message, message


def test_hellaswag_without_preprocessing():
    message = wrong("hellaswag", ('text = text.strip().replace(" [title]", ". ")', "return text"))
    assert re.search(r"example \d+ .*\n.*ending \d: summed log-prob expected", message), message
    assert "preprocess(activity_label" in message, message


def test_hellaswag_context_cut_from_the_right():
    message = wrong("hellaswag", ("full = (ctx_ids + cont_ids)[-(window + 1):]", "full = (ctx_ids + cont_ids)[:window + 1]"))
    assert "example 0 " in message and "ending 0: summed log-prob expected" in message and "cut from the left" in message


# --- the handout, the refusals, the points ---------------------------------------------------------------

LESSONS = ["01_tokenizer.py", "02_model.py", "03_muon.py", "05_train.py", "06_eval.py"]


def defining_lines() -> set[str]:
    """Every `def`/`class` line of the lessons the components rebuild, as written (stripped)."""
    lines = set()
    for lesson in LESSONS:
        for line in (REPO_DIR / lesson).read_text().splitlines():
            if re.match(r"\s*(def|class) \w+", line):
                lines.add(line.strip())
    return lines


@pytest.fixture(scope="module")
def handout(tmp_path_factory):
    out = tmp_path_factory.mktemp("handout") / "build"
    result = subprocess.run([sys.executable, "-m", "exercises.handout", str(out), "--track", "build", "--seed", "3"],
                            cwd=REPO_DIR, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.slow
def test_handout_holds_no_defining_line_of_the_lessons_nor_a_solution(handout):
    files = [p for p in handout.rglob("*") if p.is_file()]
    names = {p.relative_to(handout).as_posix() for p in files}
    assert not any(n.startswith(("exercises/solutions", "house/", "fast/", "notebooks/", "tests/")) or
                   re.match(r"0\d_", n) for n in names), sorted(names)
    assert "exercises/checker/build_references.py" not in names
    assert {c.student for c in tracks.of_track("build")} <= names and {c.spec for c in tracks.of_track("build")} <= names
    wanted = defining_lines()
    assert len(wanted) > 200
    for path in files:
        if path.suffix in (".py", ".md", ".txt", ".json"):
            found = wanted & {line.strip() for line in path.read_text(encoding="utf-8").splitlines()}
            assert not found, f"{path.relative_to(handout)} holds {sorted(found)[:3]}"


@pytest.mark.slow
def test_fresh_handout_grades_zero_of_five(handout):
    result = subprocess.run([sys.executable, "-m", "exercises.check", "--track", "build"], cwd=handout,
                            capture_output=True, text=True, timeout=300)
    lines = result.stdout.strip().splitlines()
    assert result.returncode != 0
    assert lines[-1].startswith("0 of 5 components correct — 0 of 100 points"), result.stdout
    assert sum(line.startswith("not done yet:") for line in lines) == 5, result.stdout


@pytest.mark.slow
def test_handout_grades_the_worked_solutions_on_its_stored_cases(handout, tmp_path):
    import shutil
    tree = tmp_path / "tree"
    shutil.copytree(handout, tree)
    for c in tracks.of_track("build"):
        shutil.copy(c.solution(), tree / c.student)
    result = subprocess.run([sys.executable, "-m", "exercises.check", "--track", "build"], cwd=tree,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0 and "5 of 5 components correct — 100 of 100 points" in result.stdout, \
        result.stdout + result.stderr


def test_a_build_file_that_imports_a_lesson_is_refused(tmp_path):
    path = tmp_path / "model.py"
    path.write_text("import importlib\nM = importlib.import_module('02_model')\nbuild = lambda cfg: M.LLM(cfg)\n")
    passed, message = check.run_check("model", path, seed=1)
    assert not passed and message.startswith("refused: model") and "02_model" in message, message
    path.write_text("from exercises.solutions.build.model import build\n")
    passed, message = check.run_check("model", path, seed=1)
    assert not passed and message.startswith("refused: model") and "solutions" in message, message


def test_muon_may_not_hand_the_work_to_torch(tmp_path):
    path = tmp_path / "muon.py"
    path.write_text("import torch\nMuon = lambda *a, **k: torch.optim.Muon(*a, **k)\n"
                    "def build_optimizers(model, **k):\n    return []\n")
    passed, message = check.run_check("muon", path, seed=1)
    assert not passed and "torch.optim.Muon" in message and message.startswith(("refused", "error")), message


def test_course_plan_lists_the_points_of_the_registry():
    course = (REPO_DIR / "docs" / "COURSE.md").read_text()
    for c in tracks.of_track("build"):
        assert re.search(rf"\| `?{c.name}`? \|.*\| {c.points} \| {c.minutes / 60:g} h \|", course), c.name
    assert f"{sum(c.points for c in tracks.of_track('build'))} points" in course
