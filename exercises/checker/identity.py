"""Inside the student's process: judging a file by what it IS — its identity (device, inode) — not by its name.

`make_judge(guarded)` takes the identities guarded.py listed in the checker's process and returns
`judge(event, args)`, which the audit hook of student.py asks about every event that opens, links, moves,
removes or changes a file. A hard link, a symlink, /proc/self/fd/N or /proc/PID/cwd/... reach the same
identity as the lesson's own name. An `open` event does not say which folder a relative path starts from
(os.open(..., dir_fd=...)), so such a path is tried from the working folder AND from every folder the
process holds open. A path given as an object that could name one file to the hook and another to the
open itself (a PathLike of the student's making) is refused. Everything the judge uses is bound when it is
made: rebinding os.stat, isinstance or a module's globals afterwards changes nothing it sees.
"""
from __future__ import annotations

import os
import pathlib
import types

from exercises.checker.rules import CHANGE_REFUSAL, REFUSAL

WRITING = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
# event: (the index of its path, of its dir_fd, the verb of a message, the preposition before the folder)
ENTRY_EVENTS = {"os.remove": (0, 1, "removes", "from"), "os.rmdir": (0, 1, "removes", "from"),
                "os.mkdir": (0, 2, "adds", "to"), "os.mkfifo": (0, 2, "adds", "to"), "os.mknod": (0, 3, "adds", "to")}
CHANGE_EVENTS = {"os.truncate": (0, None, "truncates"), "os.chmod": (0, 2, "changes the mode of"),
                 "os.chown": (0, 3, "changes the owner of"), "os.utime": (0, 3, "changes the times of"),
                 "os.chflags": (0, None, "changes the flags of"), "os.setxattr": (0, None, "changes the attributes of"),
                 "os.removexattr": (0, None, "changes the attributes of")}
JUDGED = frozenset({"open", "os.link", "os.symlink", "os.rename", "exec", "compile", *ENTRY_EVENTS, *CHANGE_EVENTS})
TRUSTED_PATHS = (pathlib.PurePosixPath, pathlib.PosixPath, pathlib.PureWindowsPath, os.DirEntry)   # exact types


