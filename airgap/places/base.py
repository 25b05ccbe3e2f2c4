"""The interface every place implements, scoped to one repository.

Call order for a destination (the copy engine keeps it): blobs, then child manifests, then the
attachments (signatures, SBOMs: :mod:`airgap.model.attachment`), then the root manifest with its
tags. A destination may rely on that order: when ``put_manifest`` is called with a tag, every blob,
child manifest and attachment it references is already in place.

How a place finds and keeps attachments is data on the store, not its type: ``referrers_api`` (OCI
1.1 referrers endpoint), ``tag_schema`` (``sha256-<hex>`` index tags), ``cosign_tags``
(``sha256-<hex>.sig|.att|.sbom``). The defaults here work through the place's own tags, so a new
place gets attachments by implementing tags.

Callers must verify content: ``open_blob`` hands out raw bytes; the engine wraps them in a
:class:`~airgap.model.digest.DigestingReader` before they reach a destination.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

from airgap import limits
from airgap.errors import AirgapError, NotFound
from airgap.model import Descriptor, Digest
from airgap.model.attachment import (
    COSIGN_SUFFIXES, COSIGN_TAG, Attachment, cosign_tag, merge_referrers, referrers_tag,
)
from airgap.model.filebody import FileRange
from airgap.model.manifest import ImageIndex, Manifest

# A fresh, verifying iterator over a blob's bytes each time it is called, so an upload that failed
# half-way can be retried from the start without buffering anything.
BlobBody = Callable[[], Iterator[bytes]]


class StagedBlob(ABC):
    """A blob whose bytes a place holds without showing them yet (a registry's open upload session,
    before ``PUT ?digest=``). The engine stages every unverified blob of a copy while hashing it on
    the way, and commits only once all of them matched: one read of the source, nothing committed
    from a damaged one."""

    @abstractmethod
    def commit(self) -> None:
        """Make the blob appear in the place (the place checks its digest again where it can)."""

    @abstractmethod
    def cancel(self) -> None:
        """Drop the bytes; best effort, never raises."""


class Store(ABC):
    """One repository's worth of content in some place."""

    #: names the place in messages, e.g. ``registry 10.0.0.5:5000/haystack/opensearch``
    description: str = "store"
    #: the place itself refuses a blob whose bytes do not match its digest (a registry does, on
    #: commit); the engine then need not hash a blob a second time when it verified it already
    checks_digests_on_write: bool = False
    #: the repository within the place ('' where the place has no repositories)
    repository: str = ""
    #: content lives across a network (a registry): worth caching locally before reading it twice
    remote: bool = False
    #: capabilities for attachments (see module doc)
    referrers_api: bool = False
    tag_schema: bool = True
    cosign_tags: bool = True

    # -- reading --------------------------------------------------------------------------------
    @abstractmethod
    def fetch_manifest(self, ref: str) -> Manifest:
        """The manifest or index a tag or digest names; raises NotFound."""

    @abstractmethod
    def open_blob(self, desc: Descriptor) -> AbstractContextManager[Iterator[bytes]]:
        """Raw chunks of a blob (unverified; see module doc)."""

    def blob_file(self, desc: Descriptor) -> FileRange | None:
        """Where the blob's bytes lie in a local file, when they do (a bundle member): the engine
        then reads it as a :class:`~airgap.model.filebody.FileBody`, which a plain-HTTP upload
        sends with sendfile. None: read it through :meth:`open_blob`."""
        return None

    # -- writing (read-only places keep these defaults) ------------------------------------------
    def blob_exists(self, desc: Descriptor) -> bool:
        return False

    def put_blob(self, desc: Descriptor, body: BlobBody) -> None:
        raise AirgapError(f"{self.description} is read-only")

    #: ``stage_blob`` works: bytes can be sent now and committed later (see :class:`StagedBlob`)
    stages_blobs: bool = False

    def stage_blob(self, desc: Descriptor, body: BlobBody) -> StagedBlob:
        """Send a blob's bytes without committing them; on failure nothing is left staged."""
        raise AirgapError(f"{self.description} cannot hold uncommitted blobs")

    def mount_blob(self, desc: Descriptor, source: Store) -> bool:
        """Make a blob from ``source`` (another repository in the same place) appear here without
        moving its bytes; False when the place cannot, and the caller uploads instead."""
        return False

    def manifest_exists(self, digest: Digest) -> bool:
        return False

    def resolve_tag(self, tag: str) -> Digest | None:
        return None

    def known_tag(self, tag: str) -> tuple[bool, Digest | None]:
        """(whether this command has asked or written ``tag`` already, what it holds), no request."""
        return (False, None)

    def holds_no_tags(self) -> bool:
        """Known to hold no tag at all (a first load into this repository); False when not known.
        It may still hold blobs (an interrupted load): the engine sends small blobs there without
        asking first, and asks for large ones."""
        return False

    def note_absent(self) -> None:
        """The place's listing of repositories lacks this one: from now on it holds no tag (places that
        remember no tag answers ignore it)."""
        return None

    def put_manifest(self, manifest: Manifest, tag: str | None = None) -> None:
        raise AirgapError(f"{self.description} is read-only")

    #: stores with the same key share blobs (mount is possible between them)
    @property
    def place_key(self) -> str:
        return self.description

    def same_place(self, other: Store) -> bool:
        """``other`` is another repository of this very place (blobs can be mounted between them)."""
        return other.place_key == self.place_key

    # -- attachments ----------------------------------------------------------------------------
    def fetch_tagged(self, tag: str) -> Manifest | None:
        """The manifest under ``tag``, or None when there is no such tag."""
        digest = self.resolve_tag(tag)
        if digest is None:
            return None
        try:
            return self.fetch_manifest(str(digest))
        except NotFound:
            return None

    def list_referrers(self, subject: Digest) -> list[Descriptor]:
        """The place's own referrers listing (override where ``referrers_api``)."""
        return []

    def referrers(self, subject: Digest) -> list[Descriptor]:
        """Descriptors of the manifests whose ``subject`` is ``subject``, as the place lists them
        (index entries: classify the manifests themselves, :func:`~airgap.model.attachment.classify`)."""
        if self.referrers_api:
            return self.list_referrers(subject)
        if self.tag_schema:
            index = self.fetch_tagged(referrers_tag(subject))
            return list(index.manifests) if isinstance(index, ImageIndex) else []
        return []

    def attachments(self, subject: Digest) -> list[Attachment]:
        """Every attachment of ``subject`` here: its referrers, then cosign's tags."""
        out: list[Attachment] = []
        for desc in self.referrers(subject):
            manifest = self.fetch_manifest(str(desc.digest))
            # A listing is a hint; the manifest says what it refers to (a stale or planted entry is skipped).
            if manifest.subject is not None and manifest.subject.digest == subject:
                out.append(Attachment.of(subject, manifest))
        if self.cosign_tags:
            for suffix in COSIGN_SUFFIXES:
                tag = cosign_tag(subject, suffix)
                tagged = self.fetch_tagged(tag)
                if tagged is not None:
                    out.append(Attachment.of(subject, tagged, tag))
        return out

    def has_attachment(self, att: Attachment) -> bool:
        if att.found_by == COSIGN_TAG:
            return self.resolve_tag(att.tag or "") == att.digest
        if not self.manifest_exists(att.digest):
            return False
        if self.referrers_api or not self.tag_schema:
            return True  # the place indexes a manifest by its subject itself
        return any(d.digest == att.digest for d in self.referrers(att.subject))

    def put_attachment(self, manifest: Manifest, att: Attachment) -> None:
        """Write an attachment whose blobs are in place: under its cosign tag, or by digest and, where
        the place has no referrers API, merged into the subject's tag-schema index."""
        if self.push_attachment(manifest, att):
            self.add_to_tag_schema(att)

    def push_attachment(self, manifest: Manifest, att: Attachment) -> bool:
        """Write the attachment's manifest (under its cosign tag, or by digest); True when the subject's
        tag-schema index must still list it (:meth:`add_all_to_tag_schema`, once per subject)."""
        if att.found_by == COSIGN_TAG:
            self.put_manifest(manifest, att.tag)
            return False
        self.put_manifest(manifest)
        return not self.referrers_api and self.tag_schema

    def add_to_tag_schema(self, att: Attachment) -> None:
        self.add_all_to_tag_schema(att.subject, [att])

    def add_all_to_tag_schema(self, subject: Digest, atts: list[Attachment]) -> None:
        """One write of the subject's ``sha256-<hex>`` index listing ``atts`` besides what it lists."""
        tag = referrers_tag(subject)
        existing = self.fetch_tagged(tag)
        merged = merge_referrers(existing if isinstance(existing, ImageIndex) else None,
                                 [a.descriptor for a in atts])
        if merged is not None:
            self.put_manifest(merged, tag)


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
