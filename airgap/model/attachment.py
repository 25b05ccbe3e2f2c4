"""Attachments: content that refers to an image (signatures, attestations, SBOMs) and how it is found.

Three ways exist side by side in the field, and a place may offer any of them:

- the OCI 1.1 **referrers API** (``GET /v2/<name>/referrers/<digest>``): the registry indexes every
  manifest whose ``subject`` names the digest (Harbor >= 2.8, ECR, Zot);
- the **referrers tag schema**: where there is no API, an image index tagged ``sha256-<hex>`` lists the
  referrers (image-spec "Referrers Tag Schema"; what ``oras attach`` and cosign write on Distribution);
- **cosign's tags** ``sha256-<hex>.sig`` / ``.att`` / ``.sbom``: a manifest with no subject, found by name
  only (cosign's legacy formats, still the default for key-based ``cosign sign`` before v3).

What an attachment *is* comes from its own manifest (its artifactType, else its config and layer media
types), never from an index entry alone: cosign 2.5 lists its Sigstore-bundle referrer in the tag-schema
index with ``artifactType: application/vnd.oci.empty.v1+json`` although the manifest says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from airgap.model.descriptor import Descriptor
from airgap.model.digest import Digest
from airgap.model.manifest import ImageIndex, Manifest, build_index
from airgap.model.mediatypes import MediaType

# How an attachment is found (and so how it is written at a destination).
REFERRER = "referrer"        # has a subject: referrers API or tag schema, whichever the place offers
COSIGN_TAG = "cosign-tag"    # no subject: a ``sha256-<hex>.<suffix>`` tag

COSIGN_SUFFIXES = ("sig", "att", "sbom")

# Artifact types we name (kinds for reports and selection; the manifest keeps its exact type).
COSIGN_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
SIGSTORE_BUNDLE_PREFIX = "application/vnd.dev.sigstore.bundle"
_SBOM_MARKERS = ("spdx", "cyclonedx", "syft")

SIGNATURE, ATTESTATION, SBOM, OTHER = "signature", "attestation", "sbom", "other"


def referrers_tag(subject: Digest | str) -> str:
    """The referrers tag schema's tag for a subject: ``<alg>-<hex>``."""
    d = Digest.parse(str(subject))
    return f"{d.algorithm}-{d.hex}"


def cosign_tag(subject: Digest | str, suffix: str = "sig") -> str:
    return f"{referrers_tag(subject)}.{suffix}"


def classify(manifest: Manifest) -> str:
    """The artifact type of an attachment, read from the manifest itself: its artifactType; else,
    for a manifest whose config is the generic image config or empty, its first layer's media type;
    else its config's media type."""
    if manifest.artifact_type and manifest.artifact_type != MediaType.OCI_EMPTY:
        return manifest.artifact_type
    if isinstance(manifest, ImageIndex):
        return manifest.artifact_type
    config = manifest.config.media_type
    if config in (MediaType.OCI_CONFIG, MediaType.OCI_EMPTY, MediaType.DOCKER_CONFIG, "") and manifest.layers:
        return manifest.layers[0].media_type
    return config


def kind_of(artifact_type: str) -> str:
    """signature | attestation | sbom | other: what ``--attachments signatures`` and reports group by."""
    t = artifact_type.lower()
    # A Sigstore bundle signs (cosign v3 `sign`) or attests; which one is in its DSSE predicate, so a
    # bundle counts as a signature: it is what verifies the image.
    if t == COSIGN_SIMPLESIGNING or "signature" in t or t.startswith(SIGSTORE_BUNDLE_PREFIX):
        return SIGNATURE
    if any(m in t for m in _SBOM_MARKERS):
        return SBOM
    if t == DSSE_ENVELOPE or "in-toto" in t:
        return ATTESTATION
    return OTHER


@dataclass(frozen=True)
class Attachment:
    """One manifest that refers to ``subject``: where it is, what it is, and how it was found."""

    subject: Digest
    descriptor: Descriptor       # the attachment's own manifest
    artifact_type: str           # from the manifest (classify), not from an index entry
    found_by: str = REFERRER     # REFERRER or COSIGN_TAG
    tag: str | None = None       # the cosign tag for COSIGN_TAG

    @property
    def digest(self) -> Digest:
        return self.descriptor.digest

    @property
    def kind(self) -> str:
        return kind_of(self.artifact_type)

    @classmethod
    def of(cls, subject: Digest, manifest: Manifest, tag: str | None = None) -> Attachment:
        """An attachment for a fetched manifest; a ``tag`` makes it a cosign-tag attachment."""
        if tag is None:
            return cls(subject, manifest.referrer_descriptor(), classify(manifest), REFERRER)
        return cls(subject, manifest.descriptor, classify(manifest), COSIGN_TAG, tag)


def merge_referrers(existing: ImageIndex | None, add: Descriptor | list[Descriptor]) -> ImageIndex | None:
    """The tag-schema index with ``add`` (one entry or several) appended; None when every one is listed
    already. Entries someone else wrote stay as they are, in their order: the index is shared with every
    other tool, and several at once make one write (an immutable target takes a new tag once)."""
    entries = list(existing.manifests) if existing is not None else []
    listed = {e.digest for e in entries}
    new: list[Descriptor] = []
    for d in add if isinstance(add, list) else [add]:
        if d.digest not in listed:
            listed.add(d.digest)
            new.append(d)
    if not new:
        return None
    return build_index([*entries, *new], annotations=dict(existing.annotations) if existing else None)


__all__ = ["Attachment", "REFERRER", "COSIGN_TAG", "classify", "kind_of", "referrers_tag", "cosign_tag",
           "merge_referrers"]
