"""Writes a bundle tar member by member, streaming, into ``OUT.partial`` renamed into place at the end."""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

BLOCK = 512
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

    def __enter__(self) -> "BundleWriter":
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
                end = 2 * BLOCK
                end += (-(self.written + end)) % RECORD
                self._write(b"\0" * end)
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

    def _header(self, name: str, size: int, mode: int = 0o644) -> None:
        if name in self.names:
            raise ValueError(f"duplicate bundle member {name}")
        self.names.add(name)
        info = tarfile.TarInfo(name)
        info.size = size
        info.mtime = self.mtime
        info.mode = mode
        info.uname = info.gname = ""
        # PAX headers carry sizes over 8 GiB, which ustar cannot.
        self._write(info.tobuf(format=tarfile.PAX_FORMAT))

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

    def _pad(self, size: int) -> None:
        rem = size % BLOCK
        if rem:
            self._write(b"\0" * (BLOCK - rem))
