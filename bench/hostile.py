"""Issues 24 and 32: the hostile-user table, re-run: 87 things a user can do wrong, each tried for real.

Every case runs the real scripts as a user runs them (`python 05_train.py ...` in a subprocess, from the repo
root), each in its own temporary folder: LINNET_OUT points there and every --out is explicit, so nothing
touches the repo's out/. One tiny tokenizer, its shards, two tiny 05 runs and an export are made once at
the start (a few seconds each) and copied into the cases that need them.

Each case says what "held" means, and the script computes the verdict:
  held                 the case ended as the house rules want (a refusal: exit != 0, one stderr line
                       "error: ..." naming the fix, no Traceback; or the right result);
  data lost            an earlier artefact changed (sha256 of every file, before and after);
  silent wrong result  a run that should have been refused finished with exit 0 (or a wrong number);
  misleading           refused, but not in one clean line that names the fix (or a wrong notice);
  traceback            a Python traceback on stderr;
  hang                 still running at the per-case timeout (killed);
  not run here: why    needs what this machine has not (a GPU, the whole test suite, the network).

    python bench/hostile.py                    # all 87 cases (≈ 15 min on 2 CPU cores), writes the table
    python bench/hostile.py --only 1,5,33      # a few cases (prints, writes nothing unless --table)
    python bench/hostile.py --list             # the cases' numbers and names
Writes bench/results/hostile_table.md: the table (# | case | exit | first line of message | verdict), the
counts, and for every case that did not hold its command (temp root shown as $T) and why.
Full disk and read-only --out are real: a small or read-only tmpfs mounted in a private mount namespace
(`unshare -rm`), which needs Linux user namespaces.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO_DIR = Path(__file__).resolve().parents[1]
TABLE = REPO_DIR / "bench/results/hostile_table.md"
HELLASWAG = REPO_DIR / "embedded" / "hellaswag" / "hellaswag_val.jsonl.zst"
PY = sys.executable
MEMORY_LIMIT = 12 << 30     # address space per case: a runaway job fails instead of starving the machine

HELD, LOST, WRONG, MISLEADING, TRACEBACK, HANG = ("held", "data lost", "silent wrong result", "misleading",
                                                  "traceback", "hang")
VERDICTS = (HELD, LOST, WRONG, MISLEADING, TRACEBACK, HANG)


# --- running a script as a user does -------------------------------------------------------------------------

@dataclasses.dataclass
class Proc:
    """One finished command: what ran, its exit status, its output, and whether it was killed at the timeout."""
    cmd: list[str]
    rc: int | None
    out: str
    err: str
    timed_out: bool = False
    seconds: float = 0.0
    why: str = ""                     # set by refusal(): why a refusal did not count as held

    @property
    def text(self) -> str:
        return self.out + "\n" + self.err


def _limit_memory():
    """In each case's process: a memory limit, and the signals a program started from a terminal gets (a harness
    run under nohup or in the background would pass on an ignored SIGHUP or SIGINT)."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def script_cmd(script: str, *args) -> list[str]:
    return [PY, str(REPO_DIR / script), *map(str, args)]


def start(cmd: list[str], env: dict, cwd: Path = REPO_DIR, log_dir: Path | None = None) -> subprocess.Popen:
    """Start `cmd` in its own session (so a timeout or a Ctrl-C reaches its whole process group)."""
    kw = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if log_dir is not None:          # long-running: output to files, read back by finish()
        log_dir.mkdir(parents=True, exist_ok=True)
        kw = dict(stdout=open(log_dir / "stdout", "w"), stderr=open(log_dir / "stderr", "w"))
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, text=True, start_new_session=True, preexec_fn=_limit_memory,
                            stdin=subprocess.DEVNULL, **kw)
    proc.cmd, proc.t0, proc.log_dir = cmd, time.time(), log_dir
    proc.files = [kw["stdout"], kw["stderr"]] if log_dir is not None else []
    return proc


def finish(proc: subprocess.Popen, timeout: float) -> Proc:
    """Wait for `proc` (at most `timeout` s from its start; then kill its group: a hang) and collect it."""
    timed_out = False
    try:
        out, err = proc.communicate(timeout=max(1.0, timeout - (time.time() - proc.t0)))
    except subprocess.TimeoutExpired:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    if proc.log_dir is not None:
        for f in proc.files:
            f.close()
        out, err = ((proc.log_dir / n).read_text(errors="replace") for n in ("stdout", "stderr"))
    return Proc(proc.cmd, None if timed_out else proc.returncode, out or "", err or "", timed_out,
                time.time() - proc.t0)


def signal_group(proc: subprocess.Popen, sig: int) -> None:
    """What a terminal's Ctrl-C (SIGINT) or a scheduler (SIGTERM) does: signal the job's process group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def wait_for(predicate: Callable[[], bool], proc: subprocess.Popen | None, seconds: float, poll: float = 0.02) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            return predicate()
        time.sleep(poll)
    return False


def in_mount_namespace(mounts: str, cmd: list[str], after: str = "") -> list[str]:
    """`cmd` in a private mount namespace (unshare -rm) after the shell commands `mounts`; `after` runs once it
    exited (e.g. copying the tmpfs out to look at it), and the exit status stays `cmd`'s."""
    script = f"set -e; {mounts}; set +e; \"$@\"; rc=$?; {after or ':'}; exit $rc"
    return ["unshare", "-rm", "sh", "-c", script, "sh", *cmd]


# --- reading what a run said ----------------------------------------------------------------------------------

_PROGRESS = re.compile(r"\d+%\||\d+/\d+ \[|it/s|s/it|step/s|doc/s")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def lines_of(text: str) -> list[str]:
    """Non-empty lines, progress-bar redraws (\\r) split apart and dropped."""
    return [l.strip() for l in re.split(r"[\r\n]", text) if l.strip() and not _PROGRESS.search(l)]


def one_line(p: Proc) -> str | None:
    """The refusal line the house rules want: exit != 0, no Traceback, exactly one stderr line (progress bars
    aside) that starts with "error:" and holds no raw terminal codes. None if it is not that."""
    err = lines_of(p.err)
    if p.rc in (0, None) or "Traceback" in p.err or len(err) != 1:
        return None
    return err[0] if err[0].startswith("error:") and "\x1b" not in err[0] else None


def first_line(p: Proc, pattern: str | None = None) -> str:
    """The first line of the message: the first stderr line; without one, the first stdout line matching
    `pattern` (or the last stdout line)."""
    err = lines_of(p.err)
    if p.timed_out:
        return f"(still running after {p.seconds:.0f} s: killed)"
    if err and (p.rc != 0 or pattern is None):
        tb = [l for l in err if not l.startswith(("Traceback", "File ", "^", "~"))]
        return (err[0] if "Traceback" not in p.err else (tb[-1] if tb else err[-1]))
    out = lines_of(p.out)
    if pattern is not None:
        hits = [l for l in out if re.search(pattern, l)]
        if hits:
            return hits[0]
    return out[-1] if out else (err[0] if err else "(no output)")


def refusal(p: Proc, *needles: str, accepted: str = MISLEADING, changed: bool = False) -> str:
    """Verdict of a case that should be refused: held when `p` refused in one line holding every needle and
    naming only flags its script has."""
    if p.timed_out:
        return HANG
    if changed:
        return LOST
    if "Traceback" in p.err:
        return TRACEBACK
    if p.rc == 0:
        return accepted
    line = one_line(p)
    if line is None:
        p.why = f"not one 'error:' line: {len(lines_of(p.err))} stderr lines"
        return MISLEADING
    missing = [n for n in needles if n.lower() not in line.lower()]
    foreign = flags_it_lacks(p, line)
    p.why = "; ".join(filter(None, [f"does not name {missing}" if missing else "",
                                    f"names {foreign}, which its script does not have" if foreign else ""]))
    return MISLEADING if missing or foreign else HELD


def flags_it_lacks(p: Proc, line: str) -> list[str]:
    """Flags a refusal line tells the user to pass that the script it came from does not have (flags after a
    "python OTHER.py" in the line belong to that command and are not checked)."""
    script = next((Path(a) for a in p.cmd if a.endswith(".py") and Path(a).is_file()), None)
    if script is None or script.name == "pytest":
        return []
    source = script.read_text()
    if "add_common_args" in source:                    # --preset and --out come from house/cli.py
        source += (REPO_DIR / "house" / "cli.py").read_text()
    own = re.split(r"python \S+\.py", line)[0]
    flags = re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", own)
    known = lambda f: re.search(rf"[\"']{re.escape(f)}[\"'=]", source) or (
        f.startswith("--no-") and re.search(rf"[\"']--{re.escape(f[5:])}[\"']", source))
    return sorted({f for f in flags if f != "--help" and not known(f)})


def worse(*verdicts: str) -> str:
    """The worst of several verdicts (a case of several runs holds only when every run holds)."""
    order = [HANG, LOST, WRONG, TRACEBACK, MISLEADING, HELD]
    return min(verdicts, key=order.index)


# --- files ----------------------------------------------------------------------------------------------------

