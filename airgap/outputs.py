"""Every file `airgap load` writes, decided and checked before the first push.

A load that fails after pushing every image because ``--values-out`` names a directory, a full disk
or a read-only mount is the worst kind of failure: the registry changed, the cluster files did not.
So the paths are

- resolved once: each output directory is made absolute and its symbolic links resolved at the
  start, and every file is then written below that resolved directory;
- checked before anything is pushed: of the right kind (a file path is not a directory, a directory
  is not a file), writable (a real probe file, which also catches read-only mounts and root-squashed
  NFS), with free space for what will be written;
- never followed through a symbolic link: the file itself, and any directory airgap creates or
  enters below the chosen one, must not be a link (a planted ``policy.json -> /etc/containers/policy.json``
  would otherwise replace a node's policy);
- written atomically (a temporary file in the same directory, fsync, rename);
- left alone when the file already holds exactly those bytes with that mode (a reload): its mtime
  stays, so config management and file watchers see no change, and nothing is fsynced for nothing.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from airgap import limits
from airgap.errors import OutputError
from airgap.fsutil import atomic_write

SPACE_MARGIN = limits.OUTPUT_SPACE_MARGIN


def _nearest_existing(path: Path) -> Path:
    p = path
    while not os.path.lexists(p):
        if p.parent == p:
            break
        p = p.parent
    return p


def resolve_dir(path: Path, what: str) -> Path:
    """An output directory, absolute with its links resolved (once: later writes use the result)."""
    real = Path(os.path.realpath(os.path.abspath(path)))
    if os.path.lexists(real) and not real.is_dir():
        raise OutputError(f"{what} {path}: exists and is not a directory")
    existing = _nearest_existing(real)
    if not existing.is_dir():
        raise OutputError(f"{what} {path}: {existing} is not a directory")
    return real


def resolve_file(path: Path, what: str) -> tuple[Path, str]:
    """(resolved directory, file name) for an output file; the file name itself is never followed."""
    path = Path(path)
    if not path.name or path.name in (".", ".."):
        raise OutputError(f"{what} {path}: names a directory, not a file")
    directory = resolve_dir(Path(os.path.abspath(path)).parent, what)
    _check_entry(directory / path.name, f"{what} {path}")
    return directory, path.name


def _check_entry(path: Path, what: str) -> None:
    if path.is_symlink():
        raise OutputError(f"{what}: is a symbolic link (to {os.readlink(path)}); airgap does not write through "
                          "links: remove it or name the real file")
    if path.is_dir():
        raise OutputError(f"{what}: is a directory; give a file name")
    if os.path.lexists(path) and not path.is_file():
        raise OutputError(f"{what}: exists and is not a regular file")


@dataclass
class OutputPlan:
    """Files to write, as (resolved directory, relative path) with their expected size."""

    files: list[tuple[Path, str, int, str]] = field(default_factory=list)  # dir, rel, size, what

    def add(self, directory: Path, rel: str, size: int, what: str) -> Path:
        rel_path = PurePosixPath(rel)
        if rel_path.is_absolute() or ".." in rel_path.parts or not rel_path.parts:
            raise OutputError(f"{what}: {rel!r} is not a plain relative path")
        self.files.append((directory, rel, size, what))
        return directory / rel

    def check(self) -> None:
        """Everything before the first push: kind, links, writability, free space."""
        need: dict[str, tuple[Path, int]] = {}
        probed: set[Path] = set()
        for directory, rel, size, what in self.files:
            _walk(directory, rel, what, create=False)
            existing = _nearest_existing(directory)
            try:
                dev = str(os.stat(existing).st_dev)
            except OSError as exc:
                raise OutputError(f"{what}: cannot use {existing}: {exc.strerror}") from None
            base, total = need.get(dev, (existing, 0))
            need[dev] = (base, total + size + 4096)
            if existing not in probed:
                _probe_writable(existing, what)
                probed.add(existing)
        for base, total in need.values():
            free = shutil.disk_usage(base).free
            if free < total + SPACE_MARGIN:
                raise OutputError(f"not enough free space in {base} for the output files: {free} bytes free, "
                                  f"{total + SPACE_MARGIN} needed")

    def checked_path(self, directory: Path, rel: str) -> Path:
        """The path to write one planned file at, creating the directories below ``directory``; checked
        again now, so a link planted since :meth:`check` is refused too."""
        return _walk(directory, rel, "output", create=True)

    def write(self, directory: Path, rel: str, data: bytes, mode: int = 0o644) -> Path:
        target = self.checked_path(directory, rel)
        if not _holds(target, data, mode):
            atomic_write(target, data, mode=mode)
        return target


def _walk(directory: Path, rel: str, what: str, *, create: bool) -> Path:
    """``directory/rel`` after checking that no directory below ``directory`` on the way, and not the
    file itself, is a link or of the wrong kind (creating missing directories when asked)."""
    if create:
        directory.mkdir(parents=True, exist_ok=True)
    p = directory
    for part in PurePosixPath(rel).parts[:-1]:
        p = p / part
        if p.is_symlink():
            raise OutputError(f"{what}: {p} is a symbolic link; airgap does not write through links")
        if os.path.lexists(p) and not p.is_dir():
            raise OutputError(f"{what}: {p} exists and is not a directory")
        if create:
            p.mkdir(exist_ok=True)
    target = directory / rel
    _check_entry(target, f"{what} {target}")
    return target


def _holds(path: Path, data: bytes, mode: int) -> bool:
    """Whether the regular file ``path`` (checked not to be a link) holds exactly ``data`` with ``mode``."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or stat.S_IMODE(st.st_mode) != mode or st.st_size != len(data):
            return False
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read(len(data) + 1) == data
    finally:
        os.close(fd)


def _probe_writable(directory: Path, what: str) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=".airgap-probe.", dir=directory)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise OutputError(f"{what}: cannot write into {directory}: {exc.strerror or exc}") from None
