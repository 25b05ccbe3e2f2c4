"""cosign v3's image signature: a Sigstore bundle stored as an OCI 1.1 referrer (cosign specs/BUNDLE_SPEC.md).

The referrer is an image manifest with ``artifactType: application/vnd.dev.sigstore.bundle.v0.3+json``,
the empty config, one layer holding the bundle JSON and ``subject`` = the signed manifest. The bundle
holds a DSSE envelope over an in-toto statement (:mod:`airgap.sign.dsse`), predicate
``https://sigstore.dev/cosign/sign/v1``, subject = the image digest, and its verification material:
a public-key hint for key-based signatures (what ``cosign sign --key`` writes with no transparency log),
or a Fulcio certificate with transparency-log entries and timestamps for keyless ones
(:mod:`airgap.sign.keyless`).

Found through the place's referrers (API or tag schema), never through a tag: on a registry with
immutable tags a new signature is a new manifest by digest, not a re-push of a tag. Our signatures are
kept like legacy ones (:mod:`airgap.sign.store`), so every bundle of an image carries the same referrer.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from airgap import limits, safejson
from airgap.errors import AirgapError, NotFound, SignatureError
from airgap.fsutil import atomic_write
from airgap.model import Descriptor, Digest, sha256_digest
from airgap.model.attachment import REFERRER, SIGSTORE_BUNDLE_PREFIX, Attachment
from airgap.model.manifest import ImageManifest, parse_manifest
from airgap.model.mediatypes import MediaType
from airgap.places.base import Store, read_small
from airgap.places.memory import MemoryStore
from airgap.sign.cosign import Verified
from airgap.sign.dsse import (
    COSIGN_SIGN_PREDICATE, IN_TOTO_PAYLOAD_TYPE, Envelope, check_signs_image, make_statement, pae, parse_statement,
)
from airgap.sign.keyless import KeylessTrust, verify_bundle
from airgap.sign.keys import PrivateKey, PublicKey

BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
EMPTY_JSON = b"{}"
CONTENT_ANNOTATION = "dev.sigstore.bundle.content"
PREDICATE_ANNOTATION = "dev.sigstore.bundle.predicateType"

if TYPE_CHECKING:
    from airgap.sign.formats import Signed

Trust = Union[PublicKey, KeylessTrust]


def key_hint(key: PublicKey) -> str:
    """What cosign writes as ``verificationMaterial.publicKey.hint``: base64 sha256 of the DER key."""
    return base64.b64encode(bytes.fromhex(key.fingerprint.split(":", 1)[1])).decode()


def make_bundle(key: PrivateKey, digest: Digest, identity: str) -> bytes:
    payload = make_statement(digest, identity)
    envelope = Envelope(IN_TOTO_PAYLOAD_TYPE, payload, [key.sign(pae(IN_TOTO_PAYLOAD_TYPE, payload))])
    doc = {"mediaType": BUNDLE_V03, "verificationMaterial": {"publicKey": {"hint": key_hint(key.public)}},
           "dsseEnvelope": envelope.to_json()}
    return json.dumps(doc, separators=(",", ":")).encode()


def referrer_manifest(bundle: bytes, subject: Descriptor) -> tuple[ImageManifest, dict[Digest, bytes]]:
    """The OCI referrer carrying ``bundle`` for ``subject``: same inputs, same bytes."""
    layer, empty = sha256_digest(bundle), sha256_digest(EMPTY_JSON)
    doc = {"schemaVersion": 2, "mediaType": MediaType.OCI_MANIFEST, "artifactType": BUNDLE_V03,
           "config": {"mediaType": MediaType.OCI_EMPTY, "size": len(EMPTY_JSON), "digest": str(empty)},
           "layers": [{"mediaType": BUNDLE_V03, "size": len(bundle), "digest": str(layer)}],
           "subject": {"mediaType": subject.media_type, "size": subject.size, "digest": str(subject.digest)},
           "annotations": {CONTENT_ANNOTATION: "dsse-envelope", PREDICATE_ANNOTATION: COSIGN_SIGN_PREDICATE}}
    manifest = parse_manifest(json.dumps(doc, separators=(",", ":")).encode(), MediaType.OCI_MANIFEST)
    assert isinstance(manifest, ImageManifest)
    return manifest, {layer: bundle, empty: EMPTY_JSON}


def parse_bundle(data: bytes, where: str) -> dict:
    try:
        doc = safejson.loads(data, max_bytes=limits.SIGNATURE_PAYLOAD_BYTES)
    except ValueError as exc:
        raise SignatureError(f"{where}: Sigstore bundle is not JSON ({exc})") from None
    if not isinstance(doc, dict) or not str(doc.get("mediaType", "")).startswith(SIGSTORE_BUNDLE_PREFIX):
        raise SignatureError(f"{where}: not a Sigstore bundle (mediaType)")
    return doc


def verify_key_bundle(doc: dict, key: PublicKey) -> Envelope:
    """A key-based bundle's DSSE envelope, checked with ``key`` (any one signature is enough)."""
    material = doc.get("verificationMaterial")
    if not isinstance(material, dict) or "publicKey" not in material:
        what = "a certificate" if isinstance(material, dict) and material else "no verification material"
        raise SignatureError(f"bundle carries {what}, not a public-key signature (verify it keyless: "
                             "identity:, issuer:, trusted-root:)")
    if "dsseEnvelope" not in doc:
        raise SignatureError("bundle holds a message signature, not a DSSE envelope (not an image signature)")
    envelope = Envelope.from_json(doc["dsseEnvelope"])
    signed = pae(envelope.payload_type, envelope.payload)
    if not any(key.verify(sig, signed) for sig in envelope.signatures):
        raise SignatureError(f"bundle signature does not verify with key {key.source}")
    return envelope