def sha_tree(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path."""
    folder = Path(folder)
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def nothing_in(folder: Path) -> bool:
    return not folder.exists() or not any(folder.iterdir())


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in Path(folder).rglob("*") if ".tmp" in p.name) if Path(folder).exists() else []


def copy(src: Path, dst: Path) -> Path:
    if src.is_dir():
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".lock"))
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    return dst


def torch_load(path: Path):
    import torch
    return torch.load(path, map_location="cpu", weights_only=True)


def step_of(path: Path) -> int | None:
    try:
        return int(torch_load(path)["step"])
    except Exception:
        return None


def log_steps(path: Path) -> list[dict]:
    """The step records of a 05 log.jsonl (evaluation records and torn lines left out)."""
    records = []
    for line in Path(path).read_text().splitlines() if Path(path).exists() else []:
        with contextlib.suppress(ValueError):
            r = json.loads(line)
            if isinstance(r, dict) and r.get("kind") != "eval" and "step" in r:
                records.append(r)
    return records


def hellaswag_rows(n: int) -> list[dict]:
    import zstandard
    rows = []
    with HELLASWAG.open("rb") as raw:
        text = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(raw), encoding="utf-8")
        for line in text:
            rows.append(json.loads(line))
            if len(rows) == n:
                break
    return rows


def bpb_of(p: Proc) -> float | None:
    m = re.search(r"bits per byte: ([0-9.]+)", p.out)
    return float(m.group(1)) if m else None


# --- the context a case runs in -------------------------------------------------------------------------------

class Ctx:
    """Temp folders, the environment, and the shared inputs (made lazily, once)."""

    def __init__(self, root: Path, timeout: float = 120.0, quiet: bool = False):
        self.root, self.timeout, self.quiet = Path(root), timeout, quiet
        self.dir: Path = self.root
        self.procs: list[Proc] = []
        self._shared: dict[str, Path] = {}
        self.setup_log: list[Proc] = []

    def new_case(self, number: int) -> Path:
        self.dir = self.root / f"case{number:02d}"
        self.dir.mkdir(parents=True)
        (self.dir / "linnet_out").mkdir()
        self.procs = []
        return self.dir

    def env(self, **extra) -> dict:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg",
               "LINNET_OUT": str(self.dir / "linnet_out")}
        env.pop("PYTHONPATH", None)
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def run(self, script: str, *args, cwd: Path = REPO_DIR, env: dict | None = None, timeout: float | None = None,
            cmd: list[str] | None = None) -> Proc:
        p = finish(start(cmd or script_cmd(script, *args), env or self.env(), cwd), timeout or self.timeout)
        self.procs.append(p)
        return p

    def start(self, script: str, *args, env: dict | None = None, name: str = "bg") -> subprocess.Popen:
        return start(script_cmd(script, *args), env or self.env(), REPO_DIR, log_dir=self.dir / f".{name}")

    def finish(self, proc: subprocess.Popen, timeout: float | None = None) -> Proc:
        p = finish(proc, timeout or self.timeout)
        self.procs.append(p)
        return p

    def path(self, name: str) -> Path:
        return self.dir / name

    # shared inputs, made on first use, as a user makes them
    def shared(self, name: str) -> Path:
        if name not in self._shared:
            self._shared[name] = getattr(self, f"_make_{name}")()
        return self._shared[name]

    def _setup(self, script: str, *args) -> None:
        t0 = time.time()
        p = finish(start(script_cmd(script, *args), {**self.env(), "LINNET_OUT": str(self.root / "setup_out")}),
                   300)
        self.setup_log.append(p)
        if not self.quiet:
            print(f"  setup: {shlex.join([Path(p.cmd[1]).name, *p.cmd[2:]])}".replace(str(self.root), "$T")
                  + f"  ({time.time() - t0:.0f} s, exit {p.rc})", flush=True)
        if p.rc != 0:
            raise SystemExit(f"error: setup failed: {shlex.join(p.cmd)}\n{p.err[-2000:]}")

    def _make_tok(self) -> Path:
        out = self.root / "shared" / "tok"
        self._setup("01_tokenizer.py", "--preset", "tiny", "--out", out)
        return out / "tokenizer.json"

    def _make_tok512(self) -> Path:      # another tokenizer: "retrained 01", or the default that differs
        out = self.root / "shared" / "tok512"
        self._setup("01_tokenizer.py", "--preset", "tiny", "--vocab-size", "512", "--out", out)
        return out / "tokenizer.json"

    def _make_data(self) -> Path:
        out = self.root / "shared" / "data"
        self._setup("04_data.py", "--preset", "tiny", "--tokenizer", self.shared("tok"), "--out", out)
        return out

    def train_args(self, out: Path, *more, data: Path | None = None, tok: Path | None = None) -> list:
        return ["--preset", "tiny", "--tokenizer", tok or self.shared("tok"), "--data-dir", data or self.shared("data"),
                "--out", out, "--no-hellaswag", "--eval-every", "1000", *more]

    def _make_half(self) -> Path:        # 20 of 60 planned steps: a run to resume
        out = self.root / "shared" / "half"
        self._setup("05_train.py", *self.train_args(out, "--max-steps", "20", "--planned-steps", "60",
                                                   "--checkpoint-every", "20"))
        return out

    def _make_full(self) -> Path:        # all 60: a finished run, and the reference of an exact resume
        out = self.root / "shared" / "full"
        self._setup("05_train.py", *self.train_args(out, "--max-steps", "60", "--planned-steps", "60",
                                                   "--checkpoint-every", "20"))
        return out

    def _make_export(self) -> Path:
        out = self.root / "shared" / "export"
        self._setup("02_model.py", "--export", self.shared("full") / "latest.pt", "--tokenizer", self.shared("tok"),
                    "--out", out)
        return out

    def _make_export_bpb(self) -> Path:  # 06 on the export with its own tokenizer named: the right number
        out = self.root / "shared" / "export_eval"
        self._setup("06_eval.py", *self.eval_args(self.shared("export"), out,
                                                  "--tokenizer", self.shared("export") / "tokenizer.json"))
        m = re.search(r"bits per byte: ([0-9.]+)", self.setup_log[-1].out)
        (out / "bpb.txt").write_text(m.group(1) if m else "")
        return out / "bpb.txt"

    def eval_args(self, checkpoint: Path, out: Path, *more) -> list:
        return ["--preset", "tiny", "--checkpoint", checkpoint, "--data-dir", self.shared("data"), "--no-hellaswag",
                "--bpb-batches", "4", "--out", out, *more]


# --- the cases ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Case:
    number: int
    name: str
    group: str
    fn: Callable


@dataclasses.dataclass
class Outcome:
    verdict: str
    proc: Proc | None = None          # the run the table shows (default: the case's last run)
    message: str | None = None        # the line the table shows (default: first_line(proc))
    why: str = ""                     # for a case that did not hold: what went wrong
    show: str | None = None           # pattern of the stdout line to show when the run succeeded


CASES: list[Case] = []
GROUPS = {"data": "data lost", "wrong": "wrong result in silence", "msg": "misleading or traceback",
          "new": "README order and new users", "held": "held last round",
          "r3": "issue 32: a terminal gone, advice followed, silence"}


def case(name: str, group: str):
    def register(fn):
        CASES.append(Case(len(CASES) + 1, name, group, fn))
        return fn
    return register


def not_run(why: str) -> Outcome:
    return Outcome(f"not run here: {why}")


# === Data lost ==============================================================================================

@case("05 rerun on a finished --out, no --resume", "data")
def _(c: Ctx):
    out = copy(c.shared("full"), c.path("run"))
    before = sha_tree(out)
    p = c.run("05_train.py", *c.train_args(out, "--max-steps", "3"))
    return Outcome(refusal(p, "--resume", "--overwrite", accepted=LOST, changed=sha_tree(out) != before))


@case("05 tiny into the default out/05_train holding a run", "data")
def _(c: Ctx):
    home = c.path("linnet_out")                    # LINNET_OUT: where out/ would be
    copy(c.shared("full"), home / "05_train")
    copy(c.shared("tok").parent, home / "01_tokenizer")
    copy(c.shared("data"), home / "04_data")
    before = sha_tree(home / "05_train")
    p = c.run("05_train.py", "--preset", "tiny", "--max-steps", "3", "--no-hellaswag")
    return Outcome(refusal(p, "--resume", accepted=LOST, changed=sha_tree(home / "05_train") != before))


@case("04 over shards made with other settings (--seed 1)", "data")
def _(c: Ctx):
    out = copy(c.shared("data"), c.path("data"))
    before = sha_tree(out)
    p = c.run("04_data.py", "--preset", "tiny", "--tokenizer", c.shared("tok"), "--seed", "1", "--out", out)
    return Outcome(refusal(p, "--overwrite", accepted=LOST, changed=sha_tree(out) != before))


@case("two 05 runs on one --out at once", "data")
def _(c: Ctx):
    out = c.path("run")
    first = c.start("05_train.py", *c.train_args(out, "--max-steps", "100", "--planned-steps", "100"), name="first")
    if not wait_for(lambda: len(log_steps(out / "log.jsonl")) >= 2, first, 90):
        a = c.finish(first)
        return Outcome(MISLEADING, a, why="the first run never started training")
    second = c.run("05_train.py", *c.train_args(out, "--max-steps", "100", "--planned-steps", "100", "--overwrite"))
    a = c.finish(first)
    steps = [r["step"] for r in log_steps(out / "log.jsonl")]
    if second.timed_out or a.timed_out:
        return Outcome(HANG, second)
    if a.rc != 0 or steps != list(range(100)) or step_of(out / "latest.pt") != 100:
        return Outcome(LOST, second, why=f"the first run: exit {a.rc}, log steps {steps[:3]}…({len(steps)}), "
                                          f"latest.pt step {step_of(out / 'latest.pt')}")
    return Outcome(refusal(second, "pid", accepted=LOST), second)


def interrupted_run(c: Ctx, sig: int, out: Path, *more, twice: float | None = None,
                    max_steps: int = 300) -> tuple[Proc, list[dict]]:
    """05 started, `sig` sent to its process group once 3 steps are logged (and again after `twice` s)."""
    proc = c.start("05_train.py", *c.train_args(out, "--max-steps", max_steps, *more), name="run")
    wait_for(lambda: len(log_steps(out / "log.jsonl")) >= 3, proc, 90)
    signal_group(proc, sig)
    if twice is not None:
        time.sleep(twice)
        signal_group(proc, sig)
    p = c.finish(proc)
    return p, log_steps(out / "log.jsonl")


def judge_interrupt(p: Proc, out: Path, steps: list[dict], expect_rc: int) -> Outcome:
    show = r"interrupted"
    if p.timed_out:
        return Outcome(HANG, p)
    if "Traceback" in p.err:
        return Outcome(TRACEBACK, p)
    saved = step_of(out / "latest.pt")
    if saved is None or saved < len(steps) or temp_files(out):
        return Outcome(LOST, p, show=show, why=f"latest.pt step {saved} after {len(steps)} logged steps, "
                                               f"temp files {temp_files(out)}")
    if p.rc != expect_rc or "interrupted" not in p.text:
        return Outcome(MISLEADING, p, show=show, why=f"exit {p.rc} (want {expect_rc}, a status that says interrupted)")
    return Outcome(HELD, p, show=show)


@case("SIGTERM mid-run (preemption), checkpoint_every 500", "data")
def _(c: Ctx):
    out = c.path("run")
    p, steps = interrupted_run(c, signal.SIGTERM, out, "--checkpoint-every", "500")
    return judge_interrupt(p, out, steps, 128 + signal.SIGTERM)


@case("two quick Ctrl-Cs mid-run", "data")
def _(c: Ctx):
    out = c.path("run")
    p, steps = interrupted_run(c, signal.SIGINT, out, "--checkpoint-every", "1", twice=0.05)
    if p.timed_out:
        return Outcome(HANG, p)
    if "Traceback" in p.err:
        return Outcome(TRACEBACK, p)
    whole = step_of(out / "latest.pt") is not None if (out / "latest.pt").exists() else True
    if temp_files(out) or not whole:
        return Outcome(LOST, p, why=f"temp files {temp_files(out)}, latest.pt readable: {whole}")
    ok = p.rc not in (0, None) and "interrupted" in p.text
    return Outcome(HELD if ok else MISLEADING, p, show="interrupted", why="" if ok else f"exit {p.rc}")


@case("02 --export into a folder with an older pytorch_model.bin", "data")
def _(c: Ctx):
    out = c.path("published")
    out.mkdir()
    (out / "pytorch_model.bin").write_bytes(b"older weights that every loader would prefer")
    (out / "config.json").write_text('{"depth": 12}')
    before = sha_tree(out)
    p = c.run("02_model.py", "--export", c.shared("full") / "latest.pt", "--tokenizer", c.shared("tok"), "--out", out)
    return Outcome(refusal(p, "pytorch_model.bin", accepted=LOST, changed=sha_tree(out) != before))


@case("02 --export over a user's config.json", "data")
def _(c: Ctx):
    out = c.path("published")
    out.mkdir()
    (out / "config.json").write_text('{"note": "my own config, not an export"}')
    before = sha_tree(out)
    p = c.run("02_model.py", "--export", c.shared("full") / "latest.pt", "--tokenizer", c.shared("tok"), "--out", out)
    return Outcome(refusal(p, "config.json", accepted=LOST, changed=sha_tree(out) != before))


@case("05 --wandb without the wandb package", "data")
def _(c: Ctx):
    import importlib.util
    if importlib.util.find_spec("wandb") is not None:
        return not_run("wandb is installed")
    out = copy(c.shared("full"), c.path("run"))
    before = sha_tree(out)
    p = c.run("05_train.py", *c.train_args(out, "--max-steps", "3", "--overwrite", "--wandb"))
    return Outcome(refusal(p, "wandb", accepted=LOST, changed=sha_tree(out) != before))


# === Wrong result in silence =================================================================================

def other_default_tokenizer(c: Ctx) -> None:
    """out/01_tokenizer/tokenizer.json (the default every script falls back to) is another tokenizer."""
    copy(c.shared("tok512"), c.path("linnet_out") / "01_tokenizer" / "tokenizer.json")


@case("06 on an exported folder, default tokenizer differs", "wrong")
def _(c: Ctx):
    other_default_tokenizer(c)
    want = float(c.shared("export_bpb").read_text() or "nan")
    p = c.run("06_eval.py", *c.eval_args(c.shared("export"), c.path("eval")))
    got = bpb_of(p)
    if p.rc == 0:
        ok = got is not None and abs(got - want) < 1e-6
        return Outcome(HELD if ok else WRONG, p, show=r"bits per byte", why=f"bpb {got} (its own tokenizer: {want})")
    return Outcome(refusal(p, "tokenizer", accepted=WRONG), p)


@case("02 --checkpoint on an exported folder, default tokenizer differs", "wrong")
def _(c: Ctx):
    other_default_tokenizer(c)
    args = ["--checkpoint", c.shared("export"), "--prompt", "To be", "--max-new-tokens", "12", "--seed", "0"]
    ref = c.run("02_model.py", *args, "--tokenizer", c.shared("export") / "tokenizer.json")
    p = c.run("02_model.py", *args)
    sample = lambda q: [l for l in lines_of(q.out) if l.startswith("To be")]
    if p.rc == 0 and ref.rc == 0:
        ok = sample(p) == sample(ref) and sample(p)
        return Outcome(HELD if ok else WRONG, p, show="^To be", why=f"sample {sample(p)} vs {sample(ref)}")
    return Outcome(refusal(p, "tokenizer", accepted=WRONG), p)


@case("bench/hellaswag_speed.py on an exported folder, default tokenizer differs", "wrong")
def _(c: Ctx):
    other_default_tokenizer(c)
    args = ["--checkpoint", c.shared("export"), "--limit", "20", "--warmup", "1", "--device", "cpu"]
    ref = c.run("bench/hellaswag_speed.py", *args, "--tokenizer", c.shared("export") / "tokenizer.json")
    p = c.run("bench/hellaswag_speed.py", *args)

    def numbers(q):
        with contextlib.suppress(Exception):
            r = json.loads(lines_of(q.out)[-1])
            return r["tokens_scored"], r["acc"], r["acc_norm"]
    if p.rc == 0 and ref.rc == 0:
        ok = numbers(p) is not None and numbers(p) == numbers(ref)
        return Outcome(HELD if ok else WRONG, p, message=f"tokens scored, acc, acc_norm: {numbers(p)}",
                       why=f"with the folder's own tokenizer: {numbers(ref)}")
    return Outcome(refusal(p, "tokenizer", accepted=WRONG), p)


@case("05 --data /nonexistent while shards exist", "wrong")
def _(c: Ctx):
    p = c.run("05_train.py", *c.train_args(c.path("run"), "--max-steps", "2", "--data", "/nonexistent/texts.jsonl"))
    return Outcome(refusal(p, "/nonexistent/texts.jsonl", accepted=WRONG))


@case("05 --data other text while shards exist (also with --resume)", "wrong")
def _(c: Ctx):
    other = c.path("other.jsonl")
    other.write_text("".join(json.dumps({"text": f"some other text, number {i}."}) + "\n" for i in range(50)))
    fresh = c.run("05_train.py", *c.train_args(c.path("run"), "--max-steps", "2", "--data", other))
    half = copy(c.shared("half"), c.path("half"))
    resumed = c.run("05_train.py", *c.train_args(half, "--resume", "--max-steps", "22", "--data", other))
    v1, v2 = refusal(fresh, "--data", accepted=WRONG), refusal(resumed, "--data", accepted=WRONG)
    return Outcome(worse(v1, v2), fresh if v1 != HELD or v2 == HELD else resumed)


@case("a shard changed at the same size, then 05", "wrong")
def _(c: Ctx):
    data = copy(c.shared("data"), c.path("data"))
    shard = data / "shard_00003.npy"
    raw = bytearray(shard.read_bytes())
    raw[-4000:] = bytes(4000)                      # the last 2,000 tokens become <|endoftext|>: same size
    shard.write_bytes(bytes(raw))
    p = c.run("05_train.py", *c.train_args(c.path("run"), "--max-steps", "2", data=data))
    return Outcome(refusal(p, "shard_00003", accepted=WRONG), p, show="^checkpoint:",
                   why="trained with exit 0 on a shard whose sha256 no longer matches manifest.json")


@case('HellaSwag "label": 2.7 / true, "endings": "abcd"', "wrong")
def _(c: Ctx):
    rows = hellaswag_rows(3)
    results = []
    for bad in ({"label": 2.7}, {"label": True}, {"endings": "abcd"}):
        path = c.path(f"hs_{next(iter(bad))}_{len(results)}.jsonl")
        path.write_text("".join(json.dumps(r) + "\n" for r in rows[:2] + [{**rows[2], **bad}]))
        p = c.run("06_eval.py", "--preset", "tiny", "--checkpoint", c.shared("full") / "latest.pt", "--tokenizer",
                  c.shared("tok"), "--data-dir", c.shared("data"), "--hellaswag-file", path, "--limit", "3",
                  "--bpb-batches", "1", "--out", c.path(f"eval{len(results)}"))
        results.append((refusal(p, f"{path.name}:3", accepted=WRONG), p))
    bad = [r for r in results if r[0] != HELD]
    return Outcome(worse(*(v for v, _ in results)), (bad or results)[0][1])


@case("exported folder without config.json", "wrong")
def _(c: Ctx):
    folder = copy(c.shared("export"), c.path("no_config"))
    (folder / "config.json").unlink()
    p = c.run("06_eval.py", *c.eval_args(folder, c.path("eval")))
    if p.rc == 0 and "window 64 tokens" in p.out:
        return Outcome(HELD, p, show="scoring:")
    return Outcome(refusal(p, "config.json", accepted=WRONG), p, show="scoring:",
                   why="scored without config.json, with a window other than the 64 tokens it was trained on")


@case("config.json with an unknown key", "wrong")
def _(c: Ctx):
    folder = copy(c.shared("export"), c.path("export"))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "n_expert": 16}))
    p = c.run("02_model.py", "--checkpoint", folder, "--prompt", "To be", "--max-new-tokens", "4")
    return Outcome(refusal(p, "n_expert", accepted=WRONG))


@case("config.json n_active_experts / qk_norm the weights cannot confirm", "wrong")
def _(c: Ctx):
    want = float(c.shared("export_bpb").read_text() or "nan")
    results = []
    base = json.loads((c.shared("export") / "config.json").read_text())
    for key, value in (("n_active_experts", 1), ("qk_norm", not base.get("qk_norm", True))):
        folder = copy(c.shared("export"), c.path(f"export_{key}"))
        (folder / "config.json").write_text(json.dumps({**base, key: value}))
        p = c.run("06_eval.py", *c.eval_args(folder, c.path(f"eval_{key}")))
        if p.rc == 0:
            results.append((HELD if bpb_of(p) == want else WRONG, p))
        else:
            results.append((refusal(p, key, accepted=WRONG), p))
    bad = [r for r in results if r[0] != HELD]
    return Outcome(worse(*(v for v, _ in results)), (bad or results)[0][1], show=r"bits per byte",
                   why=f"bits per byte {[bpb_of(p) for _, p in results]} (as exported: {want})")


def diverged(c: Ctx, name: str, *flags) -> tuple[str, Proc, str]:
    """A run that blows up; the checkpoint it names as good must evaluate sanely (or none be named)."""
    out = c.path(name)
    p = c.run("05_train.py", *c.train_args(out, *flags, "--checkpoint-every", "1", "--max-steps", "100",
                                           "--planned-steps", "100"))
    if p.timed_out or "Traceback" in p.err:
        return refusal(p), p, ""
    if not (out / "latest.pt").exists():        # diverged before any save: held if it says so in one line
        return refusal(p, "no checkpoint"), p, "no checkpoint written"
    e = c.run("06_eval.py", "--preset", "tiny", "--checkpoint", out / "latest.pt", "--tokenizer", c.shared("tok"),
              "--data-dir", c.shared("data"), "--no-hellaswag", "--bpb-batches", "4", "--out", c.path(f"eval_{name}"))
    bpb = bpb_of(e)
    limit = 2 * 10 / 2.33                           # twice a random model's: log2(1024) bits / 2.33 bytes a token
    why = f"06 on the checkpoint it names: exit {e.rc}, bits per byte {bpb} (sane below {limit:.1f})"
    if bpb is None or bpb >= limit:
        return WRONG, p, why
    return (HELD if p.rc == 0 else refusal(p, "latest.pt")), p, why


@case("divergence (--lr 1000; --lr 50 reached by warm-up): the 'last good' checkpoint", "wrong")
def _(c: Ctx):
    results = [diverged(c, "lr1000", "--lr", "1000"), diverged(c, "lr50", "--lr", "50", "--warmup-frac", "1",
                                                                           "--decay-start-frac", "1")]
    bad = [r for r in results if r[0] != HELD]
    v, p, why = (bad or results[1:])[0]
    return Outcome(worse(*(r[0] for r in results)), p, why="; ".join(r[2] for r in results))


@case("05 --resume from a checkpoint with NaN weights", "wrong")
def _(c: Ctx):
    import torch
    out = copy(c.shared("half"), c.path("run"))
    ckpt = torch_load(out / "latest.pt")
    key = next(k for k, v in ckpt["model"].items() if v.is_floating_point() and v.dim() == 2)
    ckpt["model"][key][0, 0] = float("nan")
    torch.save(ckpt, out / "latest.pt")
    p = c.run("05_train.py", *c.train_args(out, "--resume", "--max-steps", "22"))
    v = refusal(p, "latest.pt", accepted=WRONG)
    if v == HELD and "healthy" in one_line(p):
        v = MISLEADING
    return Outcome(v)


# === Misleading or traceback ==================================================================================

@case("02 --checkpoint a good 05 latest.pt", "msg")
def _(c: Ctx):
    p = c.run("02_model.py", "--checkpoint", c.shared("full") / "latest.pt", "--tokenizer", c.shared("tok"),
              "--prompt", "To be", "--max-new-tokens", "8")
    if p.timed_out or "Traceback" in p.err:
        return Outcome(refusal(p))
    ok = p.rc == 0 and any(l.startswith("To be") for l in lines_of(p.out))
    return Outcome(HELD if ok else MISLEADING, p, show="^To be")


@case("06 on a model.safetensors folder, safetensors package missing", "msg")
def _(c: Ctx):
    import torch
    from safetensors.torch import save_file
    folder = copy(c.shared("export"), c.path("export"))
    if not (folder / "model.safetensors").exists():      # the export writes pytorch_model.bin: convert it
        sd = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
        save_file({k: v.clone().contiguous() for k, v in sd.items()}, str(folder / "model.safetensors"))
        (folder / "pytorch_model.bin").unlink()
    shim = c.path("no_safetensors") / "safetensors"      # `import safetensors` fails as if not installed
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'safetensors'\", name='safetensors')\n")
    p = c.run("06_eval.py", *c.eval_args(folder, c.path("eval")), env=c.env(PYTHONPATH=shim.parent))
    return Outcome(refusal(p, "pip install safetensors"))


@case("01 retrained, then 05 --resume: the advice keeps the shards", "msg")
def _(c: Ctx):
    out = copy(c.shared("half"), c.path("run"))
    new = copy(c.shared("tok512"), c.path("tok") / "tokenizer.json")
    p = c.run("05_train.py", *c.train_args(out, "--resume", "--max-steps", "22", tok=new))
    v = refusal(p, "tokenizer")
    line = one_line(p) or ""
    if v == HELD and re.search(r"(re)?run .*04_data", line) and "--out" not in line.split("04_data", 1)[1]:
        return Outcome(MISLEADING, p, why="its advice reruns 04 over the shards this checkpoint needs")
    return Outcome(v, p)


@case("05 --resume --max-steps past the planned schedule", "msg")
def _(c: Ctx):
    out = copy(c.shared("half"), c.path("run"))
    before = sha_tree(out)
    p = c.run("05_train.py", *c.train_args(out, "--resume", "--max-steps", "80"))
    return Outcome(refusal(p, "cannot grow", changed=sha_tree(out) != before))


@case("Ctrl-C mid-run: exit status (05 && 06 must stop)", "msg")
def _(c: Ctx):
    out = c.path("run")
    p, steps = interrupted_run(c, signal.SIGINT, out, "--checkpoint-every", "500")
    return judge_interrupt(p, out, steps, 128 + signal.SIGINT)


@case("the printed resume command, --out with a space", "msg")
def _(c: Ctx):
    out = c.path("my run")
    p, _ = interrupted_run(c, signal.SIGINT, out, "--planned-steps", "40", max_steps=40)
    m = re.search(r"continue with (.+)$", p.out, re.M)
    if p.timed_out or "Traceback" in p.err or not m:
        return Outcome(refusal(p), p, why="no resume command printed")
    argv = shlex.split(m.group(1))
    if argv and argv[0] in ("python", "python3"):
        argv[0] = PY
    resumed = c.run("", cmd=argv)
    ok = resumed.rc == 0 and step_of(out / "latest.pt") == 40
    return Outcome(HELD if ok else MISLEADING, p, message=f"continue with {m.group(1)}",
                   why=f"the printed command: exit {resumed.rc}, {first_line(resumed)}")


def full_disk(c: Ctx, size: str, seed: Path | None, cmd_of: Callable[[Path], list]) -> tuple[Proc, dict, dict]:
    """Run cmd_of(mnt) with `mnt` a tmpfs of `size` (seeded with a copy of `seed`); returns the run and the
    sha256 of the disk's files before and after."""
    mnt, snap = c.path("disk"), c.path("disk_after")
    mnt.mkdir(), snap.mkdir()
    seed_cmd = f"cp -a {shlex.quote(str(seed))}/. {shlex.quote(str(mnt))}/" if seed else ":"
    before = sha_tree(seed) if seed else {}
    p = c.run("", cmd=in_mount_namespace(f"mount -t tmpfs -o size={size} tmpfs {shlex.quote(str(mnt))}; {seed_cmd}",
                                         [str(x) for x in cmd_of(mnt)],
                                         after=f"cp -a {shlex.quote(str(mnt))}/. {shlex.quote(str(snap))}/ 2>/dev/null"))
    return p, before, sha_tree(snap)


def judge_full_disk(p: Proc, before: dict, after: dict, snap: Path, seed: Path | None = None) -> Outcome:
    """Held: one line that says the disk is full, no temp file left, the earlier checkpoint byte-identical
    and the earlier log lines still there (a resume appends to log.jsonl)."""
    changed = [k for k, v in before.items() if after.get(k) != v and k != "log.jsonl" and not k.endswith(".png")]
    if seed is not None and (seed / "log.jsonl").exists():
        if not (snap / "log.jsonl").exists() or not (snap / "log.jsonl").read_text().startswith(
                (seed / "log.jsonl").read_text()):
            changed.append("log.jsonl")
    if changed:
        return Outcome(LOST, p, why=f"changed: {changed}")
    v = refusal(p, "disk is full")
    if v == MISLEADING and p.rc not in (0, None) and "Traceback" not in p.err:
        errs = [l for l in lines_of(p.err) if l.startswith("error:")]   # said after a progress bar's lines
        v = HELD if len(errs) == 1 and "disk is full" in errs[0] else v
    if v == HELD and temp_files(snap):
        return Outcome(MISLEADING, p, why=f"temp files left: {temp_files(snap)}")
    return Outcome(v, p)


@case("full disk in 01", "msg")
def _(c: Ctx):
    p, before, after = full_disk(c, "24k", None, lambda m: script_cmd("01_tokenizer.py", "--preset", "tiny", "--out", m / "tok"))
    return judge_full_disk(p, before, after, c.path("disk_after"))


@case("full disk in 04", "msg")
def _(c: Ctx):
    p, before, after = full_disk(c, "1500k", None, lambda m: script_cmd(
        "04_data.py", "--preset", "tiny", "--tokenizer", c.shared("tok"), "--out", m / "data"))
    o = judge_full_disk(p, before, after, c.path("disk_after"))
    manifest = c.path("disk_after") / "data" / "manifest.json"
    if o.verdict == HELD and manifest.exists():
        listed = [r["file"] for r in json.loads(manifest.read_text())["shards"]]
        if not all((manifest.parent / f).exists() for f in listed):
            return Outcome(LOST, p, why="manifest.json lists shards that are not there")
    return o


@case("full disk in 05 (the earlier latest.pt must survive)", "msg")
def _(c: Ctx):
    half = c.shared("half")
    size = f"{sum(f.stat().st_size for f in half.iterdir()) // 1024 + 1200}k"   # room for the plots, not a 2nd .pt
    p, before, after = full_disk(c, size, half, lambda m: script_cmd("05_train.py", *c.train_args(
        m, "--resume", "--max-steps", "40")))
    return judge_full_disk(p, before, after, c.path("disk_after"), seed=half)


@case("01 --vocab-size 258", "msg")
def _(c: Ctx):
    out = c.path("tok")
    p = c.run("01_tokenizer.py", "--preset", "tiny", "--vocab-size", "258", "--out", out)
    if p.rc == 0 and "Traceback" not in p.err:
        return Outcome(HELD if (out / "tokenizer.json").exists() else MISLEADING, p, show="tokenizer")
    v = refusal(p, "--vocab-size")
    return Outcome(MISLEADING if v == HELD and (out / "tokenizer.json").exists() else v, p,
                   why="refused after saving" if (out / "tokenizer.json").exists() else "")


@case('01 --data with a line {"text": 5}', "msg")
def _(c: Ctx):
    path = c.path("texts.jsonl")
    path.write_text("".join(json.dumps({"text": f"a line of text, number {i}. " * 20}) + "\n" for i in range(30))
                    + json.dumps({"text": 5}) + "\n")
    out = c.path("tok")
    p = c.run("01_tokenizer.py", "--preset", "tiny", "--data", path, "--out", out)
    v = refusal(p, "texts.jsonl")
    return Outcome(MISLEADING if v == HELD and not nothing_in(out) else v, p)


@case("04 rerun with a stray shard_00003.bak.npy in --out", "msg")
def _(c: Ctx):
    out = copy(c.shared("data"), c.path("data"))
    stray = out / "shard_00003.bak.npy"
    stray.write_bytes((out / "shard_00003.npy").read_bytes())
    (out / "manifest.json").unlink()               # an unfinished folder: 04 cleans up what it does not keep
    keep = sha_tree(out)["shard_00003.bak.npy"]
    p = c.run("04_data.py", "--preset", "tiny", "--tokenizer", c.shared("tok"), "--out", out)
    if p.timed_out or "Traceback" in p.err or p.rc != 0:
        return Outcome(refusal(p), p)
    ok = sha_tree(out).get("shard_00003.bak.npy") == keep and (out / "manifest.json").exists()
    return Outcome(HELD if ok else LOST, p, show="shards in", why="the user's stray file was deleted or changed")


@case("04 --shard-tokens 1", "msg")
def _(c: Ctx):
    p = c.run("04_data.py", "--preset", "tiny", "--tokenizer", c.shared("tok"), "--shard-tokens", "1",
              "--out", c.path("data"))
    return Outcome(refusal(p, "--shard-tokens"))


@case("05 --seed 4294967296", "msg")
def _(c: Ctx):
    out = c.path("run")
    p = c.run("05_train.py", "--preset", "tiny", "--seed", "4294967296", "--out", out)
    v = refusal(p, "--seed")
    return Outcome(MISLEADING if v == HELD and not nothing_in(out) else v, p)


@case("06 --sample= (empty prompt)", "msg")
def _(c: Ctx):
    p = c.run("06_eval.py", "--preset", "tiny", "--sample=", "--out", c.path("eval"))
    return Outcome(refusal(p, "--sample"))


@case("manifest val_bytes_per_token 0 / no validation shard", "msg")
def _(c: Ctx):
    results = []
    for how in ("val_bytes_per_token 0", "no validation shard"):
        data = copy(c.shared("data"), c.path(how.replace(" ", "_")))
        m = json.loads((data / "manifest.json").read_text())
        if how.startswith("val_bytes"):
            m["val_bytes_per_token"] = 0
        else:
            m["shards"] = [r for r in m["shards"] if r["split"] != "val"]
        (data / "manifest.json").write_text(json.dumps(m))
        out = c.path(f"run_{len(results)}")
        p = c.run("05_train.py", *c.train_args(out, "--max-steps", "2", data=data))
        v = refusal(p, "manifest.json")
        results.append((MISLEADING if v == HELD and (out / "log.jsonl").exists() else v, p))
    bad = [r for r in results if r[0] != HELD]
    return Outcome(worse(*(v for v, _ in results)), (bad or results)[0][1])


@case("05 --tokenizer DIR (the folder holding tokenizer.json)", "msg")
def _(c: Ctx):
    p = c.run("05_train.py", *c.train_args(c.path("run"), "--max-steps", "2", "--planned-steps", "2",
                                           tok=c.shared("tok").parent))
    if p.rc == 0 and "Traceback" not in p.err:
        return Outcome(HELD, p, show="checkpoint:")
    v = refusal(p, "tokenizer.json")
    line = one_line(p) or ""
    return Outcome(MISLEADING if v == HELD and re.search(r"no tokenizer at|does not exist|missing", line) else v, p)


@case("05 --resume, latest.pt holds a bare state dict", "msg")
def _(c: Ctx):
    import torch
    out = copy(c.shared("half"), c.path("run"))
    torch.save(torch_load(out / "latest.pt")["model"], out / "latest.pt")
    p = c.run("05_train.py", *c.train_args(out, "--resume", "--max-steps", "22"))
    return Outcome(refusal(p, "latest.pt"))


@case("bench/throughput.py --json into an unwritable path", "msg")
def _(c: Ctx):
    blocker = c.path("file")
    blocker.write_text("a file, not a folder")
    p = c.run("bench/throughput.py", "--depth", "2", "--micro-batch", "1", "--seq-len", "64", "--steps", "2",
              "--warmup", "1", "--no-compile", "--json", blocker / "r.jsonl")
    v = refusal(p, "cannot write", "--json")
    return Outcome(MISLEADING if v == HELD and "tokens/s" in p.out else v, p,
                   why="refused after the timed run" if "tokens/s" in p.out else "")


EXPORT_FILES = ("pytorch_model.bin", "model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json")


@case("--help, 02's own line and the README name the files --export writes", "msg")
def _(c: Ctx):
    h = c.run("02_model.py", "--help")
    out = c.path("export")
    p = c.run("02_model.py", "--export", c.shared("full") / "latest.pt", "--tokenizer", c.shared("tok"), "--out", out)
    if p.rc != 0:
        return Outcome(refusal(p), p)
    written = {f.name for f in out.iterdir()}
    weights = written & {"pytorch_model.bin", "model.safetensors"}
    readme = (REPO_DIR / "README.md").read_text()
    said = {"--help": " ".join(h.out.split()).rsplit("--export CHECKPOINT", 1)[-1].split(" --overwrite", 1)[0],
            "02 prints": next((l for l in lines_of(p.out) if l.startswith("exported")), ""),
            "README": next((l for l in readme.splitlines() if l.startswith("# exported")), "")}
    named = {k: {n for n in EXPORT_FILES if re.search(rf"(?<![\w.]){re.escape(n)}", v)} for k, v in said.items()}
    wrong = {k: sorted(v) for k, v in named.items() if not v or not v <= written or not weights <= v}
    return Outcome(MISLEADING if wrong else HELD, p, show="^exported",
                   message=f"{next(iter(wrong))}: {said[next(iter(wrong))][:150]}" if wrong else None,
                   why=f"names {wrong}; the folder holds {sorted(written)}")


# === README order and new users ================================================================================

def bare_clone(c: Ctx) -> Path:
    """The working tree as a clone has it (tracked and unignored files), with no ../shared beside it."""
    repo = c.path("clone") / "linnet-from-scratch"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO_DIR,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, files):
        if (REPO_DIR / name).is_file():
            copy(REPO_DIR / name, repo / name)
    return repo


