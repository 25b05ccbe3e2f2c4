"""Content digests and a stream that checks them as bytes go by."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from airgap import limits
from airgap.errors import DigestMismatch, InputError

_DIGEST_RE = re.compile(r"^(sha256):([a-f0-9]{64})$|^(sha512):([a-f0-9]{128})$")

CHUNK = limits.CHUNK


@dataclass(frozen=True, order=True)
class Digest:
    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        m = _DIGEST_RE.match(text or "")
        if not m:
            raise InputError(f"not a valid digest: {text!r} (expected sha256:<64 hex>)")
        algo = m.group(1) or m.group(3)
        hexpart = m.group(2) or m.group(4)
        return cls(algo, hexpart)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)

    @property
    def short(self) -> str:
        return f"{self.algorithm}:{self.hex[:12]}"


def sha256_digest(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


class DigestingReader:
    """Wraps an iterator of byte chunks; counts and hashes them, and checks digest and size at the end.

    The check runs when the source is exhausted, *before* the last chunk is handed on, so a consumer
    that commits on end-of-stream (a registry's final PUT, a rename into a layout) never commits
    content that does not match.
    """

    def __init__(self, chunks: Iterable[bytes], expected: Digest, size: int | None, what: str):
        self._chunks = iter(chunks)
        self._expected = expected
        self._size = size
        self._what = what
        self._hash = expected.hasher()
        self.count = 0

    def __iter__(self) -> Iterator[bytes]:
        pending: bytes | None = None
        for chunk in self._chunks:
            if not chunk:
                continue
            self._hash.update(chunk)
            self.count += len(chunk)
            if self._size is not None and self.count > self._size:
                raise DigestMismatch(self._what, str(self._expected), f"more than {self._size} bytes")
            if pending is not None:
                yield pending
            pending = chunk
        self.verify()
        if pending is not None:
            yield pending

    def verify(self) -> None:
        if self._size is not None and self.count != self._size:
            raise DigestMismatch(self._what, str(self._expected),
                                 f"{self.count} bytes where {self._size} were expected (truncated)")
        actual = f"{self._expected.algorithm}:{self._hash.hexdigest()}"
        if actual != str(self._expected):
            raise DigestMismatch(self._what, str(self._expected), actual)
