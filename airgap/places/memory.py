"""Small content held in memory (signature payloads, load records) as a read-only place."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from airgap.errors import NotFound
from airgap.model import Descriptor, Digest
from airgap.model.manifest import Manifest
from airgap.places.base import Store


class MemoryStore(Store):
    def __init__(self, description: str = "memory"):
        self.description = description
        self.blobs: dict[Digest, bytes] = {}
        self.manifests: dict[str, Manifest] = {}

    def add_blob(self, data: bytes, digest: Digest) -> None:
        self.blobs[digest] = data

    def add_manifest(self, manifest: Manifest, tag: str | None = None) -> None:
        self.manifests[str(manifest.digest)] = manifest
        if tag:
            self.manifests[tag] = manifest

    def fetch_manifest(self, ref: str) -> Manifest:
        try:
            return self.manifests[ref]
        except KeyError:
            raise NotFound(f"{self.description}: no manifest {ref}") from None

    @contextmanager
    def open_blob(self, desc: Descriptor) -> Iterator[Iterator[bytes]]:
        try:
            data = self.blobs[desc.digest]
        except KeyError:
            raise NotFound(f"{self.description}: no blob {desc.digest}") from None
        yield iter((data,))