@case("bare clone, offline: python 05_train.py", "new")
def _(c: Ctx):
    repo = bare_clone(c)
    p = c.run("", cmd=[PY, "05_train.py"], cwd=repo, env=c.env(LINNET_OUT=repo / "out"), timeout=300)
    ckpt = repo / "out" / "05_train" / "latest.pt"
    if p.rc == 0 and "Traceback" not in p.err:
        return Outcome(HELD if ckpt.exists() else MISLEADING, p, show="^checkpoint:")
    return Outcome(refusal(p), p)


@case("bare clone: the README's test command", "new")
def _(c: Ctx):
    return not_run("the whole suite takes ≈ 25 min on 2 idle cores (README; .ci/run does it on a bare clone)")


@case("README main command first, then the tests it broke", "new")
def _(c: Ctx):
    home = c.path("linnet_out")                    # what `python 05_train.py` leaves in out/
    copy(c.shared("full"), home / "05_train")
    copy(c.shared("tok").parent, home / "01_tokenizer")
    copy(c.shared("data"), home / "04_data")
    p = c.run("", cmd=[PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_faults_misc.py", "-k",
                       "test_corrupt_manifest_stops_05_and_06_in_one_line and 06_eval"], timeout=300)
    ok = p.rc == 0 and re.search(r"\b2 passed", p.out)
    return Outcome(HELD if ok else MISLEADING, p, show=r"passed|failed")


