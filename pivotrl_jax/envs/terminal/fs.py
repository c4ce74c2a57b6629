"""An in-memory filesystem: absolute paths, directories and text files, a working directory.

Nothing here touches the host: paths are strings, files are `str` contents in a dict.

>>> fs = VirtualFS.empty()
>>> fs.mkdir("/home/user/logs", parents=True)
>>> fs.write("/home/user/logs/a.log", "x\\n")
>>> fs.listdir("/home/user/logs")
['a.log']
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass, field

HOME = "/home/user"
MAX_ENTRIES = 4000  # files + directories: a bound on what a runaway policy can build
MAX_FILE_CHARS = 20_000


class FsError(Exception):
    """A failed filesystem operation; the message is the shell's wording without the prefix."""


def parent(path: str) -> str:
    return posixpath.dirname(path) or "/"


@dataclass
class VirtualFS:
    """Directories (`dirs`, always containing every ancestor) and files (path -> text)."""

    dirs: set[str] = field(default_factory=lambda: {"/"})
    files: dict[str, str] = field(default_factory=dict)
    cwd: str = "/"

    @classmethod
    def empty(cls, home: str = HOME) -> VirtualFS:
        fs = cls()
        fs.mkdir(home, parents=True)
        fs.cwd = home
        return fs

    def copy(self) -> VirtualFS:
        return VirtualFS(dirs=set(self.dirs), files=dict(self.files), cwd=self.cwd)

    # -- paths -------------------------------------------------------------------------------

    def resolve(self, path: str) -> str:
        """Absolute normalised path (`~` is home; `..` above `/` stays at `/`)."""
        if path == "~" or path.startswith("~/"):
            path = HOME + path[1:]
        joined = path if path.startswith("/") else posixpath.join(self.cwd, path)
        parts: list[str] = []
        for part in joined.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if parts:
                    parts.pop()
            else:
                parts.append(part)
        return "/" + "/".join(parts)

    def exists(self, path: str) -> bool:
        return path in self.dirs or path in self.files

    def is_dir(self, path: str) -> bool:
        return path in self.dirs

    def is_file(self, path: str) -> bool:
        return path in self.files

    def listdir(self, path: str) -> list[str]:
        """Sorted names directly inside directory `path`."""
        prefix = path.rstrip("/") + "/"
        names = {
            p[len(prefix) :]
            for p in (*self.dirs, *self.files)
            if p.startswith(prefix) and "/" not in p[len(prefix) :] and p != prefix
        }
        return sorted(names)

    def walk(self, path: str) -> list[str]:
        """`path` and every path below it, depth first, names in sorted order (like `find`):
        sorting by components puts a directory right before its contents."""
        if not self.is_dir(path):
            return [path]
        prefix = path.rstrip("/") + "/"
        below = [p for p in (*self.dirs, *self.files) if p.startswith(prefix) and p != prefix]
        return [path, *sorted(below, key=lambda p: p.split("/"))]

    # -- changes -----------------------------------------------------------------------------

    def _room(self, entries: int, chars: int = 0) -> None:
        if len(self.dirs) + len(self.files) + entries > MAX_ENTRIES or chars > MAX_FILE_CHARS:
            raise FsError("No space left on device")

    def mkdir(self, path: str, parents: bool = False) -> None:
        if self.is_dir(path):
            if parents:
                return
            raise FsError("File exists")
        if self.is_file(path):
            raise FsError("File exists")
        missing = [path]  # path and its missing ancestors, deepest first (no recursion: a
        while not self.is_dir(up := parent(missing[-1])):  # path may be thousands deep)
            if not parents:
                raise FsError("No such file or directory")
            if self.is_file(up):
                raise FsError("Not a directory")
            missing.append(up)
        self._room(len(missing))
        self.dirs.update(missing)

    def write(self, path: str, text: str, append: bool = False) -> None:
        if self.is_dir(path):
            raise FsError("Is a directory")
        if not self.is_dir(parent(path)):
            raise FsError("No such file or directory")
        new = (self.files.get(path, "") if append else "") + text
        self._room(0 if path in self.files else 1, len(new))
        self.files[path] = new

    def read(self, path: str) -> str:
        if self.is_dir(path):
            raise FsError("Is a directory")
        if path not in self.files:
            raise FsError("No such file or directory")
        return self.files[path]

    def remove(self, path: str) -> None:
        """Remove a file or a whole directory tree."""
        for p in self.walk(path):
            self.dirs.discard(p)
            self.files.pop(p, None)

    def copy_tree(self, src: str, dst: str) -> None:
        """Copy file or directory `src` to the new path `dst`."""
        tree = self.walk(src)
        self._room(len(tree))
        for p in tree:
            q = dst + p[len(src) :]
            if self.is_dir(p):
                self.dirs.add(q)
            else:
                self.files[q] = self.files[p]

    # -- comparison --------------------------------------------------------------------------

    def tree(self) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
        """(sorted dirs, sorted (path, text) files): the content, without the working dir."""
        return tuple(sorted(self.dirs)), tuple(sorted(self.files.items()))

    def digest(self) -> str:
        """sha256 of the tree and the working directory."""
        h = hashlib.sha256()
        dirs, files = self.tree()
        for d in dirs:
            h.update(b"d\0" + d.encode() + b"\0")
        for p, text in files:
            h.update(b"f\0" + p.encode() + b"\0" + text.encode() + b"\0")
        h.update(b"cwd\0" + self.cwd.encode())
        return h.hexdigest()
