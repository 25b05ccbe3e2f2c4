"""The interface every place implements, scoped to one repository.

Call order for a destination (the copy engine keeps it): blobs, then child manifests, then the
root manifest with its tags. A destination may rely on that order: when ``put_manifest`` is called
with a tag, every blob and child manifest it references is already in place.

Callers must verify content: ``open_blob`` hands out raw bytes; the engine wraps them in a
:class:`~airgap.model.digest.DigestingReader` before they reach a destination.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

from airgap import limits
from airgap.errors import AirgapError
from airgap.model import Descriptor, Digest
from airgap.model.manifest import Manifest

# A fresh, verifying iterator over a blob's bytes each time it is called, so an upload that failed
# half-way can be retried from the start without buffering anything.
BlobBody = Callable[[], Iterator[bytes]]


class Store(ABC):
    """One repository's worth of content in some place."""

    #: names the place in messages, e.g. ``registry 10.0.0.5:5000/haystack/opensearch``
    description: str = "store"
    #: the place itself refuses a blob whose bytes do not match its digest (a registry does, on
    #: commit); the engine then need not hash a blob a second time when it verified it already
    checks_digests_on_write: bool = False

    # -- reading --------------------------------------------------------------------------------
    @abstractmethod
    def fetch_manifest(self, ref: str) -> Manifest:
        """The manifest or index a tag or digest names; raises NotFound."""

    @abstractmethod
    def open_blob(self, desc: Descriptor) -> AbstractContextManager[Iterator[bytes]]:
        """Raw chunks of a blob (unverified; see module doc)."""

    # -- writing (read-only places keep these defaults) ------------------------------------------
    def blob_exists(self, desc: Descriptor) -> bool:
        return False

    def put_blob(self, desc: Descriptor, body: BlobBody) -> None:
        raise AirgapError(f"{self.description} is read-only")

    def mount_blob(self, desc: Descriptor, source: Store) -> bool:
        """Make a blob from ``source`` (another repository in the same place) appear here without
        moving its bytes; False when the place cannot, and the caller uploads instead."""
        return False

    def manifest_exists(self, digest: Digest) -> bool:
        return False

    def resolve_tag(self, tag: str) -> Digest | None:
        return None

    def put_manifest(self, manifest: Manifest, tag: str | None = None) -> None:
        raise AirgapError(f"{self.description} is read-only")

    #: stores with the same key share blobs (mount is possible between them)
    @property
    def place_key(self) -> str:
        return self.description


def read_small(store: Store, desc: Descriptor, limit: int = limits.SMALL_BLOB_BYTES) -> bytes:
    """A small blob (signature payload, record) whole, reading no more than it declares: a broken or
    hostile server cannot make us buffer more than ``limit`` bytes."""
    if desc.size > limit:
        raise AirgapError(f"{store.description}: blob {desc.digest} is {desc.size} bytes, more than expected here")
    out = bytearray()
    with store.open_blob(desc) as chunks:
        for chunk in chunks:
            out += chunk
            if len(out) > desc.size:
                raise AirgapError(f"{store.description}: blob {desc.digest} is longer than its {desc.size} bytes")
    return bytes(out)
