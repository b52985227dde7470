"""What grades a student's code, and the proof, after every run, that the student's process left it alone.

The lessons (0N_*.py, their notebooks), fast/, exercises/solutions/, house/ and the checker itself
(exercises/checker/, exercises/check.py) decide a verdict. Before the student's process starts, `Guarded.take`
lists them: every file of their folders (and of the repo's root and exercises/, with their __pycache__) with
its identity — device and inode, what the file IS, whatever name reaches it — and its bytes. The student's
process is handed the identities (`for_child`): student.py judges every file it opens or changes by them, so a
hard link, a symlink, /proc/self/fd/N or a path relative to a folder held open (dir_fd) is the same lesson.
After the process has ended, `Guarded.restore` compares every file and folder with the list: anything
changed, added or removed is put back and named, and the run is refused — the check behind the guards, for
whatever they could not see (a write through ctypes, say).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path

from exercises.checker import REPO_DIR
from exercises.checker.rules import FAST_DIR, INPUT_LESSONS, LESSON_NAME, SOLUTIONS_DIR

CHECKER_DIR = Path(__file__).resolve().parent
TREES = (CHECKER_DIR, SOLUTIONS_DIR, FAST_DIR, REPO_DIR / "house", REPO_DIR / "notebooks")   # all their folders
FOLDERS = (REPO_DIR, REPO_DIR / "__pycache__", REPO_DIR / "exercises", REPO_DIR / "exercises" / "__pycache__")
KEEP_BYTES = 8 << 20        # a bigger file (a checkpoint left in the repo's root) is compared by its stat only


def label(path: Path) -> str:
    """How a message names a guarded path: relative to the repo (its root is "the repo's folder")."""
    path = Path(path)
    return "the repo's folder" if path == REPO_DIR else str(path.relative_to(REPO_DIR))


def is_answer(path: Path, allowed: tuple) -> bool:
    """A file the student's process may not even read: a lesson's file (any extension), a solution, fast/
    (unless the exercise's inputs use them: `allowed`, rules.INPUT_LESSONS)."""
    if path.is_relative_to(SOLUTIONS_DIR):
        return True
    if path.is_relative_to(FAST_DIR):
        return FAST_DIR.name not in allowed
    lesson = LESSON_NAME.match(path.name)
    return lesson is not None and not any(path.name.startswith(name + ".") for name in allowed)


class Guarded:
    """The guarded folders and files as they were before a run: `take()`, then `restore()` after it."""

    def __init__(self):
        self.folders: dict[Path, set[str]] = {}      # folder -> the names in it
        self.files: dict[Path, tuple] = {}           # file -> (signature, bytes or None)
        self.links: dict[Path, str] = {}             # symlink -> its target
        self.ids: dict[Path, tuple[int, int]] = {}   # file or folder -> (device, inode)

    @classmethod
    def take(cls) -> "Guarded":
        guarded = cls()
        folders = [f for f in FOLDERS if f.is_dir()]
        for tree in TREES:
            if tree.is_dir():
                folders += [Path(root) for root, _, _ in os.walk(tree)]
        for folder in folders:
            guarded.ids[folder] = identity(os.stat(folder))
            guarded.folders[folder] = set(os.listdir(folder))
            for name in guarded.folders[folder]:
                guarded.note(folder / name)
        return guarded

    def note(self, path: Path) -> None:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            self.links[path] = os.readlink(path)
            try:
                st = os.stat(path)
            except OSError:
                return
            self.ids[path] = identity(st)
        elif stat.S_ISREG(st.st_mode):
            self.ids[path] = identity(st)
            data = path.read_bytes() if st.st_size <= KEEP_BYTES else None
            self.files[path] = (signature(st, data), data)

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

    def restore(self) -> tuple[list[str], bool]:
        """Put back every guarded file and folder the run changed. Returns what was changed ("changed
        exercises/checker/run.py", "added …", "removed …"; empty: nothing) and whether all of it was put back."""
        changes, all_back = [], True
        for folder in self.folders:                  # parents first (os.walk's order)
            for what, path, undo in self.differences(folder):
                try:
                    done = undo(path)
                except OSError:
                    done = False
                changes.append(f"{what} {label(path)}")
                all_back = all_back and done
        return list(dict.fromkeys(changes)), all_back

    def differences(self, folder: Path):
        """(what, path, how to put it back) for each way `folder` differs from its record."""
        if not folder.is_dir() or folder.is_symlink():
            yield "removed", folder, put_folder_back
        now = set(os.listdir(folder)) if folder.is_dir() else set()
        for name in sorted(now - self.folders[folder]):
            yield "added", folder / name, remove
        for name in sorted(self.folders[folder]):
            path = folder / name
            if path in self.links:
                if name in now and os.path.islink(path) and os.readlink(path) == self.links[path]:
                    continue
                yield ("changed" if name in now else "removed"), path, self.put_link_back
            elif path in self.files:
                if name in now and self.unchanged(path):
                    continue
                yield ("changed" if name in now else "removed"), path, self.put_file_back
            elif name not in now and path not in self.folders:   # a folder nothing grades by (out/, tests/)
                yield "removed", path, lambda p: False

    def unchanged(self, path: Path) -> bool:
        recorded, data = self.files[path]
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or (data is not None and st.st_size != len(data)):
            return False
        return signature(st, path.read_bytes() if data is not None else None) == recorded

    def put_file_back(self, path: Path) -> bool:
        recorded, data = self.files[path]
        if data is None:                             # too big to have been kept
            return False
        remove(path)
        path.write_bytes(data)
        os.chmod(path, recorded[0])
        return True

    def put_link_back(self, path: Path) -> bool:
        remove(path)
        os.symlink(self.links[path], path)
        return True


def identity(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


def signature(st: os.stat_result, data: bytes | None) -> tuple:
    """What must not change: the mode, the number of hard links, and the bytes (for a big file: size and mtime)."""
    content = hashlib.sha256(data).hexdigest() if data is not None else (st.st_size, st.st_mtime_ns)
    return (stat.S_IMODE(st.st_mode), st.st_nlink, content)


def remove(path: Path) -> bool:
    """Remove whatever is at `path` (a file, a link, a folder and all in it); nothing there is fine."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, onerror=lambda fn, p, exc: (os.chmod(os.path.dirname(p), 0o700), fn(p)))
    elif os.path.lexists(path):
        os.unlink(path)
    return True


def put_folder_back(path: Path) -> bool:
    remove(path)
    path.mkdir(parents=True)
    return True