@case("the DDP test on a loaded machine", "new")
def _(c: Ctx):
    return not_run("flakiness needs many runs under load (one pass proves nothing); minutes each")


@case("03_muon.py on a CPU (the GPU-sized default)", "new")
def _(c: Ctx):
    p = c.run("03_muon.py", "--steps", "2", "--quick", "--out", c.path("muon"))
    if p.rc == 0 and "Traceback" not in p.err:
        ok = re.search(r"no CUDA|tiny preset", p.out, re.I)
        return Outcome(HELD if ok else MISLEADING, p, show=r"CUDA|tiny preset", why="no notice of the switch")
    return Outcome(refusal(p, "tiny"), p)


@case("bench/throughput.py --plain moe on a CPU", "new")
def _(c: Ctx):
    p = c.run("bench/throughput.py", "--plain", "moe")
    return Outcome(refusal(p, "--depth"), p)


@case("05 --max-steps 5281 on a CPU", "new")
def _(c: Ctx):
    out = c.path("run")
    p = c.run("05_train.py", "--max-steps", "5281", "--out", out)
    v = refusal(p, "--max-steps")
    return Outcome(MISLEADING if v == HELD and not nothing_in(out) else v, p)


@case("05 says where latest.pt went; 06 names what it scored", "new")
def _(c: Ctx):
    out = c.path("run")
    p = c.run("05_train.py", *c.train_args(out, "--max-steps", "2", "--planned-steps", "2"))
    e = c.run("06_eval.py", "--preset", "tiny", "--checkpoint", out / "latest.pt", "--tokenizer", c.shared("tok"),
              "--data-dir", c.shared("data"), "--no-hellaswag", "--bpb-batches", "1", "--out", c.path("eval"))
    said = str(out / "latest.pt") in p.out and str(out / "latest.pt") in e.out
    bad = refusal(p) if p.rc != 0 else refusal(e) if e.rc != 0 else None
    return Outcome(bad or (HELD if said else MISLEADING), e, show="^scoring:",
                   why=f"05 names it: {str(out / 'latest.pt') in p.out}, 06 names it: {str(out / 'latest.pt') in e.out}")