def make_judge(guarded: dict):
    """judge(event, args) -> why the event reaches what grades the student (one sentence), or None."""
    stat, fstat, listdir, fspath = os.stat, os.fstat, os.listdir, os.fspath
    type_, issubclass_, int_, str_, bytes_, frozenset_ = type, issubclass, int, str, bytes, frozenset
    getattr_, hasattr_ = getattr, hasattr
    tables = {kind: types.MappingProxyType({(dev, ino): name for dev, ino, name in guarded.get(kind, ())})
              for kind in ("read", "write", "dirs", "output")}
    read, write, dirs, output = tables["read"], tables["write"], tables["dirs"], tables["output"]
    fd_folder = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"
    unknown = object()                     # an `open` event's dir_fd
    trusted = frozenset_(TRUSTED_PATHS)

    def plain(path):
        """`path` as an int, str or bytes; None for an object whose path could differ from one look to the next."""
        kind = type_(path)
        if issubclass_(kind, (int_, str_, bytes_)):   # a subclass: the C code reads its value, as the judge does
            return path
        return fspath(path) if kind in trusted else None

    def identity(path, dir_fd=None):
        try:
            st = (fstat(path) if issubclass_(type_(path), int_) else
                  stat(path) if dir_fd is None else stat(path, dir_fd=dir_fd))
        except (OSError, TypeError, ValueError, OverflowError):
            return None
        return (st.st_dev, st.st_ino)

    def folders_held():
        try:
            fds = [int_(fd) for fd in listdir(fd_folder)]
        except (OSError, ValueError):
            fds = range(1024)
        held = []
        for fd in fds:
            try:
                if fstat(fd).st_mode & 0o170000 == 0o040000:
                    held.append(fd)
            except OSError:
                pass
        return held

    def parent(path):
        kind = str_ if issubclass_(type_(path), str_) else bytes_
        sep, here = ("/", ".") if kind is str_ else (b"/", b".")
        path = kind.rstrip(path, sep) or sep
        return kind.rpartition(path, sep)[0] or (sep if kind.startswith(path, sep) else here)

    def absolute(path):
        kind = str_ if issubclass_(type_(path), str_) else bytes_
        return kind.startswith(path, "/" if kind is str_ else b"/")

    def look(path, dir_fd):
        """[(identity of path, identity of its folder)] from every place `path` may resolve from."""
        if issubclass_(type_(path), int_):
            return [(identity(path), None)]
        if absolute(path):
            starts = [None]
        elif dir_fd is unknown:
            starts = [None] + folders_held()
        else:
            starts = [dir_fd if issubclass_(type_(dir_fd), int_) and dir_fd >= 0 else None]
        return [(identity(path, fd), identity(parent(path), fd)) for fd in starts]

    def first(table, found, which):
        for pair in found:
            if pair[which] is not None and pair[which] in table:
                return table[pair[which]]
        return None

    def judge(event, args):
        if event not in JUDGED:
            return None
        if event in ("exec", "compile"):
            filename = getattr_(args[0], "co_filename", None) if event == "exec" else args[1]
            if not issubclass_(type_(filename), (str_, bytes_)):
                return None
            name = first(read, look(filename, None), 0)
            return name and f"your code {'runs the code of' if event == 'exec' else 'compiles'} {filename}, which " \
                            f"is {name}: " + REFUSAL
        given = [args[0]] + ([args[1]] if event in ("os.link", "os.symlink", "os.rename") else [])
        paths = [plain(path) for path in given]
        for path, was in zip(paths, given):
            if path is None and hasattr_(type_(was), "__fspath__"):
                return (f"your code names a file by a {type_(was).__name__} object: give a path as a str, bytes or "
                        "pathlib.Path (a path that could name another file at the next look is not judged)")
        if None in paths:
            return None                       # not a path at all: the call itself will say so
        if event == "open":
            return judge_open(paths[0], args[2])
        if event in ENTRY_EVENTS:
            _, fd_at, verb, to = ENTRY_EVENTS[event]
            folder = first(dirs, look(paths[0], args[fd_at] if len(args) > fd_at else None), 1)
            return folder and f"your code {verb} {paths[0]} {to} {folder}: " + CHANGE_REFUSAL
        if event in CHANGE_EVENTS:
            _, fd_at, verb = CHANGE_EVENTS[event]
            found = look(paths[0], args[fd_at] if fd_at is not None and len(args) > fd_at else None)
            name = first(write, found, 0) or first(dirs, found, 0)
            return name and f"your code {verb} {paths[0]}{which(paths[0], name)}: " + CHANGE_REFUSAL
        return judge_two(event, paths, args)

    def judge_open(path, flags):
        found = look(path, unknown)
        name = first(read, found, 0)
        if name:
            return f"your code opens {path}{which(path, name)}: " + REFUSAL
        if not (issubclass_(type_(flags), int_) and flags & WRITING):
            return None
        name = first(output, found, 0)
        if name:
            return (f"your code writes to {name} ({path}): what your code prints is shown after the verdict, "
                    "marked as its own")
        name = first(write, found, 0)
        folder = first(dirs, found, 1)
        return ((name or folder) and f"your code writes {path}{which(path, name) if name else f' in {folder}'}: "
                + CHANGE_REFUSAL)

    def judge_two(event, paths, args):
        """os.link (src, dst, src_dir_fd, dst_dir_fd), os.rename (the same) and os.symlink (src, dst, dir_fd)."""
        src, dst = paths
        dst_found = look(dst, args[2] if event == "os.symlink" else args[3])
        name, folder = first(write, dst_found, 0), first(dirs, dst_found, 1)
        if name or folder:
            return (f"your code replaces {dst}{which(dst, name)}: " if name else
                    f"your code adds {dst} to {folder}: ") + CHANGE_REFUSAL
        if event == "os.rename":
            src_found = look(src, args[2])       # a file out of a guarded folder, or a guarded folder itself
            folder = first(dirs, src_found, 1) or first(dirs, src_found, 0)
            return folder and f"your code moves {src} out of {folder}: " + CHANGE_REFUSAL
        if event == "os.symlink":             # the target of a relative link starts from the link's folder
            try:
                src = src if absolute(src) else parent(dst) + ("/" if issubclass_(type_(dst), str_) else b"/") + src
            except TypeError:
                return None
        found = look(src, args[2])
        name, why = first(read, found, 0), REFUSAL
        if not name:
            name, why = first(write, found, 0), CHANGE_REFUSAL
        kind = "hard" if event == "os.link" else "symbolic"
        return name and f"your code makes a {kind} link to {src}{which(src, name)}: " + why

    def which(path, name):
        shown = os.fsdecode(path) if not issubclass_(type_(path), int_) else ""
        return "" if shown.endswith(name) else f", which is {name}"

    return judge
