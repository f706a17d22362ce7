"""Finding the files of a folder, and the ids documents get from their paths.

Links are followed only inside the folder (unless allowed), each folder is walked once, and
whatever cannot be walked or read is reported with a reason rather than silently dropped.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Characters never written literally in a doc id: "%" (the escape character itself),
# control characters (a newline breaks URLs and routes) and line/paragraph separators.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs"})
FOLLOW_SETTING = "PARACITE_FOLLOW_EXTERNAL_LINKS"


@dataclass(frozen=True, slots=True)
class SkippedPath:
    """A file or folder found but not indexable, with its id (folders end in "/")."""

    path_id: str
    reason: str


@dataclass(slots=True)
class Discovery:
    """The files to read under a folder, sorted, and what was found but cannot be read."""

    files: list[Path] = field(default_factory=list)
    skipped: list[SkippedPath] = field(default_factory=list)


def safe_id(relative: str) -> str:
    """A relative path as a doc id: valid UTF-8 text without control characters.

    Bytes that are not UTF-8 (kept by `os` as surrogate escapes), control characters and
    "%" itself are percent-encoded (`%FF`, `%0A`, `%25`), so every file name gives one id,
    the same on every run, and no two names give the same id.
    """
    text = os.fsencode(relative).decode("utf-8", "surrogateescape")
    if text.isprintable() and "%" not in text:
        return text
    parts: list[str] = []
    for char in text:
        if char == "%" or unicodedata.category(char) in _ESCAPED_CATEGORIES:
            raw = char.encode("utf-8", "surrogateescape")
            parts.append("".join(f"%{byte:02X}" for byte in raw))
        else:
            parts.append(char)
    return "".join(parts)


def document_id(path: Path, root: Path) -> str:
    """The doc id of `path`: its POSIX path relative to `root`, made safe by `safe_id`."""
    try:
        relative = path.relative_to(root)
    except ValueError:
        relative = path.resolve().relative_to(root.resolve())
    return safe_id(relative.as_posix())


def readable_name(name: str) -> str:
    """A file name as display text: undecodable bytes become U+FFFD, control characters spaces."""
    text = os.fsencode(name).decode("utf-8", "replace")
    return "".join(" " if unicodedata.category(c) in _ESCAPED_CATEGORIES else c for c in text)


def discover_files(root: Path, exclude: Sequence[Path] = ()) -> list[Path]:
    """Every regular file under `root`, sorted, except hidden ones and those under `exclude`.

    Files of unsupported types are included so the caller can report them as skipped.
    """
    return find_files(root, exclude).files


def find_files(
    root: Path, exclude: Sequence[Path] = (), *, follow_external_links: bool = False
) -> Discovery:
    """The files under `root` (hidden ones and those under `exclude` left out) and the skips.

    Links whose target lies inside `root` are followed, file and folder alike; a link out of
    it only with `follow_external_links`. A folder reached twice (a link loop, or two links
    to one folder) is walked once. Broken links, loops, unreadable folders and special files
    (FIFOs, devices, sockets) are reported in `skipped` with their reason.
    """
    return _Walker(root, exclude, follow_external_links).run()


def _list_directory(directory: Path) -> list[os.DirEntry[str]]:
    """The entries of one folder (a seam for tests: as root, permissions cannot make it fail)."""
    with os.scandir(directory) as entries:
        return list(entries)


class _Walker:
    def __init__(self, root: Path, exclude: Sequence[Path], follow_external_links: bool) -> None:
        self.root = root
        self.real_root = root.resolve()
        self.excluded = {path.resolve() for path in exclude}
        self.follow_external = follow_external_links
        self.found = Discovery()
        # Every folder walked, by (device, inode), with the path it was walked under.
        self.walked: dict[tuple[int, int], Path] = {}
        self.folder_links: list[tuple[Path, Path]] = []  # (link, its target), walked last

    def run(self) -> Discovery:
        try:
            stat = self.root.stat()
        except OSError as error:
            self._skip(self.root, f"folder cannot be read: {_why(error)}", folder=True)
            return self.found
        self.walked[(stat.st_dev, stat.st_ino)] = self.root
        self._walk(self.root)
        # Linked folders come after every real one, so a link to a folder that is also
        # reached directly is the one left out, whatever the names sort like.
        while self.folder_links:
            links, self.folder_links = sorted(self.folder_links), []
            for link, target in links:
                self._walk_link(link, target)
        self.found.files.sort()
        self.found.skipped.sort(key=lambda skipped: skipped.path_id)
        return self.found

    def _walk(self, top: Path) -> None:
        pending = [top]
        while pending:
            directory = pending.pop()
            try:
                entries = _list_directory(directory)
            except OSError as error:
                self._skip(directory, f"folder cannot be read: {_why(error)}", folder=True)
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                path = directory / entry.name
                try:
                    subfolder = self._entry(entry, path)
                except OSError as error:
                    self._skip(path, f"cannot be read: {_why(error)}")
                    continue
                if subfolder is not None:
                    pending.append(subfolder)

    def _entry(self, entry: os.DirEntry[str], path: Path) -> Path | None:
        """Record one entry; return it if it is a folder to walk now."""
        if entry.is_symlink():
            self._link(path)
        elif entry.is_dir(follow_symlinks=False):
            if self.excluded and path.resolve() in self.excluded:
                return None
            stat = entry.stat(follow_symlinks=False)
            key = (stat.st_dev, stat.st_ino)
            if key not in self.walked:
                self.walked[key] = path
                return path
        elif entry.is_file(follow_symlinks=False):
            self.found.files.append(path)
        else:
            self._skip(path, "not a regular file")
        return None

    def _link(self, path: Path) -> None:
        try:
            target = path.resolve(strict=True)
        except FileNotFoundError:
            self._skip(path, "broken link: its target does not exist")
            return
        except RuntimeError:  # Path.resolve's report of a loop of links
            self._skip(path, "link loop: the link leads back to itself")
            return
        if any(target.is_relative_to(excluded) for excluded in self.excluded):
            return
        if not self.follow_external and not target.is_relative_to(self.real_root):
            self._skip(
                path,
                f"link to {target}, outside the indexed folder (set {FOLLOW_SETTING}=true "
                "to follow such links)",
                folder=target.is_dir(),
            )
            return
        if target.is_dir():
            self.folder_links.append((path, target))
        elif target.is_file():
            self.found.files.append(path)
        else:
            self._skip(path, "link to something that is not a regular file")

    def _walk_link(self, link: Path, target: Path) -> None:
        try:
            stat = target.stat()
        except OSError as error:
            self._skip(link, f"folder cannot be read: {_why(error)}", folder=True)
            return
        key = (stat.st_dev, stat.st_ino)
        if key in self.walked:
            walked_as = self.walked[key]
            if link.parent.resolve().is_relative_to(target):
                reason = "link loop: the link points to a folder that contains it"
            else:
                reason = f"folder already indexed as {self._id(walked_as, folder=True)}"
            self._skip(link, reason, folder=True)
            return
        self.walked[key] = link
        self._walk(link)

    def _skip(self, path: Path, reason: str, *, folder: bool = False) -> None:
        self.found.skipped.append(SkippedPath(self._id(path, folder=folder), reason))

    def _id(self, path: Path, *, folder: bool = False) -> str:
        if path == self.root:
            return "./"
        return document_id(path, self.root) + ("/" if folder else "")


def _why(error: OSError) -> str:
    return error.strerror or str(error)
