"""A blob that is a byte range of a local file (a bundle member), checked as it is read.

It is a body like any other: iterating it gives the bytes in chunks, hashed on the way, the digest
and size checked *before* the last chunk is handed on (as :class:`~airgap.model.digest.DigestingReader`
does), so a consumer that commits on end-of-stream never commits content that does not match.

It can also be sent without copying its bytes through Python: :meth:`FileBody.windows` gives file
ranges for ``sendfile``, each hashed first, the last handed on only once the whole range matched.
A plain-HTTP upload then costs the hash and one read of each window into a reused buffer, instead
of a fresh 1 MiB ``bytes`` per chunk and a copy of it into the socket (airgap.registry.sendfile).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

from airgap import limits
from airgap.errors import DigestMismatch
from airgap.model.digest import Digest

CHUNK = limits.CHUNK
#: Bytes handed to one sendfile call: only offsets, so larger than CHUNK costs no memory.
SEND_WINDOW = 4 * CHUNK


@dataclass(frozen=True)
class FileRange:
    """Where a blob's bytes lie: ``size`` bytes of ``path`` from ``offset``."""

    path: Path
    offset: int
    size: int


class FileBody:
    """One pass over ``where``, as chunks (iteration) or as sendfile windows; not both, not twice.

    ``rehash=False`` checks the size only: for a blob verified already that the destination hashes
    again on commit (a registry), where a second hash would only cost CPU.
    """

    def __init__(self, where: FileRange, expected: Digest, what: str, *,
                 progress: Callable[[int], None] | None = None, rehash: bool = True):
        self.where = where
        self.expected = expected
        self.what = what
        self.progress = progress
        self.rehash = rehash
        self._chunks: Iterator[bytes] | None = None

    @property
    def size(self) -> int:
        return self.where.size

    # -- as chunks --------------------------------------------------------------------------------
    def __iter__(self) -> FileBody:
        return self

    def __next__(self) -> bytes:
        if self._chunks is None:
            self._chunks = self._read_chunks()
        return next(self._chunks)

    def _read_chunks(self) -> Iterator[bytes]:
        hasher = self.expected.hasher() if self.rehash else None
        pending: bytes | None = None
        with open(self.where.path, "rb", buffering=0) as fh:
            fd, pos, left = fh.fileno(), self.where.offset, self.where.size
            while left:
                chunk = os.pread(fd, min(CHUNK, left), pos)
                if not chunk:
                    self._short(self.where.size - left)
                if hasher is not None:
                    hasher.update(chunk)
                self._advance(len(chunk))
                pos += len(chunk)
                left -= len(chunk)
                if pending is not None:
                    yield pending
                pending = chunk
        self._check(hasher)
        if pending is not None:
            yield pending

    # -- as sendfile windows ------------------------------------------------------------------------
    def windows(self) -> Generator[tuple[int, int, int], None, None]:
        """``(fd, offset, length)`` ranges of the open file, in order, covering the blob: at most
        SEND_WINDOW bytes each (fewer sendfile calls and framing events per byte), read CHUNK by CHUNK
        into one reused buffer and hashed before the range is handed on; the last only after the
        digest matched. The kernel sends from the page cache what was just hashed from it (a registry
        hashes it again on commit, so bytes changed on disk in between are refused there)."""
        hasher = self.expected.hasher() if self.rehash else None
        buf = memoryview(bytearray(min(CHUNK, self.where.size) if hasher is not None else 0))
        pending: tuple[int, int, int] | None = None
        with open(self.where.path, "rb", buffering=0) as fh:
            fd, pos, left = fh.fileno(), self.where.offset, self.where.size
            if hasher is None and os.fstat(fd).st_size < pos + left:
                self._short(max(0, os.fstat(fd).st_size - pos))
            while left:
                n = min(SEND_WINDOW, left)
                done = 0
                while hasher is not None and done < n:
                    got = os.preadv(fd, [buf[:min(CHUNK, n - done)]], pos + done)
                    if got <= 0:
                        self._short(self.where.size - left + done)
                    hasher.update(buf[:got])
                    done += got
                self._advance(n)
                if pending is not None:
                    yield pending
                pending = (fd, pos, n)
                pos += n
                left -= n
            self._check(hasher)
            if pending is not None:
                yield pending

    # -- checks -----------------------------------------------------------------------------------
    def _advance(self, n: int) -> None:
        if self.progress is not None:
            self.progress(n)

    def _short(self, got: int) -> None:
        raise DigestMismatch(self.what, str(self.expected), f"{got} bytes where {self.where.size} were expected "
                             "(truncated)")

    def _check(self, hasher) -> None:
        if hasher is None:
            return
        actual = f"{self.expected.algorithm}:{hasher.hexdigest()}"
        if actual != str(self.expected):
            raise DigestMismatch(self.what, str(self.expected), actual)


__all__ = ["FileBody", "FileRange"]