@case("03_muon.py --preset tiny runs in seconds", "new")
def _(c: Ctx):
    p = c.run("03_muon.py", "--preset", "tiny", "--out", c.path("muon"), timeout=90)
    races = len(re.findall(r"held-out", p.out))        # 6 training runs make the race; each prints one line
    if p.timed_out:                                    # slow, not stuck: it was still finishing its runs
        return Outcome(MISLEADING, p, message=f"not done after {p.seconds:.0f} s ({races} of 6 race runs finished; "
                                              f"README: seconds, --help: ≈25 s)", why="over a minute")
    if p.rc != 0:
        return Outcome(refusal(p), p)
    ok = p.seconds <= 60
    return Outcome(HELD if ok else MISLEADING, p, message=f"ran in {p.seconds:.0f} s (README: seconds; --help: ≈25 s)",
                   why="over a minute")


@case("tests/test_notebooks.py leaves notebook kernels running", "new")
def _(c: Ctx):
    return not_run("needs the notebook suite (minutes) and watching kernels while it runs")


@case(".ci/run leaves its 1.7 GB venv behind", "new")
def _(c: Ctx):
    return not_run("builds a fresh venv from the network (not reachable here)")


# === Held last round ===========================================================================================

@case("kill -9 mid-step, then --resume: exactly the uninterrupted run", "held")
def _(c: Ctx):
    import torch
    ref = c.shared("full")
    out = c.path("run")
    args = c.train_args(out, "--max-steps", "60", "--planned-steps", "60", "--checkpoint-every", "20")
    for attempt in range(3):
        shutil.rmtree(out, ignore_errors=True)
        proc = c.start("05_train.py", *args, name=f"killed{attempt}")
        wait_for(lambda: len(log_steps(out / "log.jsonl")) >= 26, proc, 90, poll=0.005)
        signal_group(proc, signal.SIGKILL)
        c.finish(proc)
        if step_of(out / "latest.pt") == 20:
            break
    else:
        return not_run("the kill never landed between the checkpoints at 20 and 40")
    p = c.run("05_train.py", *args, "--resume")
    if p.rc != 0:
        return Outcome(refusal(p), p)
    a, b = torch_load(out / "latest.pt")["model"], torch_load(ref / "latest.pt")["model"]
    same_w = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    la, lb = log_steps(out / "log.jsonl"), log_steps(ref / "log.jsonl")
    same_l = [(r["step"], r["loss"]) for r in la] == [(r["step"], r["loss"]) for r in lb]
    return Outcome(HELD if same_w and same_l else WRONG, p, show="resumed from",
                   why=f"weights equal: {same_w}, losses equal step by step: {same_l}")


