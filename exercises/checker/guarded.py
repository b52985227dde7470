"""What grades a student's code, and the proof, after every run, that nothing changed it meanwhile.

The lessons (0N_*.py, their notebooks), fast/, exercises/solutions/, house/ and the checker itself
(exercises/checker/, exercises/check.py) decide a verdict. Before the student's process starts, `Guarded.take`
lists them: every file of their folders (and every name in the repo's root and exercises/, with their
__pycache__) with its identity — device and inode, what the file IS, whatever name reaches it — and, for what
counts below, its bytes. The student's process is handed the identities (`for_child`): student.py judges
every file it opens or changes by them, so a hard link, a symlink, /proc/self/fd/N or a path relative to a
folder held open (dir_fd) is the same lesson, and it may write nowhere in those folders.

After the process has ended, `Guarded.restore` compares them with the list: the check behind the guards, for
whatever they could not see (a write through ctypes). It cannot tell who made a change — the student's code,
or an editor saving a lesson, `python 05_train.py` in another terminal, git — so it counts only what could
change the verdict of this check or of the next, and it destroys nothing:

- counted when changed or removed: every file of the graded folders (exercises/checker/, exercises/solutions/,
  fast/, house/, notebooks/); in the repo's root and exercises/, which are on the next checker's import path,
  what Python's import finds there — a module file (NAME.py, NAME.pyc, NAME.so: a suffix of
  importlib.machinery.all_suffixes(), NAME without a dot; the lessons, check.py), a .pth — and every file of a
  __pycache__ folder;
- counted when added, in any of those folders: a module file, a folder (NAME without a dot) holding one — a
  package (__init__.py) or a namespace package's modules —, anything in a __pycache__ folder, and a folder
  nothing grades by (docs/, out/) that comes to hold one (only what made it one counts: its __init__, or its
  modules if it held none). Anything else added — out/, data/, wandb/, a log, an editor's swap or backup
  file, .ipynb_checkpoints/ — is left alone and refuses nothing: no import finds it, since a folder without a
  module shadows nothing (a module of its name anywhere on the path comes first);
- never counted: a name that starts with a dot and all in such a folder (no import finds them), and the
  student's own files, exercises/NAME.py of each exercise and their .pyc (see `own`).

A change that counts refuses the run and is put back, and whatever putting it back would overwrite or remove
(a changed file's new bytes, an added file or folder) is first moved to a folder of its own outside the repo
(tempfile.mkdtemp), which the refusal names (`refusal`): an edit saved during a check is not lost, and a
cheat's change does not stand for the next run.
"""
from __future__ import annotations

import hashlib
import importlib.machinery
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

from exercises.checker import REPO_DIR
from exercises.checker.rules import CASES_DIR, CHANGE_REFUSAL, FAST_DIR, INPUT_LESSONS, LESSON_NAME, SOLUTIONS_DIR

CHECKER_DIR = Path(__file__).resolve().parent
EXERCISES_DIR = REPO_DIR / "exercises"
TREES = (CHECKER_DIR, SOLUTIONS_DIR, FAST_DIR, REPO_DIR / "house", REPO_DIR / "notebooks")   # all their folders
FOLDERS = (REPO_DIR, REPO_DIR / "__pycache__", EXERCISES_DIR, EXERCISES_DIR / "__pycache__")   # their names only
MODULE_SUFFIXES = tuple(importlib.machinery.all_suffixes())     # .py, .pyc, .cpython-312-x86_64-linux-gnu.so, ...
KEEP_BYTES = 8 << 20        # a bigger file is compared by its stat only (and cannot be put back)
LISTED = 12                 # the changes a refusal lists one a line


def label(path: Path) -> str:
    """How a message names a guarded path: relative to the repo (its root is "the repo's folder")."""
    path = Path(path)
    return "the repo's folder" if path == REPO_DIR else str(path.relative_to(REPO_DIR))


def is_answer(path: Path, allowed: tuple) -> bool:
    """A file the student's process may not even read: a lesson's file (any extension), a solution, a handout's
    stored cases, fast/ (unless the exercise's inputs use them: `allowed`, rules.INPUT_LESSONS)."""
    if path.is_relative_to(SOLUTIONS_DIR) or path.is_relative_to(CASES_DIR):
        return True
    if path.is_relative_to(FAST_DIR):
        return FAST_DIR.name not in allowed
    lesson = LESSON_NAME.match(path.name)
    return lesson is not None and not any(path.name.startswith(name + ".") for name in allowed)


