"""Signatures kept by image digest and key, so every bundle of an image carries the same signature bytes.

ECDSA signatures are randomised: signing the same payload twice gives two valid signatures, two
``sha256-<hex>.sig`` manifests and, on a registry with immutable tags (Harbor, ECR IMMUTABLE), a
refused re-push of the ``.sig`` tag on the next release (goharbor/harbor#17332, cosign#313). So the
connected side signs a (key, identity, digest) once and keeps the signature next to its content store;
later bundles reuse it. A kept signature is checked with the key before it is reused, so a damaged or
planted file only costs a fresh signature.

Layout: ``<root>/<key fingerprint hex>/<digest hex>-<sha256(identity)[:16]>.json`` holding
``{"payload": <base64>, "signature": <base64>}``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from airgap.fsutil import atomic_write
from airgap.model import Digest
from airgap.sign.cosign import SignatureArtifact, SignatureError, make_payload, signature_artifact, verify_payload
from airgap.sign.keys import PrivateKey


class SignatureStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, key: PrivateKey, identity: str, digest: Digest) -> Path:
        fp = key.public.fingerprint.split(":", 1)[1]
        ident = hashlib.sha256(identity.encode()).hexdigest()[:16]
        return self.root / fp / f"{digest.hex}-{ident}.json"

    def _kept(self, path: Path, key: PrivateKey, payload: bytes, digest: Digest) -> SignatureArtifact | None:
        try:
            doc = json.loads(path.read_text())
            kept_payload = base64.b64decode(doc["payload"], validate=True)
            signature = str(doc["signature"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if kept_payload != payload:
            return None
        try:
            verify_payload(payload, signature, key.public, digest)
        except SignatureError:
            return None
        return signature_artifact(payload, signature, digest)

    def sign(self, key: PrivateKey, identity: str, digest: Digest) -> SignatureArtifact:
        """The kept signature of ``digest`` as ``identity`` by ``key``, or a new one (then kept)."""
        digest = Digest.parse(str(digest))
        payload = make_payload(identity, digest)
        path = self._path(key, identity, digest)
        art = self._kept(path, key, payload, digest)
        if art is not None:
            return art
        signature = base64.b64encode(key.sign(payload)).decode()
        doc = {"payload": base64.b64encode(payload).decode(), "signature": signature}
        try:
            atomic_write(path, json.dumps(doc).encode() + b"\n")
        except OSError:
            pass  # a read-only cache only costs reuse, never the bundle
        return signature_artifact(payload, signature, digest)