@case("kill -9 mid-save, then --resume", "held")
def _(c: Ctx):
    out = c.path("run")
    args = c.train_args(out, "--checkpoint-every", "1", "--max-steps", "300")
    left = []
    for attempt in range(5):
        shutil.rmtree(out, ignore_errors=True)
        proc = c.start("05_train.py", *args, name=f"killed{attempt}")

        def saving():
            names = os.listdir(out) if out.is_dir() else []
            return "latest.pt" in names and any(n.startswith(".latest.pt.tmp") for n in names)
        if wait_for(saving, proc, 60, poll=0.0):
            signal_group(proc, signal.SIGKILL)
        c.finish(proc, 60)
        left = sorted(out.glob(".latest.pt.tmp*"))
        if left:
            break
    if not left:
        return not_run("never caught a save in progress in 5 tries")
    step = step_of(out / "latest.pt")
    p = c.run("05_train.py", *c.train_args(out, "--checkpoint-every", "1", "--resume", "--max-steps", step + 2))
    ok = p.rc == 0 and not temp_files(out) and step_of(out / "latest.pt") == step + 2
    return Outcome(HELD if ok else refusal(p), p, show="removed|resumed from",
                   why=f"resumed: exit {p.rc}, temp files {temp_files(out)}, step {step_of(out / 'latest.pt')}")


@case("04 killed -9 and rerun: byte-identical shards", "held")
def _(c: Ctx):
    out = c.path("data")
    args = ["--preset", "tiny", "--tokenizer", c.shared("tok"), "--out", out]
    proc = c.start("04_data.py", *args)
    wait_for(lambda: (out / "shard_00002.npy").exists(), proc, 90)
    signal_group(proc, signal.SIGKILL)
    c.finish(proc)
    p = c.run("04_data.py", *args)
    ref = {k: v for k, v in sha_tree(c.shared("data")).items() if k.startswith("shard_")}
    got = {k: v for k, v in sha_tree(out).items() if k.startswith("shard_")}
    manifests = [json.loads((d / "manifest.json").read_text())["shards"] if (d / "manifest.json").exists() else None
                 for d in (out, c.shared("data"))]
    if p.rc != 0:
        return Outcome(refusal(p), p)
    return Outcome(HELD if got == ref and manifests[0] == manifests[1] else WRONG, p, show="shards in",
                   why=f"{sum(got.get(k) != v for k, v in ref.items())} of {len(ref)} shards differ")