def module_file(name: str) -> bool:
    """A name that Python's import finds as a module in a folder on its path (`import NAME`), or a .pth (were
    the folder ever a site folder, each would run at start-up)."""
    if name.endswith(".pth"):
        return not name.startswith(".")
    return any(name.endswith(suffix) and name[:-len(suffix)] and "." not in name[:-len(suffix)]
               for suffix in MODULE_SUFFIXES)


def module_folder(path: Path) -> int:
    """2: a package (an __init__ module in it), 1: a folder of a namespace package's modules, 0: neither (a
    folder of no module, a dotted name import cannot reach, not a folder at all)."""
    if "." in path.name:
        return 0
    try:
        modules = [name for name in os.listdir(path) if module_file(name)]
    except OSError:
        return 0
    return 2 if any(name.startswith("__init__.") for name in modules) else 1 if modules else 0


def hidden(path: Path) -> bool:
    """A name that starts with a dot, or anything in such a folder (of the repo): no import finds it."""
    return any(part.startswith(".") for part in path.relative_to(REPO_DIR).parts)


class Guarded:
    """The guarded folders and files as they were before a run: `take()`, then `restore()` after it."""

    def __init__(self, exercises=()):
        self.exercises = frozenset(exercises)        # the exercises' names: whose files are the student's
        self.folders: dict[Path, set[str]] = {}      # folder -> the names in it
        self.files: dict[Path, tuple] = {}           # file that counts -> (signature, bytes or None)
        self.links: dict[Path, str] = {}             # symlink that counts -> its target
        self.ids: dict[Path, tuple[int, int]] = {}   # file or folder -> (device, inode)
        self.kinds: dict[Path, int] = {}             # a name in the root, exercises/ grading nothing: its kind
        self.kept: Path | None = None                # where what a put-back replaced is kept (made when first needed)
        self.last_kept: Path | None = None           # where the change being put back went

    @classmethod
    def take(cls, exercises=()) -> "Guarded":
        """The list, before a run; `exercises`: the names of the exercises (exercises/NAME.py is the student's)."""
        guarded = cls(exercises)
        folders = [f for f in FOLDERS if f.is_dir()]
        for tree in TREES:
            if tree.is_dir():
                folders += [Path(root) for root, _, _ in os.walk(tree)]
        for folder in folders:
            try:
                guarded.ids[folder], guarded.folders[folder] = identity(os.stat(folder)), set(os.listdir(folder))
            except (FileNotFoundError, NotADirectoryError):   # removed meanwhile, by another program
                pass
        for folder in guarded.folders:
            for name in guarded.folders[folder]:
                try:
                    guarded.note(folder / name)
                except FileNotFoundError:            # an editor's temporary file, there a moment ago
                    pass
        return guarded

    def own(self, path: Path) -> bool:
        """The student's own files: exercises/NAME.py of an exercise and its .pyc. A change to one is never
        counted, even to ANOTHER exercise's file by the student's code (the guards refuse that write at run
        time; one through ctypes gains nothing): it is the student's own code, read by rules.py and run in a
        process of its own when its turn comes, as whatever bytes it then holds."""
        if path.parent == EXERCISES_DIR:
            return path.suffix == ".py" and path.stem in self.exercises
        return path.parent == EXERCISES_DIR / "__pycache__" and path.name.split(".")[0] in self.exercises

    def counts(self, path: Path) -> bool:
        """Whether a change to `path`, listed before the run, counts (the module's docstring)."""
        if self.own(path) or hidden(path):
            return False
        return path.parent not in FOLDERS or path.parent.name == "__pycache__" or module_file(path.name)

    def counts_added(self, path: Path) -> bool:
        """Whether `path`, added during the run, counts (the module's docstring)."""
        if self.own(path) or hidden(path):
            return False
        return ("__pycache__" in (path.name, path.parent.name) or module_file(path.name)
                or module_folder(path) > 0)

    def note(self, path: Path) -> None:
        st = os.lstat(path)
        counts = self.counts(path)
        if path.parent in FOLDERS and not counts and path not in self.folders:
            self.kinds[path] = module_folder(path)
        if stat.S_ISLNK(st.st_mode):
            if counts:
                self.links[path] = os.readlink(path)
            try:
                st = os.stat(path)
            except OSError:
                return
            self.ids[path] = identity(st)
        elif stat.S_ISREG(st.st_mode):
            self.ids[path] = identity(st)
            if counts:
                self.files[path] = steady(path, st)

    def for_child(self, name: str, output_fds=(0, 1, 2)) -> dict:
        """The identities the student's process judges files by, each with the name a message gives it:
        "read" (the answers: not even to be read), "write" (every guarded file), "dirs" (every guarded
        folder) and "output" (the checker's own stdout and stderr: a pipe, a file or a terminal)."""
        allowed = INPUT_LESSONS.get(name, ())
        files = [p for p in self.ids if p not in self.folders]
        table = {"read": [(*self.ids[p], label(p)) for p in files if is_answer(p, allowed)],
                 "write": [(*self.ids[p], label(p)) for p in files],
                 "dirs": [(*self.ids[p], label(p)) for p in self.folders], "output": []}
        for fd in output_fds:
            try:
                st = os.fstat(fd)
            except OSError:
                continue
            if not stat.S_ISCHR(st.st_mode) or os.isatty(fd):      # /dev/null is nobody's output
                table["output"].append((*identity(st), "the checker's own output"))
        return table

    def restore(self) -> list[tuple[str, Path, Path | None, bool]]:
        """Put back every change that counts. Returns them, each (what: "changed", "added" or "removed", the
        path, where what was there is now kept or None, whether it was put back); empty: nothing changed."""
        changes = []
        for folder in self.folders:                  # parents first (os.walk's order)
            if hidden(folder):
                continue
            for what, path, undo in self.differences(folder):
                self.last_kept = None
                try:
                    done = undo(path)
                except OSError:
                    done = False
                if path not in [change[1] for change in changes]:
                    changes.append((what, path, self.last_kept, done))
        return changes

    def differences(self, folder: Path):
        """(what, path, how to put it back) for each way `folder` differs from its record that counts."""
        if not folder.is_dir() or folder.is_symlink():
            yield "removed", folder, self.put_folder_back
        now = names_in(folder)
        for name in sorted(now - self.folders[folder]):
            if self.counts_added(folder / name):
                yield "added", folder / name, self.move_away
        for name in sorted(self.folders[folder]):
            path = folder / name
            if path in self.links:
                if name in now and os.path.islink(path) and readlink(path) == self.links[path]:
                    continue
                yield ("changed" if name in now else "removed"), path, self.put_link_back
            elif path in self.files:
                if name in now and self.unchanged(path):
                    continue
                yield ("changed" if name in now else "removed"), path, self.put_file_back
            elif path in self.kinds and name in now and module_folder(path) > self.kinds[path]:
                if os.path.islink(path):             # a name nothing grades by, now a link to a package
                    yield "changed", path, self.move_away
                    continue
                for module in sorted(names_in(path)):        # what made it a package (or a folder of modules)
                    if module_file(module) and (self.kinds[path] == 0 or module.startswith("__init__.")):
                        yield "added", path / module, self.move_away

    def unchanged(self, path: Path) -> bool:
        recorded, data = self.files[path]
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or (data is not None and st.st_size != len(data)):
                return False
            return signature(st, path.read_bytes() if data is not None else None) == recorded
        except OSError:                              # removed meanwhile, unreadable
            return False

    def holds_record(self, path: Path) -> bool:
        """`path` is a file with the bytes recorded for it (its mode or links may differ): nothing to keep."""
        data = self.files.get(path, (None, None))[1]
        try:
            return data is not None and os.path.isfile(path) and not os.path.islink(path) and \
                os.path.getsize(path) == len(data) and path.read_bytes() == data
        except OSError:
            return False

    def move_away(self, path: Path) -> bool:
        """Clear `path`: whatever is there (a file, a link, a folder and all in it) is moved to the kept folder,
        outside the repo — unless it holds nothing to lose (nothing at all; the recorded bytes)."""
        if not os.path.lexists(path):
            return True
        if self.holds_record(path):
            return remove(path)
        for where in (None, Path.home() / ".cache"):
            try:
                if where is not None:                # the temporary folder is full or not writable: the home's
                    where.mkdir(parents=True, exist_ok=True)
                    self.kept = None
                if self.kept is None:
                    self.kept = Path(tempfile.mkdtemp(prefix="linnet-check-kept-", dir=where))
                kept = base = self.kept / path.relative_to(REPO_DIR)
                for n in range(2, 1000):             # kept before (written again during the put-back): a new name
                    if not os.path.lexists(kept):
                        break
                    kept = base.with_name(f"{base.name}.{n}")
                kept.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(path, kept, copy_function=copy_data)   # one file system: a rename; else copied, removed
            except OSError:
                continue
            self.last_kept = self.last_kept or (kept if os.path.lexists(kept) else None)
            return True
        return remove(path)       # it could not be kept anywhere (unreadable): it goes, or the change would stand

    def put_file_back(self, path: Path) -> bool:
        recorded, data = self.files[path]
        if data is None:                             # too big to have been kept: left as it is
            return False
        for _ in range(3):
            self.move_away(path)
            try:                                     # O_EXCL: a file written there since is not overwritten
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue                             # ... but kept, at the next turn
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(path, recorded[0])
            return True
        return False

    def put_link_back(self, path: Path) -> bool:
        self.move_away(path)
        os.symlink(self.links[path], path)
        return True

    def put_folder_back(self, path: Path) -> bool:
        self.move_away(path)
        path.mkdir(parents=True)
        return True


