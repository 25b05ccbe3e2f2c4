"""Image manifests and indexes, parsed from the exact bytes that were (or will be) digested.

The bytes are kept alongside the parsed form: a manifest is identified by the digest of its bytes,
so it is never re-serialised on the way through.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Union

from airgap import limits, safejson
from airgap.errors import InputError
from airgap.model.descriptor import Descriptor, Platform
from airgap.model.digest import Digest, sha256_digest
from airgap.model.mediatypes import INDEX_TYPES, MANIFEST_TYPES, MediaType

# Distribution, Harbor, ECR and Nexus all refuse manifests over 4 MiB; reading more is never needed.
MAX_MANIFEST_BYTES = limits.MANIFEST_BYTES
MAX_DEPTH = limits.MANIFEST_DEPTH


@dataclass(frozen=True)
class ImageManifest:
    media_type: str
    data: bytes
    digest: Digest
    config: Descriptor
    layers: tuple[Descriptor, ...]
    subject: Descriptor | None = None
    artifact_type: str = ""        # OCI 1.1 ``artifactType``; empty for a plain image
    annotations: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def blobs(self) -> tuple[Descriptor, ...]:
        return (self.config, *self.layers)

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.data))

    def referrer_descriptor(self) -> Descriptor:
        """This manifest as an entry of its subject's referrers index: the image-spec says the entry
        carries the manifest's artifact type (its own, else its config's) and annotations."""
        return _referrer_entry(self, self.artifact_type or self.config.media_type)


@dataclass(frozen=True)
class ImageIndex:
    media_type: str
    data: bytes
    digest: Digest
    manifests: tuple[Descriptor, ...]
    subject: Descriptor | None = None
    artifact_type: str = ""
    annotations: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.data))

    def referrer_descriptor(self) -> Descriptor:
        return _referrer_entry(self, self.artifact_type)

    def platforms(self) -> list[Platform]:
        return [d.platform for d in self.manifests if d.platform]


Manifest = Union[ImageManifest, ImageIndex]  # a runtime alias: `X | Y` needs 3.10


def _referrer_entry(m: Manifest, artifact_type: str) -> Descriptor:
    out: dict[str, Any] = {"mediaType": m.media_type, "digest": str(m.digest), "size": len(m.data)}
    if artifact_type:
        out["artifactType"] = artifact_type
    if m.annotations:
        out["annotations"] = dict(m.annotations)
    return Descriptor.from_json(out)


def parse_manifest(data: bytes, media_type: str | None = None, where: str = "manifest") -> Manifest:
    """Parse manifest bytes; ``media_type`` is what the server or layout said, the body's own wins."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise InputError(f"{where}: manifest is {len(data)} bytes, over the 4 MiB limit registries enforce")
    try:
        # Bounded before parsing: a manifest read from a bundle is trusted only once its digest
        # matches, and that needs the parse (airgap.safejson).
        doc: dict[str, Any] = safejson.loads(data, max_bytes=MAX_MANIFEST_BYTES, max_depth=MAX_DEPTH)
    except safejson.JSONLimitError as exc:
        raise InputError(f"{where}: manifest refused: {exc}") from None
    except ValueError as exc:
        raise InputError(f"{where}: manifest is not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise InputError(f"{where}: manifest is not a JSON object")
    mt = doc.get("mediaType") or media_type or ""
    if not mt:
        # OCI 1.0 allowed omitting mediaType; the shape tells which it is.
        mt = MediaType.OCI_INDEX if "manifests" in doc else MediaType.OCI_MANIFEST
    digest = sha256_digest(data)
    subject = Descriptor.from_json(doc["subject"], where) if doc.get("subject") else None
    artifact_type = doc.get("artifactType") or ""
    annotations = doc.get("annotations") or {}
    if not isinstance(artifact_type, str) or not isinstance(annotations, dict) or \
            not all(isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()):
        raise InputError(f"{where}: artifactType must be a string and annotations a string map")
    if mt in INDEX_TYPES:
        children = tuple(Descriptor.from_json(d, where) for d in _list(doc, "manifests", where))
        return ImageIndex(mt, data, digest, children, subject, artifact_type, dict(annotations))
    if mt in MANIFEST_TYPES:
        if "config" not in doc:
            raise InputError(f"{where}: image manifest has no config")
        layers = tuple(Descriptor.from_json(d, where) for d in _list(doc, "layers", where))
        return ImageManifest(mt, data, digest, Descriptor.from_json(doc["config"], where), layers, subject,
                             artifact_type, dict(annotations))
    raise InputError(f"{where}: unsupported manifest media type {mt!r} (Docker schema 1 is not supported)")


def _list(doc: dict[str, Any], key: str, where: str) -> list:
    value = doc.get(key) or []
    if not isinstance(value, list):
        raise InputError(f"{where}: {key} must be a list")
    return value


def build_index(children: list[Descriptor], media_type: str = MediaType.OCI_INDEX,
                annotations: dict[str, str] | None = None) -> ImageIndex:
    """A new index over ``children`` (used when --platform keeps only some of an index's images)."""
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        # Always set: Nexus rejects indexes without a top-level mediaType.
        "mediaType": media_type,
        "manifests": [c.to_json() for c in children],
    }
    if annotations:
        doc["annotations"] = annotations
    data = json.dumps(doc, separators=(",", ":")).encode()
    return ImageIndex(media_type, data, sha256_digest(data), tuple(children))
