"""Signature formats behind one protocol: how a signature of an image digest is made, found in a
place and verified. The copy engine carries the result as an attachment of the image like any other
(:mod:`airgap.copy`); nothing else needs to know which format it is.

Today one format: cosign's key-based legacy ``sha256-<hex>.sig`` tag (:mod:`airgap.sign.cosign`),
signed once per (key, identity, digest) and kept (:mod:`airgap.sign.store`), so every bundle of an
image carries the same bytes. A Sigstore-bundle referrer format is one more class here.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Protocol

from airgap import limits
from airgap.errors import AirgapError, InputError
from airgap.model import Descriptor, Digest
from airgap.model.attachment import Attachment
from airgap.model.manifest import ImageManifest
from airgap.places.base import Store, read_small
from airgap.places.memory import MemoryStore
from airgap.sign.cosign import (
    SignatureError, Verified, make_payload, signature_artifact, signature_tag, verify_signature_manifest,
)
from airgap.sign.keys import PrivateKey, PublicKey
from airgap.sign.store import SignatureStore



@dataclass(frozen=True)
class Signed:
    """A new signature as an attachment, with a place holding its manifest and blobs."""

    attachment: Attachment
    store: MemoryStore


class SignatureFormat(Protocol):
    name: str

    def sign(self, key: PrivateKey, identity: str, digest: Digest) -> Signed:
        """A signature of ``digest`` naming ``identity``."""

    def find(self, store: Store, digest: Digest) -> list[Attachment]:
        """The signatures of ``digest`` in this format that ``store`` holds (unverified)."""

    def verify(self, store: Store, attachment: Attachment, key: PublicKey, digest: Digest) -> Verified:
        """Check one signature; raises SignatureError naming the reason."""


class CosignLegacy:
    """cosign's key-based ``sha256-<hex>.sig`` simple-signing manifests (cosign SIGNATURE_SPEC)."""

    name = "legacy"

    def __init__(self, kept: SignatureStore | None = None):
        self.kept = kept

    def sign(self, key: PrivateKey, identity: str, digest: Digest) -> Signed:
        if self.kept is not None:
            art = self.kept.sign(key, identity, digest)
        else:
            payload = make_payload(identity, digest)
            art = signature_artifact(payload, base64.b64encode(key.sign(payload)).decode(), digest)
        return Signed(art.attachment, art.store())

    def find(self, store: Store, digest: Digest) -> list[Attachment]:
        tag = signature_tag(digest)
        manifest = store.fetch_tagged(tag)
        return [Attachment.of(digest, manifest, tag)] if manifest is not None else []

    def verify(self, store: Store, attachment: Attachment, key: PublicKey, digest: Digest) -> Verified:
        manifest = store.fetch_manifest(str(attachment.digest))
        if not isinstance(manifest, ImageManifest):
            raise SignatureError(f"signature {attachment.digest} is not an image manifest")

        def read_blob(desc: Descriptor) -> bytes:
            return read_small(store, desc, limits.SIGNATURE_PAYLOAD_BYTES)

        return verify_signature_manifest(manifest, read_blob, key, digest)


FORMATS: dict[str, type] = {CosignLegacy.name: CosignLegacy}


def signature_format(name: str, kept: SignatureStore | None = None) -> SignatureFormat:
    try:
        return FORMATS[name](kept)
    except KeyError:
        raise InputError(f"unknown signature format {name!r} (known: {', '.join(sorted(FORMATS))})") from None


def verify_any(fmt: SignatureFormat, store: Store, key: PublicKey, digest: Digest) -> Verified:
    """Accept when one signature of ``digest`` in ``store`` verifies with ``key``; else raise with why."""
    found = fmt.find(store, digest)
    if not found:
        raise SignatureError(f"no {fmt.name} signature of {digest} in {store.description}")
    reasons: list[str] = []
    for att in found:
        try:
            return fmt.verify(store, att, key, digest)
        except AirgapError as exc:
            reasons.append(str(exc))
    raise SignatureError("; ".join(reasons))
