"""Writes a bundle tar member by member, streaming, into ``OUT.partial`` renamed into place at the end."""

from __future__ import annotations

import hashlib
import os
import tarfile
import threading
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from airgap import limits

BLOCK = 512
WRITEBACK_BYTES = limits.BUNDLE_WRITEBACK_BYTES
RECORD = BLOCK * 20  # what tar(1) and Python's tarfile pad the archive end to


class BundleWriter:
    def __init__(self, path: Path, mtime: int, compress: str | None = None, *, checksum: bool = False):
        self.path = Path(path)
        self.compress = compress
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.mtime = mtime
        self.names: set[str] = set()
        self._fh: Any = None   # the file, or a zstd stream writer over it
        self._raw: Any = None
        self.written = 0
        # Of the file's bytes, for split parts' checksums only: every blob is already hashed once on
        # its way in, and a second pass over the whole bundle would cost as much again.
        self.sha256 = hashlib.sha256() if checksum and compress is None else None

    def __enter__(self) -> BundleWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._raw = open(self.partial, "wb")
        self._fh = self._raw
        if self.compress == "zstd":
            import zstandard
            # Multi-threaded, level 3: near gzip -9 ratios at disk speed; layers that are already
            # gzip-compressed pass through at little cost.
            self._fh = zstandard.ZstdCompressor(level=3, threads=-1).stream_writer(self._raw, closefd=False)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._fh is not None
        try:
            if exc_type is None:
                self._write(b"\0" * self.end_padding(self.written))
                if self._fh is not self._raw:
                    self._fh.close()
                self._raw.flush()
                os.fsync(self._raw.fileno())
        finally:
            self._raw.close()
        if exc_type is None:
            os.replace(self.partial, self.path)
        else:
            self.partial.unlink(missing_ok=True)

    def _write(self, data: bytes) -> None:
        assert self._fh is not None
        self._fh.write(data)
        if self.sha256 is not None:
            self.sha256.update(data)
        self.written += len(data)

    @staticmethod
    def member_cost(name: str, size: int) -> int:
        """Bytes a member takes in the archive: header(s), data, padding (for planning split parts)."""
        info = tarfile.TarInfo(name)
        info.size = size
        return len(info.tobuf(format=tarfile.PAX_FORMAT)) + size + (-size) % BLOCK

    @staticmethod
    def header(name: str, size: int, mtime: int, mode: int = 0o644) -> bytes:
        """A member's header block(s); the same bytes whether written in order or at a planned offset."""
        info = tarfile.TarInfo(name)
        info.size = size
        info.mtime = mtime
        info.mode = mode
        info.uname = info.gname = ""
        # PAX headers carry sizes over 8 GiB, which ustar cannot.
        return info.tobuf(format=tarfile.PAX_FORMAT)

    def _header(self, name: str, size: int, mode: int = 0o644) -> None:
        if name in self.names:
            raise ValueError(f"duplicate bundle member {name}")
        self.names.add(name)
        self._write(self.header(name, size, self.mtime, mode))

    def add_bytes(self, name: str, data: bytes) -> None:
        self._header(name, len(data))
        self._write(data)
        self._pad(len(data))

    def add_stream(self, name: str, size: int, chunks: Iterable[bytes]) -> None:
        """Streams ``size`` bytes; the iterator is expected to verify its content (DigestingReader)."""
        self._header(name, size)
        n = 0
        for chunk in chunks:
            n += len(chunk)
            if n > size:
                raise ValueError(f"{name}: more bytes than the {size} announced")
            self._write(chunk)
        if n != size:
            raise ValueError(f"{name}: {n} bytes where {size} were announced")
        self._pad(size)

    @staticmethod
    def end_padding(length: int) -> int:
        """Bytes of zeros that end an archive of ``length`` bytes: two blocks, then to a record."""
        end = 2 * BLOCK
        return end + (-(length + end)) % RECORD

    def _pad(self, size: int) -> None:
        rem = size % BLOCK
        if rem:
            self._write(b"\0" * (BLOCK - rem))


class PlannedTar:
    """A bundle tar whose every member's place is known before the first byte is written: members
    are written at their offsets, in any order and from several threads at once (``os.pwrite``),
    and the file is the same bytes whatever the order. ``OUT.partial`` is renamed into place by
    :meth:`commit` (after fsync) or removed by :meth:`discard`."""

    def __init__(self, path: Path, mtime: int, members: list[tuple[str, int]]):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.mtime = mtime
        self.offsets: dict[str, tuple[int, int]] = {}   # name -> (header offset, size)
        at = 0
        for name, size in members:
            if name in self.offsets:
                raise ValueError(f"duplicate bundle member {name}")
            self.offsets[name] = (at, size)
            at += len(BundleWriter.header(name, size, mtime)) + size + (-size) % BLOCK
        self.size = at + BundleWriter.end_padding(at)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.ftruncate(self._fd, self.size)  # the end-of-archive zeros, and room for every member
        # Writeback while the blobs stream, not all at the end: the closing fsync then waits for
        # the last few MiB instead of the whole bundle (the disk and the network overlap).
        self._dirty = 0
        self._lock = threading.Lock()
        self._flush = threading.Event()
        self._stop = False
        self._flusher = threading.Thread(target=self._flush_loop, name="bundle-writeback", daemon=True)
        self._flusher.start()

    def _flush_loop(self) -> None:
        while True:
            self._flush.wait()
            self._flush.clear()
            if self._stop:
                return
            try:
                os.fdatasync(self._fd)
            except OSError:
                return  # commit's own fsync reports it

    def _wrote(self, n: int) -> None:
        with self._lock:
            self._dirty += n
            if self._dirty >= WRITEBACK_BYTES:
                self._dirty = 0
                self._flush.set()

    def _stop_flusher(self) -> None:
        if self._stop:
            return
        self._stop = True
        self._flush.set()
        self._flusher.join()

    def write_stream(self, name: str, chunks: Iterable[bytes]) -> None:
        """Header, then the member's bytes as they come; the iterator verifies them (DigestingReader)."""
        at, size = self.offsets[name]
        header = BundleWriter.header(name, size, self.mtime)
        os.pwrite(self._fd, header, at)
        pos, end = at + len(header), at + len(header) + size
        for chunk in chunks:
            if pos + len(chunk) > end:
                raise ValueError(f"{name}: more bytes than the {size} announced")
            view = memoryview(chunk)
            while view:
                n = os.pwrite(self._fd, view, pos)
                view, pos = view[n:], pos + n
            self._wrote(len(chunk))
        if pos != end:
            raise ValueError(f"{name}: {pos - at - len(header)} bytes where {size} were announced")
        # Padding to the block is already zeros (ftruncate)

    def write_bytes(self, name: str, data: bytes) -> None:
        self.write_stream(name, (data,))

    def commit(self) -> None:
        self._stop_flusher()
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        os.replace(self.partial, self.path)

    def discard(self) -> None:
        self._stop_flusher()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.partial.unlink(missing_ok=True)
