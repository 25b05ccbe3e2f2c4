"""cosign's key-based image signatures (cosign SIGNATURE_SPEC, no transparency log).

A signature for image digest ``sha256:H`` lives in the image's repository under the tag
``sha256-H.sig``: an OCI image manifest whose layers are simple-signing payloads
(``application/vnd.dev.cosign.simplesigning.v1+json``), each carrying its base64 ECDSA signature in the
``dev.cosignproject.cosign/signature`` annotation. One valid signature by a trusted key is enough, as
in cosign and containers/image.

The payload's ``docker-reference`` names the identity that was signed. cosign does not check it;
containers/image does, so the policy.json we write maps each relocated repository to it
(``exactRepository``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass

from airgap import limits
from airgap.errors import SignatureError
from airgap.model import Descriptor, Digest, sha256_digest
from airgap.model.attachment import COSIGN_SIMPLESIGNING, COSIGN_TAG, Attachment
from airgap.model.manifest import ImageManifest, parse_manifest
from airgap.model.mediatypes import MediaType
from airgap.places.memory import MemoryStore
from airgap.sign.keys import PublicKey

SIMPLE_SIGNING = COSIGN_SIMPLESIGNING
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
PAYLOAD_TYPE = "cosign container image signature"


def signature_tag(digest: Digest | str) -> str:
    d = Digest.parse(str(digest))
    return f"{d.algorithm}-{d.hex}.sig"


def make_payload(docker_reference: str, digest: Digest | str) -> bytes:
    doc = {"critical": {"identity": {"docker-reference": docker_reference},
                        "image": {"docker-manifest-digest": str(digest)},
                        "type": PAYLOAD_TYPE},
           "optional": None}
    return json.dumps(doc, separators=(",", ":")).encode()


@dataclass(frozen=True)
class SignatureArtifact:
    """A signature manifest with the blobs it references (config and payload), ready to store."""

    signed: Digest                # the image digest it signs
    manifest: ImageManifest
    blobs: dict[Digest, bytes]

    @property
    def tag(self) -> str:
        return signature_tag(self.signed)

    @property
    def attachment(self) -> Attachment:
        return Attachment(self.signed, self.manifest.descriptor, SIMPLE_SIGNING, COSIGN_TAG, self.tag)

    def store(self) -> MemoryStore:
        """A place holding just this signature, for the copy engine to copy it from."""
        return MemoryStore(f"signature of {self.signed.short}", dict(self.blobs),
                           {str(self.manifest.digest): self.manifest, self.tag: self.manifest})


def signature_artifact(payload: bytes, signature: str, digest: Digest) -> SignatureArtifact:
    """The ``.sig`` manifest for one payload and its base64 signature: the same inputs give the same
    bytes, so a signature kept from an earlier bundle makes the same manifest digest (immutable tags)."""
    payload_digest = sha256_digest(payload)
    # The config cosign writes: an empty image config whose one diff_id is the payload's digest.
    config = json.dumps({"architecture": "", "created": "0001-01-01T00:00:00Z",
                         "history": [{"created": "0001-01-01T00:00:00Z"}], "os": "",
                         "rootfs": {"type": "layers", "diff_ids": [str(payload_digest)]}, "config": {}},
                        separators=(",", ":")).encode()
    config_digest = sha256_digest(config)
    doc = {"schemaVersion": 2, "mediaType": MediaType.OCI_MANIFEST,
           "config": {"mediaType": MediaType.OCI_CONFIG, "size": len(config), "digest": str(config_digest)},
           "layers": [{"mediaType": SIMPLE_SIGNING, "size": len(payload), "digest": str(payload_digest),
                       "annotations": {SIGNATURE_ANNOTATION: signature}}]}
    data = json.dumps(doc, separators=(",", ":")).encode()
    manifest = parse_manifest(data, MediaType.OCI_MANIFEST)
    assert isinstance(manifest, ImageManifest)
    return SignatureArtifact(digest, manifest, {payload_digest: payload, config_digest: config})


@dataclass(frozen=True)
class Verified:
    digest: str
    docker_reference: str
    key: str  # fingerprint of the key that verified it


def verify_payload(payload: bytes, signature_b64: str, key: PublicKey, digest: Digest | str) -> Verified:
    """One simple-signing payload and its signature; raises SignatureError with the reason."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (ValueError, TypeError):
        raise SignatureError("signature annotation is not base64") from None
    if not key.verify(signature, payload):
        raise SignatureError(f"signature does not verify with key {key.source}")
    try:
        doc = json.loads(payload)
        critical = doc["critical"]
        ptype = critical["type"]
        claimed = critical["image"]["docker-manifest-digest"]
        ref = critical["identity"]["docker-reference"]
    except (ValueError, KeyError, TypeError):
        raise SignatureError("signed payload is not a cosign simple-signing payload") from None
    if ptype != PAYLOAD_TYPE:
        raise SignatureError(f"signed payload has type {ptype!r}, not {PAYLOAD_TYPE!r}")
    if claimed != str(digest):
        raise SignatureError(f"signature is for {claimed}, not for {digest} (swapped or modified manifest)")
    return Verified(str(digest), str(ref), key.fingerprint)


def verify_signature_manifest(manifest: ImageManifest, read_blob: Callable[[Descriptor], bytes], key: PublicKey,
                              digest: Digest | str) -> Verified:
    """Accept when at least one simple-signing layer verifies; otherwise raise with every reason."""
    reasons = []
    for layer in manifest.layers:
        if layer.media_type != SIMPLE_SIGNING:
            reasons.append(f"layer {layer.digest.short} is {layer.media_type}, not a signature")
            continue
        sig = layer.annotations.get(SIGNATURE_ANNOTATION)
        if not sig:
            reasons.append(f"layer {layer.digest.short} has no signature annotation")
            continue
        if layer.size > limits.SIGNATURE_PAYLOAD_BYTES:
            reasons.append(f"layer {layer.digest.short} is too large for a signature payload")
            continue
        payload = read_blob(layer)
        if sha256_digest(payload) != layer.digest:
            reasons.append(f"payload {layer.digest.short} does not match its digest")
            continue
        try:
            return verify_payload(payload, sig, key, digest)
        except SignatureError as exc:
            reasons.append(str(exc))
    raise SignatureError("; ".join(reasons) or "signature manifest has no layers")
