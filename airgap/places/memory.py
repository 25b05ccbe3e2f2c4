"""A read-only place holding a few blobs and manifests in memory (artifacts we build, e.g. the chart)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from airgap.errors import NotFound
from airgap.model import Descriptor, Digest
from airgap.model.manifest import Manifest
from airgap.places.base import Store


class MemoryStore(Store):
    def __init__(self, description: str, blobs: dict[Digest, bytes], manifests: dict[str, Manifest]):
        self.description = description
        self._blobs = blobs
        self._manifests = manifests  # by tag and by digest

    def fetch_manifest(self, ref: str) -> Manifest:
        try:
            return self._manifests[ref]
        except KeyError:
            raise NotFound(f"{self.description}: no manifest {ref}") from None

    @contextmanager
    def open_blob(self, desc: Descriptor) -> Iterator[Iterator[bytes]]:
        try:
            data = self._blobs[desc.digest]
        except KeyError:
            raise NotFound(f"{self.description}: no blob {desc.digest}") from None
        yield iter((data,))

    def blob_exists(self, desc: Descriptor) -> bool:
        return desc.digest in self._blobs