def bad_file(path: Path, how: str, source: Path) -> Path:
    raw = source.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw[: len(raw) // 2] if how == "truncated" else bytes(len(raw)))
    return path


@case("truncated tokenizer.json -> 04", "held")
def _(c: Ctx):
    t = bad_file(c.path("t") / "tokenizer.json", "truncated", c.shared("tok"))
    out = c.path("data")
    p = c.run("04_data.py", "--preset", "tiny", "--tokenizer", t, "--out", out)
    v = refusal(p, str(t))
    return Outcome(MISLEADING if v == HELD and not nothing_in(out) else v, p)


@case("zeroed tokenizer.json -> 05", "held")
def _(c: Ctx):
    t = bad_file(c.path("t") / "tokenizer.json", "zeroed", c.shared("tok"))
    p = c.run("05_train.py", *c.train_args(c.path("run"), "--max-steps", "2", tok=t))
    return Outcome(refusal(p, str(t)))


@case("foreign tokenizer.json (a manifest) -> 06", "held")
def _(c: Ctx):
    t = copy(c.shared("data") / "manifest.json", c.path("t") / "tokenizer.json")
    p = c.run("06_eval.py", "--preset", "tiny", "--checkpoint", c.shared("full") / "latest.pt", "--tokenizer", t,
              "--data-dir", c.shared("data"), "--no-hellaswag", "--out", c.path("eval"))
    return Outcome(refusal(p, str(t)))


def damaged_shards(c: Ctx, how: str, name: str) -> Path:
    data = copy(c.shared("data"), c.path("data"))
    if how == "foreign":
        (data / name).write_bytes((data / "shard_00007.npy").read_bytes())
    else:
        bad_file(data / name, how, data / name)
    return data


@case("truncated shard -> 05", "held")
def _(c: Ctx):
    data = damaged_shards(c, "truncated", "shard_00005.npy")
    out = c.path("run")
    p = c.run("05_train.py", *c.train_args(out, "--max-steps", "2", data=data))
    v = refusal(p, "shard_00005.npy", accepted=WRONG)
    return Outcome(MISLEADING if v == HELD and (out / "log.jsonl").exists() else v, p)


@case("zeroed validation shard -> 06", "held")
def _(c: Ctx):
    data = damaged_shards(c, "zeroed", "shard_00000.npy")
    p = c.run("06_eval.py", "--preset", "tiny", "--checkpoint", c.shared("full") / "latest.pt", "--tokenizer",
              c.shared("tok"), "--data-dir", data, "--no-hellaswag", "--out", c.path("eval"))
    return Outcome(refusal(p, "shard_00000.npy", accepted=WRONG))


@case("foreign shard (another shard's file) -> 05", "held")
def _(c: Ctx):
    data = damaged_shards(c, "foreign", "shard_00002.npy")
    p = c.run("05_train.py", *c.train_args(c.path("run"), "--max-steps", "2", data=data))
    return Outcome(refusal(p, "shard_00002.npy", accepted=WRONG))


@case("truncated checkpoint -> 06", "held")
def _(c: Ctx):
    ckpt = bad_file(c.path("cut.pt"), "truncated", c.shared("full") / "latest.pt")
    p = c.run("06_eval.py", "--preset", "tiny", "--checkpoint", ckpt, "--tokenizer", c.shared("tok"),
              "--data-dir", c.shared("data"), "--no-hellaswag", "--out", c.path("eval"))
    return Outcome(refusal(p, str(ckpt), accepted=WRONG))


@case("zeroed checkpoint -> 05 --resume", "held")
def _(c: Ctx):
    out = copy(c.shared("half"), c.path("run"))
    bad_file(out / "latest.pt", "zeroed", out / "latest.pt")
    before = sha_tree(out)
    p = c.run("05_train.py", *c.train_args(out, "--resume", "--max-steps", "22"))
    return Outcome(refusal(p, "latest.pt", accepted=WRONG, changed=sha_tree(out) != before))


@case("foreign checkpoint (a PNG named .pt) -> 02 --checkpoint", "held")
def _(c: Ctx):
    ckpt = copy(c.shared("full") / "loss.png", c.path("model.pt"))
    p = c.run("02_model.py", "--checkpoint", ckpt, "--tokenizer", c.shared("tok"), "--prompt", "To be")
    return Outcome(refusal(p, str(ckpt), accepted=WRONG))


def read_only_out(c: Ctx, script: str, *args) -> Outcome:
    """`--out` on a read-only file system (a read-only tmpfs: chmod does not stop root)."""
    mnt = c.path("ro")
    mnt.mkdir()
    cmd = script_cmd(script, *args, "--out", mnt / "out")
    p = c.run("", cmd=in_mount_namespace(f"mount -t tmpfs -o ro,size=1m tmpfs {shlex.quote(str(mnt))}", cmd))
    return Outcome(refusal(p, "--out"), p)


@case("read-only --out: 01_tokenizer.py", "held")
def _(c: Ctx):
    return read_only_out(c, "01_tokenizer.py", "--preset", "tiny")


@case("read-only --out: 02_model.py", "held")
def _(c: Ctx):
    return read_only_out(c, "02_model.py", "--preset", "tiny")


@case("read-only --out: 03_muon.py", "held")
def _(c: Ctx):
    return read_only_out(c, "03_muon.py", "--preset", "tiny")


@case("read-only --out: 04_data.py", "held")
def _(c: Ctx):
    return read_only_out(c, "04_data.py", "--preset", "tiny", "--tokenizer", c.shared("tok"))


@case("read-only --out: 05_train.py", "held")
def _(c: Ctx):
    return read_only_out(c, "05_train.py", "--preset", "tiny", "--tokenizer", c.shared("tok"), "--data-dir",
                         c.shared("data"), "--max-steps", "2", "--no-hellaswag")


@case("read-only --out: 06_eval.py", "held")
def _(c: Ctx):
    return read_only_out(c, "06_eval.py", "--preset", "tiny", "--checkpoint", c.shared("full") / "latest.pt",
                         "--tokenizer", c.shared("tok"), "--data-dir", c.shared("data"), "--no-hellaswag")


@case("05 --lr nan", "held")
def _(c: Ctx):
    out = c.path("run")
    p = c.run("05_train.py", "--preset", "tiny", "--lr", "nan", "--out", out)
    v = refusal(p, "--lr")
    return Outcome(MISLEADING if v == HELD and not nothing_in(out) else v, p)


@case("05 --total-batch-tokens 1000 (not a multiple of a micro-batch)", "held")
def _(c: Ctx):
    out = c.path("run")
    p = c.run("05_train.py", "--preset", "tiny", "--total-batch-tokens", "1000", "--out", out)
    v = refusal(p, "--total-batch-tokens")
    return Outcome(MISLEADING if v == HELD and not nothing_in(out) else v, p)


# === Issue 32 (robustness III): a terminal that goes away, advice that works, what was accepted in silence ====

def follow_printed(c: Ctx, p: Proc, after: str) -> Proc | None:
    """Run the command `p` printed after `after` (a "python 05_train.py ..." line), as a user pastes it."""
    m = re.search(re.escape(after) + r"(python \S+\.py .+)$", p.text, re.M)
    if m is None:
        return None
    argv = shlex.split(m.group(1))
    return c.run("", cmd=[PY, str(REPO_DIR / argv[1]), *argv[2:]])


def finished_once(out: Path, steps: int) -> bool:
    """The run holds every step exactly once: latest.pt at `steps`, the log's steps 0 … steps - 1."""
    return step_of(out / "latest.pt") == steps and [r["step"] for r in log_steps(out / "log.jsonl")] == list(range(steps))


def judge_followed(p: Proc, followed: Proc | None, out: Path, steps: int, expect_rc: int, after: str) -> Outcome:
    """A stop whose printed command, followed, must finish the run exactly."""
    if p.timed_out or "Traceback" in p.err:
        return Outcome(HANG if p.timed_out else TRACEBACK, p)
    if followed is None:
        return Outcome(MISLEADING, p, show="interrupted", why=f"no command printed after {after!r}")
    ok = p.rc == expect_rc and followed.rc == 0 and finished_once(out, steps)
    return Outcome(HELD if ok else MISLEADING, p, show="interrupted",
                   why="" if ok else f"exit {p.rc} (want {expect_rc}); the printed command: exit {followed.rc}, "
                                     f"{first_line(followed)}; steps {step_of(out / 'latest.pt')}")


@case("SIGHUP mid-run (a closed terminal, a dropped ssh), then the printed command", "r3")
def _(c: Ctx):
    out = c.path("run")
    p, steps = interrupted_run(c, signal.SIGHUP, out, "--planned-steps", "120", max_steps=120)
    saved = judge_interrupt(p, out, steps, 128 + signal.SIGHUP)
    if saved.verdict != HELD:
        return saved
    return judge_followed(p, follow_printed(c, p, "continue with "), out, 120, 128 + signal.SIGHUP, "continue with ")


@case("SIGHUP after the terminal is gone (its pty closed: every write fails)", "r3")
def _(c: Ctx):
    import pty
    import threading

    out = c.path("run")
    master, slave = pty.openpty()
    cmd = script_cmd("05_train.py", *c.train_args(out, "--max-steps", "300"))
    proc = subprocess.Popen(cmd, cwd=REPO_DIR, env=c.env(), stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True, preexec_fn=_limit_memory)
    os.close(slave)

    def terminal():                                    # shows what the run prints, until it goes away
        with contextlib.suppress(OSError):
            while os.read(master, 4096):
                pass
    threading.Thread(target=terminal, daemon=True).start()
    wait_for(lambda: len(log_steps(out / "log.jsonl")) >= 3, proc, 90)
    os.close(master)                                   # the terminal goes away
    signal_group(proc, signal.SIGHUP)
    t0 = time.time()
    try:
        rc = proc.wait(timeout=c.timeout)
    except subprocess.TimeoutExpired:
        signal_group(proc, signal.SIGKILL)
        return Outcome(HANG, Proc(cmd, None, "", "", True, time.time() - t0))
    steps = log_steps(out / "log.jsonl")
    p = Proc(cmd, rc, "", "", False, time.time() - t0)
    c.procs.append(p)
    saved = step_of(out / "latest.pt")
    if saved is None or saved < len(steps) or temp_files(out):
        return Outcome(LOST, p, message=f"latest.pt at step {saved}", why=f"{len(steps)} steps logged")
    ok = rc == 128 + signal.SIGHUP
    return Outcome(HELD if ok else MISLEADING, p, message=f"exit {rc}, latest.pt at step {saved} of {len(steps)} "
                   "logged (nothing can be read on a closed terminal)", why="" if ok else f"exit {rc}, want 129")


@case("two quick Ctrl-Cs (the second before any save): the printed command", "r3")
def _(c: Ctx):
    out = c.path("run")
    p, _ = interrupted_run(c, signal.SIGINT, out, "--planned-steps", "40", max_steps=40, twice=0.05)
    after = "continue with " if (out / "latest.pt").exists() else "start it again with "   # the step ended between
    return judge_followed(p, follow_printed(c, p, after), out, 40, 130, after)


@case("kill -9 before the first save, then --resume: its advice", "r3")
def _(c: Ctx):
    out = c.path("run")
    args = c.train_args(out, "--planned-steps", "40", "--max-steps", "40")
    proc = c.start("05_train.py", *args, name="run")
    wait_for(lambda: len(log_steps(out / "log.jsonl")) >= 3, proc, 90)
    signal_group(proc, signal.SIGKILL)
    c.finish(proc)
    p = c.run("05_train.py", *args, "--resume")
    verdict = refusal(p, "without --resume and with --overwrite")
    if verdict != HELD:
        return Outcome(verdict, p)
    followed = c.run("05_train.py", *args, "--overwrite")        # what it says: no --resume, --overwrite
    ok = followed.rc == 0 and finished_once(out, 40)
    return Outcome(HELD if ok else MISLEADING, p, why="" if ok else f"followed: exit {followed.rc}, {first_line(followed)}")


@case("05 --min-lr above --lr (the 'decay' would climb)", "r3")
def _(c: Ctx):
    p = c.run("05_train.py", *c.train_args(c.path("run"), "--min-lr", "0.01"))
    return Outcome(refusal(p, "--min-lr", "above --lr", accepted=WRONG, changed=c.path("run").exists()), p)


@case("05 --warmup-frac 0.9 --decay-start-frac 0.5 (the lr drops in one step)", "r3")
def _(c: Ctx):
    p = c.run("05_train.py", *c.train_args(c.path("run"), "--warmup-frac", "0.9", "--decay-start-frac", "0.5"))
    return Outcome(refusal(p, "--warmup-frac", "--decay-start-frac", accepted=WRONG, changed=c.path("run").exists()), p)


@case("CPU out of memory in 05 (a 1.8 GB address space, --micro-batch 2048)", "r3")
def _(c: Ctx):
    args = c.train_args(c.path("run"), "--max-steps", "3", "--micro-batch", "2048", "--total-batch-tokens", "131072")
    p = c.run("", cmd=["prlimit", f"--as={1800 << 20}", *script_cmd("05_train.py", *args)])
    return Outcome(refusal(p, "out of memory", "--micro-batch 1024"), p)


@case("a checkpoint whose config has a field this code does not know -> 05 --resume, 02, 06", "r3")
def _(c: Ctx):
    import torch

    out = copy(c.shared("half"), c.path("run"))
    checkpoint = torch.load(out / "latest.pt", map_location="cpu", weights_only=True)
    checkpoint["config"]["future_field"] = 1
    if isinstance(checkpoint.get("train_config", {}).get("model"), dict):
        checkpoint["train_config"]["model"]["future_field"] = 1
    torch.save(checkpoint, out / "latest.pt")
    runs = [c.run("05_train.py", *c.train_args(out, "--resume", "--planned-steps", "60", "--max-steps", "30")),
            c.run("02_model.py", "--checkpoint", out / "latest.pt", "--tokenizer", c.shared("tok"), "--prompt", "To be",
                  "--max-new-tokens", "2"),
            c.run("06_eval.py", *c.eval_args(out / "latest.pt", c.path("eval"), "--tokenizer", c.shared("tok")))]
    verdicts = [refusal(p, "future_field", "does not know", accepted=WRONG) for p in runs]
    bad = [p for v, p in zip(verdicts, runs) if v != HELD]
    return Outcome(worse(*verdicts), (bad or runs)[0])


@case("tiny-plus export as model.safetensors, config.json without logit_softcap -> 06", "r3")
def _(c: Ctx):
    import torch
    from safetensors.torch import save_file

    run = c.path("plus")
    c.run("05_train.py", *c.train_args(run, "--max-steps", "2", "--planned-steps", "60")[2:], "--preset", "tiny-plus")
    exported = c.run("02_model.py", "--export", run / "latest.pt", "--tokenizer", c.shared("tok"), "--out", c.path("exp"))
    if exported.rc != 0:
        return Outcome(refusal(exported), exported, why="setup: the tiny-plus export failed")
    folder = c.path("st")
    folder.mkdir()
    sd = torch.load(c.path("exp") / "pytorch_model.bin", map_location="cpu", weights_only=True)
    save_file({k: v.contiguous().clone() for k, v in sd.items()}, str(folder / "model.safetensors"))
    config = json.loads((c.path("exp") / "config.json").read_text())
    config.pop("logit_softcap")
    (folder / "config.json").write_text(json.dumps(config))
    shutil.copy(c.path("exp") / "tokenizer.json", folder / "tokenizer.json")
    p = c.run("06_eval.py", *c.eval_args(folder, c.path("eval")))
    return Outcome(refusal(p, "logit_softcap", accepted=WRONG), p)


def hellaswag_06(c: Ctx, path: Path, name: str) -> Proc:
    return c.run("06_eval.py", "--preset", "tiny", "--checkpoint", c.shared("full") / "latest.pt", "--tokenizer",
                 c.shared("tok"), "--data-dir", c.shared("data"), "--hellaswag-file", path, "--bpb-batches", "1",
                 "--out", c.path(name))


@case("HellaSwag file with a repeated example (scored twice before)", "r3")
def _(c: Ctx):
    rows = hellaswag_rows(5)
    path = c.path("dup.jsonl")
    path.write_text("".join(json.dumps(r) + "\n" for r in rows + rows[:2]))
    return Outcome(refusal(hellaswag_06(c, path, "eval"), "dup.jsonl:6", "repeats", accepted=WRONG))


@case("HellaSwag file in latin-1", "r3")
def _(c: Ctx):
    rows = hellaswag_rows(5)
    rows[0] = {**rows[0], "ctx": rows[0]["ctx"] + " café"}
    path = c.path("latin1.jsonl")
    path.write_bytes("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("latin-1", "replace"))
    return Outcome(refusal(hellaswag_06(c, path, "eval"), "UTF-8"))


@case("06 --max-new-tokens 10**9", "r3")
def _(c: Ctx):
    p = c.run("06_eval.py", *c.eval_args(c.shared("full") / "latest.pt", c.path("eval"), "--tokenizer",
                                         c.shared("tok"), "--sample", "To be", "--max-new-tokens", str(10 ** 9)))
    return Outcome(refusal(p, "10,000", changed=c.path("eval").exists()), p)


@case("Ctrl-C, SIGTERM, SIGHUP in 04: the shards kept, the rerun it advises resumes", "r3")
def _(c: Ctx):
    results = []
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        out = c.path(f"data_{sig}")
        args = ["--preset", "tiny", "--tokenizer", c.shared("tok"), "--shard-tokens", "20000", "--val-tokens",
                "100000", "--out", out]                # ~170 shards: still tokenizing when the signal comes
        proc = c.start("04_data.py", *args, name=f"04_{sig}")
        wait_for((out / "progress.json").exists, proc, 90)
        signal_group(proc, sig)
        p = c.finish(proc, c.timeout + 120)   # a loaded machine: time to start
        if p.timed_out or "Traceback" in p.err:
            results.append((HANG if p.timed_out else TRACEBACK, p))
            continue
        said = lines_of(p.err)[-1] if lines_of(p.err) else ""
        rerun = c.run("04_data.py", *args) if "rerun the same command" in said else None
        ok = (p.rc == 128 + sig and said.startswith("interrupted:") and rerun is not None and rerun.rc == 0
              and "resuming:" in rerun.out)
        p.why = "" if ok else f"exit {p.rc}, said {said!r}, rerun {rerun and rerun.rc}"
        results.append((HELD if ok else MISLEADING, p))
    return worst_signal_outcome(results)


def worst_signal_outcome(results):
    """(verdict, proc) per signal → one Outcome: the worst verdict, shown with the first run that was not held."""
    bad = [r for r in results if r[0] != HELD]
    _, p = (bad or results)[0]
    return Outcome(worse(*(r[0] for r in results)), p, why=p.why)


@case("Ctrl-C, SIGTERM, SIGHUP in 06: one line, no results.json", "r3")
def _(c: Ctx):
    results = []
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        out = c.path(f"eval_{sig}")
        proc = c.start("06_eval.py", "--preset", "tiny", "--checkpoint", c.shared("full") / "latest.pt", "--tokenizer",
                       c.shared("tok"), "--data-dir", c.shared("data"), "--limit", "10042", "--batch-tokens", "512",
                       "--out", out, name=f"06_{sig}")
        wait_for(lambda: "scoring:" in (c.dir / f".06_{sig}" / "stdout").read_text(), proc, 90)
        time.sleep(2)
        signal_group(proc, sig)
        p = c.finish(proc, c.timeout + 120)   # a loaded machine: time to start
        if p.timed_out or "Traceback" in p.err:
            results.append((HANG if p.timed_out else TRACEBACK, p))
            continue
        said = lines_of(p.err)[-1] if lines_of(p.err) else ""
        ok = p.rc == 128 + sig and said.startswith("interrupted:") and not (out / "results.json").exists()
        p.why = "" if ok else f"exit {p.rc}, said {said!r}"
        results.append((HELD if ok else MISLEADING, p))
    return worst_signal_outcome(results)


@case("exercises.check --time-limit inf / nan", "r3")
def _(c: Ctx):
    runs = [c.run("", cmd=[PY, "-m", "exercises.check", "rope", "--time-limit", v]) for v in ("inf", "nan")]
    verdicts = [refusal(p, "--time-limit", "finite") for p in runs]
    bad = [p for v, p in zip(verdicts, runs) if v != HELD]
    return Outcome(worse(*verdicts), (bad or runs)[0])


# --- running cases and writing the table ------------------------------------------------------------------------

@dataclasses.dataclass
class Row:
    case: Case
    verdict: str
    exit: str
    message: str
    command: str
    why: str
    seconds: float


def shown_cmd(cmd: list[str], root: Path) -> str:
    if cmd[:2] == ["unshare", "-rm"]:
        cmd = ["unshare", "-rm", "sh", "-c", "'mount …'", "sh", *cmd[6:]]
    text = " ".join(shlex.quote(a) if not a.startswith("'mount") else a for a in cmd)
    return text.replace(PY, "python").replace(str(REPO_DIR) + "/", "").replace(str(root), "$T")


def run_case(ctx: Ctx, case_: Case) -> Row:
    t0 = time.time()
    ctx.new_case(case_.number)
    try:
        outcome = case_.fn(ctx)
    except SystemExit:
        raise
    except Exception as e:   # the harness itself failed: say so, never call it held
        return Row(case_, f"harness error: {type(e).__name__}", "", str(e)[:150], "", "", time.time() - t0)
    p = outcome.proc or (ctx.procs[-1] if ctx.procs else None)
    if p is None:
        return Row(case_, outcome.verdict, "", "", "", "", time.time() - t0)
    why = outcome.why or (p.why if outcome.verdict != HELD else "")
    message = outcome.message or first_line(p, outcome.show)
    message = _ANSI.sub("", message).replace(str(ctx.root), "$T").replace(str(REPO_DIR) + "/", "")
    exit_ = "timeout" if p.timed_out else str(p.rc) if p.rc >= 0 else f"{p.rc} ({signal.Signals(-p.rc).name})"
    return Row(case_, outcome.verdict, exit_, message, shown_cmd(p.cmd, ctx.root),
               why.replace(str(ctx.root), "$T"), time.time() - t0)


def cell(text: str, width: int = 180) -> str:
    text = text if len(text) <= width else text[: width - 1] + "…"
    return text.replace("|", "\\|").replace("\n", " ")


def table(rows: list[Row]) -> str:
    lines = ["| # | case | exit | first line of message | verdict |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.case.number} | {cell(r.case.name)} | {r.exit} | `{cell(r.message)}` | {r.verdict} |"
                     .replace("``", ""))
    return "\n".join(lines)


def counts(rows: list[Row]) -> str:
    tally = {}
    for r in rows:
        key = "not run here" if r.verdict.startswith("not run") else r.verdict
        tally[key] = tally.get(key, 0) + 1
    order = [*VERDICTS, "not run here"]
    return ", ".join(f"{tally[k]} {k}" for k in sorted(tally, key=lambda k: order.index(k) if k in order else 99))


def report(rows: list[Row], seconds: float, when: str) -> str:
    failed = [r for r in rows if r.verdict != HELD and not r.verdict.startswith("not run")]
    parts = [f"# Issues 24 and 32: the hostile-user table, re-run\n",
             f"`python bench/hostile.py` on {when}: {len(rows)} cases in {seconds / 60:.1f} min "
             f"(2 shared CPU cores, no GPU). **{counts(rows)}.**\n",
             "Every verdict is computed by the script (bench/hostile.py says what each case calls held); "
             "`$T` is the run's temporary folder.\n", table(rows), ""]
    if failed:
        parts.append("## Cases that did not hold\n")
        for r in failed:
            parts.append(f"- **{r.case.number}. {r.case.name}** — {r.verdict}, exit {r.exit}"
                         + (f" ({r.why})" if r.why else "") + f"\n  `{r.command}`\n  → `{r.message}`")
    return "\n".join(parts) + "\n"


def parse_only(text: str) -> list[int]:
    numbers = []
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        numbers += list(range(int(lo), int(hi or lo) + 1))
    if not numbers or not all(1 <= n <= len(CASES) for n in numbers):
        raise argparse.ArgumentTypeError(f"must be case numbers from 1 to {len(CASES)} (e.g. 1,5,30-33), got {text!r}")
    return numbers


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", type=parse_only, help="run only these cases, e.g. 1,5,30-33 (see --list)")
    parser.add_argument("--list", action="store_true", help="print the cases' numbers and names, run nothing")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per run before it counts as a hang")
    parser.add_argument("--table", type=Path, default=None,
                        help=f"where to write the table (default: {TABLE.relative_to(REPO_DIR)} for a full run, "
                             "nowhere with --only)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    args = parser.parse_args(argv)
    if args.list:
        for c in CASES:
            print(f"{c.number:3d}  [{GROUPS[c.group]}] {c.name}")
        return
    chosen = [c for c in CASES if args.only is None or c.number in args.only]
    target = args.table or (TABLE if args.only is None else None)
    if target is not None and not os.access(target.parent if target.parent.exists() else REPO_DIR, os.W_OK):
        raise SystemExit(f"error: cannot write {target}: pass --table PATH somewhere writable")
    root = Path(tempfile.mkdtemp(prefix="linnet-hostile-"))
    started, rows = time.time(), []
    try:
        ctx = Ctx(root, timeout=args.timeout)
        for c in chosen:
            row = run_case(ctx, c)
            rows.append(row)
            print(f"{c.number:3d}  {row.verdict:<20} exit {row.exit:<7} {row.seconds:5.1f} s  {c.name}", flush=True)
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    text = report(rows, time.time() - started, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    print("\n" + text)
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
