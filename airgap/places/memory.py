"""A read-only place holding a few small blobs and manifests in memory: artifacts we make ourselves
(the chart as an OCI artifact, the release record), copied by the same engine as images."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from airgap.errors import NotFound
from airgap.model import Descriptor, Digest
from airgap.model.manifest import Manifest
from airgap.places.base import Store


class MemoryStore(Store):
    # It lists its own manifests by subject: a referrers API of sorts, so nothing needs a tag-schema index.
    referrers_api = True

    def __init__(self, description: str = "memory", blobs: dict[Digest, bytes] | None = None,
                 manifests: dict[str, Manifest] | None = None):
        self.description = description
        self._blobs: dict[Digest, bytes] = dict(blobs or {})
        self._manifests: dict[str, Manifest] = dict(manifests or {})  # by tag and by digest

    def add_blob(self, data: bytes, digest: Digest) -> None:
        self._blobs[digest] = data

    def add_manifest(self, manifest: Manifest, tag: str | None = None) -> None:
        self._manifests[str(manifest.digest)] = manifest
        if tag:
            self._manifests[tag] = manifest

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

    def manifest_exists(self, digest: Digest) -> bool:
        return str(digest) in self._manifests

    def resolve_tag(self, tag: str) -> Digest | None:
        m = self._manifests.get(tag)
        return m.digest if m is not None else None

    def list_referrers(self, subject: Digest) -> list[Descriptor]:
        seen = {m.digest: m for m in self._manifests.values() if m.subject is not None and m.subject.digest == subject}
        return [m.referrer_descriptor() for m in seen.values()]
