"""The bundle manifest (``airgap-bundle.json``), the first member of every bundle."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from airgap import __version__

FORMAT_VERSION = 1
MANIFEST_NAME = "airgap-bundle.json"
SIGNATURE_NAME = "airgap-bundle.json.sig"  # second member when signed: cosign sign-blob format
LAYOUT_DIR = "oci"  # the OCI image layout inside the tar: oci/oci-layout, oci/index.json, oci/blobs/...


@dataclass(frozen=True)
class BundleImage:
    name: str                 # repository under the target prefix
    source: str               # where it came from, as IMAGES.md wrote it
    tag: str
    digest: str               # of the manifest or index, as pushed
    media_type: str
    size: int                 # of the manifest or index
    platforms: list[str] = field(default_factory=list)
    values: str | None = None  # where the chart reads this image, e.g. "opensearch.image"
    blob_bytes: int = 0       # bytes of every blob this image references (shared ones counted)
    identity: str = ""        # the docker-reference its signatures name (cosign payload identity)
    # one per signed manifest (the index and each platform manifest):
    # {"signed": image digest, "digest": signature manifest digest, "size": its size}
    signatures: list[dict] = field(default_factory=list)
    upstream: dict | None = None  # result of verifying the upstream's own signature at bundle time
    # Upstream attachments carried with the image (SBOMs, attestations, referrer signatures), subjects
    # before what refers to them: {"digest", "subject", "artifactType", "mediaType", "size", "foundBy",
    # "tag" (cosign-tag ones), "blobBytes"}. The load relocates exactly these (airgap.attachments).
    attachments: list[dict] = field(default_factory=list)
    # cosign v3 Sigstore-bundle referrers we made (same records as ``signatures``; airgap.sign.sigstore_bundle)
    bundle_signatures: list[dict] = field(default_factory=list)
    extra: dict = field(default_factory=dict, compare=False)  # fields a newer airgap wrote, kept as read

    @property
    def ref_name(self) -> str:
        """The ``org.opencontainers.image.ref.name`` of this image in the bundle's layout."""
        return f"{self.name}:{self.tag}"


@dataclass(frozen=True)
class BundleFile:
    path: str      # member name inside the tar
    kind: str      # "chart" or "crd"
    sha256: str
    size: int
    name: str = ""       # chart name, or the CRD file's original name
    version: str = ""    # chart version
    extra: dict = field(default_factory=dict, compare=False)  # fields a newer airgap wrote, kept as read


@dataclass(frozen=True)
class BundleManifest:
    release: str
    created: str                      # RFC 3339 UTC
    images: list[BundleImage]
    files: list[BundleFile]
    blob_count: int
    blob_bytes: int
    tool: str = f"airgap {__version__}"  # what made it; `airgap --version` prints the same
    format_version: int = FORMAT_VERSION
    signer: str = ""          # fingerprint (sha256 of the DER public key) of the key that signed it
    # Every blob and manifest digest the images reference, shipped or not: what a target holds after
    # loading this bundle, so a later bundle can be a delta against it.
    referenced: list[str] = field(default_factory=list)
    # A delta: {"kind": "bundle"|"inventory", "digest": sha256 of the base's manifest, "release": ...}
    base: dict | None = None
    # A split bundle: the blob parts, [{"name", "index", "sha256", "size"}]; part 1 holds this manifest
    parts: list[dict] = field(default_factory=list)
    # Top-level fields (and ``blobs`` members) a newer airgap wrote: this one neither checks nor acts
    # on them, but writes them back, so reading and writing a manifest loses nothing.
    extra: dict = field(default_factory=dict, compare=False)
    blobs_extra: dict = field(default_factory=dict, compare=False)

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {
            "kind": "AirgapBundle",
            "formatVersion": self.format_version,
            "release": self.release,
            "created": self.created,
            "tool": self.tool,
            "layout": LAYOUT_DIR,
            "blobs": {"count": self.blob_count, "bytes": self.blob_bytes, **self.blobs_extra},
            "signer": self.signer,
            "images": [_with_extra(_camel(_image_json(i))) for i in self.images],
            "files": [_with_extra(asdict(f)) for f in self.files],
            "base": self.base,
            "parts": self.parts,
            "referenced": self.referenced,
            **self.extra,
        }
        return json.dumps(doc, indent=2, sort_keys=False).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes, where: str) -> BundleManifest:
        """Parse and validate (airgap.bundle.schema): limits first, then every field's type and rules."""
        from airgap.bundle.schema import check_manifest, load_document
        doc = load_document(data, where)
        fields = check_manifest(doc, where, FORMAT_VERSION)
        images = [BundleImage(**i, extra=_unknown(raw, _IMAGE_KEYS))
                  for i, raw in zip(fields.pop("images"), doc["images"])]
        files = [BundleFile(**f, extra=_unknown(raw, _FILE_KEYS))
                 for f, raw in zip(fields.pop("files"), doc.get("files") or [])]
        return cls(images=images, files=files, extra=_unknown(doc, _TOP_KEYS),
                   blobs_extra=_unknown(doc["blobs"], {"count", "bytes"}), **fields)

    @property
    def chart(self) -> BundleFile | None:
        return next((f for f in self.files if f.kind == "chart"), None)

    @property
    def crds(self) -> list[BundleFile]:
        return [f for f in self.files if f.kind == "crd"]


_TO_CAMEL = {"media_type": "mediaType", "blob_bytes": "blobBytes", "bundle_signatures": "bundleSignatures"}
_TOP_KEYS = {"kind", "formatVersion", "release", "created", "tool", "layout", "blobs", "signer", "images", "files",
             "base", "parts", "referenced"}
_IMAGE_KEYS = {_TO_CAMEL.get(f, f) for f in BundleImage.__dataclass_fields__} - {"extra"}
_FILE_KEYS = set(BundleFile.__dataclass_fields__) - {"extra"}


def _image_json(image: BundleImage) -> dict[str, Any]:
    d = asdict(image)
    if not d["bundle_signatures"]:
        del d["bundle_signatures"]  # manifests without Sigstore-bundle signatures stay as they were
    return d


def _camel(d: dict[str, Any]) -> dict[str, Any]:
    return {_TO_CAMEL.get(k, k): v for k, v in d.items()}


def _with_extra(d: dict[str, Any]) -> dict[str, Any]:
    extra = d.pop("extra", None) or {}
    return {**d, **extra}


def _unknown(raw: Any, known: set[str]) -> dict[str, Any]:
    """The keys of a (schema-checked, size-limited) JSON object this airgap does not know."""
    return {k: v for k, v in raw.items() if k not in known} if isinstance(raw, dict) else {}