def refusal(name: str, changes: list[tuple[str, Path, Path | None, bool]]) -> str:
    """The verdict of a run during which something that counts changed: one line, then one indented line a
    change (where what was there is kept, outside the repo)."""
    what, path, _, _ = changes[0]
    more = f" (and {len(changes) - 1} more)" if len(changes) > 1 else ""
    back = "it was put back" if all(done for *_, done in changes) else "not all of it could be put back"
    lines = [f"refused: {name} — {label(path)} was {what}{more} while your code ran: {CHANGE_REFUSAL}; {back}"]
    for what, path, kept, done in changes[:LISTED]:
        lines.append(f"  {what} {label(path)}" + (f" — kept at {kept}" if kept else "")
                     + ("" if done else " — not put back"))
    if len(changes) > LISTED:
        lines.append(f"  … and {len(changes) - LISTED} more")
    if any(kept for _, _, kept, _ in changes):
        lines.append("  nothing is lost: what was there is kept at the paths above, outside the repo; if an editor or "
                     "another program of yours made the change, copy it back and check again once it is done")
    return "\n".join(lines)


def steady(path: Path, st: os.stat_result) -> tuple:
    """(signature, bytes or None) of a file, read again while another program is writing it (its identity,
    size or time changing under the read): what is recorded is a whole file, not half of a save."""
    for _ in range(50):
        data = path.read_bytes() if st.st_size <= KEEP_BYTES else None
        then, st = st, os.lstat(path)
        if (then.st_ino, then.st_size, then.st_mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns) and \
                (data is None or len(data) == st.st_size):
            break
        time.sleep(0.01)
    return signature(st, data), data


def names_in(folder: Path) -> set[str]:
    try:
        return set(os.listdir(folder))
    except OSError:                                  # not a folder (any more)
        return set()


def readlink(path: Path) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def identity(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


def signature(st: os.stat_result, data: bytes | None) -> tuple:
    """What must not change: the mode, the number of hard links, and the bytes (for a big file: size and mtime)."""
    content = hashlib.sha256(data).hexdigest() if data is not None else (st.st_size, st.st_mtime_ns)
    return (stat.S_IMODE(st.st_mode), st.st_nlink, content)


def copy_data(src: str, dst: str) -> None:
    """shutil.copy2 of what holds bytes: a pipe, a socket or a device is not copied (they hold none)."""
    if stat.S_ISREG(os.stat(src).st_mode):
        shutil.copy2(src, dst)


def remove(path: Path) -> bool:
    """Remove whatever is at `path` (a file, a link, a folder and all in it); nothing there is fine."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, onerror=lambda fn, p, exc: (os.chmod(os.path.dirname(p), 0o700), fn(p)))
    elif os.path.lexists(path):
        os.unlink(path)
    return True