def verify_bundle_bytes(data: bytes, trust: Trust, digest: Digest, where: str = "bundle") -> Verified:
    """One bundle's check: cryptography (key or keyless) and that it signs ``digest``."""
    doc = parse_bundle(data, where)
    if isinstance(trust, KeylessTrust):
        result = verify_bundle(data, trust)
        envelope, signer = result.envelope, f"keyless:{result.identity} @ {result.issuer}"
    else:
        envelope, signer = verify_key_bundle(doc, trust), trust.fingerprint
    name = check_signs_image(parse_statement(envelope), digest)
    return Verified(str(digest), name, signer)


class BundleKeeper:
    """Our bundles kept by key, identity and digest, checked with the key before reuse (ECDSA is
    randomised: a new signature each bundle would pile up a referrer per release)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def bundle(self, key: PrivateKey, identity: str, digest: Digest) -> bytes:
        fp = key.public.fingerprint.split(":", 1)[1]
        ident = hashlib.sha256(identity.encode()).hexdigest()[:16]
        path = self.root / fp / f"{digest.hex}-{ident}.sigstore.json"
        try:
            kept = path.read_bytes()
            envelope = verify_key_bundle(parse_bundle(kept, str(path)), key.public)
            if envelope.payload == make_statement(digest, identity):
                return kept
        except (OSError, AirgapError):
            pass
        data = make_bundle(key, digest, identity)
        try:
            atomic_write(path, data)
        except OSError:
            pass  # a read-only cache only costs reuse, never the bundle
        return data


class SigstoreBundle:
    """cosign v3's Sigstore-bundle referrers (key-based or keyless)."""

    name = "bundle"

    def __init__(self, kept: Any = None):
        # The legacy format's SignatureStore or a BundleKeeper: either names the cache root.
        root = getattr(kept, "root", None)
        self.kept = BundleKeeper(Path(root)) if root is not None else None

    def sign(self, key: PrivateKey, identity: str, digest: Digest, subject: Descriptor | None = None) -> Signed:
        from airgap.sign.formats import Signed  # formats registers this class: imported here, not at the top

        if subject is None:
            raise SignatureError(f"a bundle signature of {digest} needs the signed manifest's descriptor")
        data = self.kept.bundle(key, identity, digest) if self.kept else make_bundle(key, digest, identity)
        manifest, blobs = referrer_manifest(data, subject)
        att = Attachment(digest, manifest.referrer_descriptor(), BUNDLE_V03, REFERRER)
        return Signed(att, MemoryStore(f"bundle signature of {digest.short}", blobs,
                                       {str(manifest.digest): manifest}))

    def find(self, store: Store, digest: Digest) -> list[Attachment]:
        out = []
        for desc in store.referrers(digest):
            try:
                manifest = store.fetch_manifest(str(desc.digest))
            except NotFound:
                continue  # a stale index entry
            att = Attachment.of(digest, manifest)
            if manifest.subject is not None and manifest.subject.digest == digest \
                    and att.artifact_type.startswith(SIGSTORE_BUNDLE_PREFIX):
                out.append(att)
        return out

    def verify(self, store: Store, attachment: Attachment, key: Trust, digest: Digest) -> Verified:
        where = f"bundle signature {attachment.digest.short}"
        manifest = store.fetch_manifest(str(attachment.digest))
        if not isinstance(manifest, ImageManifest):
            raise SignatureError(f"{where} is not an image manifest")
        if manifest.subject is None or manifest.subject.digest != digest:
            raise SignatureError(f"{where} refers to another manifest, not {digest}")
        layers = [m for m in manifest.layers if m.media_type.startswith(SIGSTORE_BUNDLE_PREFIX)]
        if len(layers) != 1:
            raise SignatureError(f"{where} has {len(layers)} bundle layers, not one")
        data = read_small(store, layers[0], limits.SIGNATURE_PAYLOAD_BYTES)
        if sha256_digest(data) != layers[0].digest:
            raise SignatureError(f"{where}: bundle layer does not match its digest")
        return verify_bundle_bytes(data, key, digest, where)


__all__ = ["SigstoreBundle", "BundleKeeper", "BUNDLE_V03", "make_bundle", "referrer_manifest",
           "verify_bundle_bytes", "verify_key_bundle", "key_hint"]
