"""Signature formats behind one protocol: how a signature of an image digest is made, found in a
place and verified. The copy engine carries the result as an attachment of the image like any other
(:mod:`airgap.copy`); nothing else needs to know which format it is.

Two formats: cosign's key-based legacy ``sha256-<hex>.sig`` tag (:mod:`airgap.sign.cosign`), and
cosign v3's Sigstore-bundle referrer (:mod:`airgap.sign.sigstore_bundle`, key-based or keyless). Ours
are signed once per (key, identity, digest) and kept (:mod:`airgap.sign.store`), so every bundle of an
image carries the same bytes.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from airgap import limits
from airgap.errors import AirgapError, InputError
from airgap.model import Descriptor, Digest
from airgap.model.attachment import Attachment
from airgap.model.manifest import ImageManifest
from airgap.places.base import Store, read_small
from airgap.sign.cosign import (
    SignatureError, Verified, make_payload, signature_artifact, signature_tag, verify_signature_manifest,
)
from airgap.sign.keys import PublicKey

# The Sigstore-bundle format (with its DSSE and keyless modules: a dozen dataclasses, each compiled at
# import) is imported only where a bundle signature is made, found or checked: a load of a bundle
# signed in the legacy format, like a no-op reload, never needs it.
if TYPE_CHECKING:
    from airgap.places.memory import MemoryStore
    from airgap.sign.keys import PrivateKey
    from airgap.sign.sigstore_bundle import SigstoreBundle, Trust
    from airgap.sign.store import SignatureStore


@dataclass(frozen=True)
class Signed:
    """A new signature as an attachment, with a place holding its manifest and blobs."""

    attachment: Attachment
    store: MemoryStore


class SignatureFormat(Protocol):
    name: str

    def sign(self, key: PrivateKey, identity: str, digest: Digest, subject: Descriptor | None = None) -> Signed:
        """A signature of ``digest`` (whose descriptor is ``subject``) naming ``identity``."""

    def find(self, store: Store, digest: Digest) -> list[Attachment]:
        """The signatures of ``digest`` in this format that ``store`` holds (unverified)."""

    def verify(self, store: Store, attachment: Attachment, key: Trust, digest: Digest) -> Verified:
        """Check one signature with a key or a keyless trust; raises SignatureError naming the reason."""


class CosignLegacy:
    """cosign's key-based ``sha256-<hex>.sig`` simple-signing manifests (cosign SIGNATURE_SPEC)."""

    name = "legacy"

    def __init__(self, kept: SignatureStore | None = None):
        self.kept = kept

    def sign(self, key: PrivateKey, identity: str, digest: Digest, subject: Descriptor | None = None) -> Signed:
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

    def verify(self, store: Store, attachment: Attachment, key: Trust, digest: Digest) -> Verified:
        if not isinstance(key, PublicKey):  # a KeylessTrust
            raise SignatureError("keyless legacy signatures (certificate annotations) are not verified; "
                                 "keyless upstreams are checked in the Sigstore bundle format")
        manifest = store.fetch_manifest(str(attachment.digest))
        if not isinstance(manifest, ImageManifest):
            raise SignatureError(f"signature {attachment.digest} is not an image manifest")

        def read_blob(desc: Descriptor) -> bytes:
            return read_small(store, desc, limits.SIGNATURE_PAYLOAD_BYTES)

        return verify_signature_manifest(manifest, read_blob, key, digest)


_LAZY = {"SigstoreBundle": "airgap.sign.sigstore_bundle", "Trust": "airgap.sign.sigstore_bundle",
         "KeylessTrust": "airgap.sign.keyless", "SignatureStore": "airgap.sign.store",
         "MemoryStore": "airgap.places.memory", "PrivateKey": "airgap.sign.keys"}


def __getattr__(name: str) -> object:
    """``from airgap.sign.formats import SigstoreBundle`` (and the other names this module used to
    import at the top) still works: imported on first use (PEP 562)."""
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _sigstore_bundle() -> type[SigstoreBundle]:
    from airgap.sign.sigstore_bundle import SigstoreBundle
    return SigstoreBundle


#: the formats by name (the Sigstore-bundle one is imported when asked for)
FORMATS = (CosignLegacy.name, "bundle")
#: what ``--signature-format`` takes: one format, or both side by side
CHOICES = ("legacy", "bundle", "both")


def signature_format(name: str, kept: SignatureStore | None = None) -> SignatureFormat:
    if name not in FORMATS:
        raise InputError(f"unknown signature format {name!r} (known: {', '.join(sorted(FORMATS))})")
    cls = CosignLegacy if name == CosignLegacy.name else _sigstore_bundle()
    return cls(kept)


def signature_formats(choice: str, kept: SignatureStore | None = None) -> list[SignatureFormat]:
    """The formats ``--signature-format legacy|bundle|both`` names, in signing order."""
    if choice == "both":
        return [signature_format("legacy", kept), signature_format("bundle", kept)]
    if choice not in CHOICES:
        raise InputError(f"unknown signature format {choice!r} (known: {', '.join(CHOICES)})")
    return [signature_format(choice, kept)]


def all_formats() -> list[SignatureFormat]:
    return [CosignLegacy(), _sigstore_bundle()()]


def verify_any(fmt: SignatureFormat | list[SignatureFormat], store: Store, key: Trust, digest: Digest) -> Verified:
    """Accept when one signature of ``digest`` in ``store`` verifies with ``key``; else raise with why."""
    return find_verified(fmt, store, key, digest)[0]


def find_verified(fmt: SignatureFormat | list[SignatureFormat], store: Store, key: Trust, digest: Digest
                  ) -> tuple[Verified, SignatureFormat, Attachment]:
    """Accept when one signature of ``digest`` in ``store``, in any of the formats, verifies with ``key``
    (one good signature is enough, as in cosign); else raise with every reason."""
    fmts = fmt if isinstance(fmt, list) else [fmt]
    reasons: list[str] = []
    for f in fmts:
        try:
            found = f.find(store, digest)
        except AirgapError as exc:
            reasons.append(f"{f.name}: {exc}")
            continue
        for att in found:
            try:
                return f.verify(store, att, key, digest), f, att
            except AirgapError as exc:
                reasons.append(str(exc))
    if not reasons:
        names = " or ".join(f.name for f in fmts)
        raise SignatureError(f"no {names} signature of {digest} in {store.description}")
    raise SignatureError("; ".join(reasons))


def recorded_signatures(store: Store, legacy: list[dict], bundle: list[dict]
                        ) -> list[tuple[SignatureFormat, Attachment]]:
    """The signatures a bundle manifest records for an image, as attachments in ``store``: legacy ones
    under their ``.sig`` tag, Sigstore-bundle referrers by the digest the record names (the signed
    manifest pins it; the place need not list referrers). Unverified: see verify()."""
    out: list[tuple[SignatureFormat, Attachment]] = []
    legacy_fmt = CosignLegacy()
    for record in legacy:
        signed = Digest.parse(record["signed"])
        out.extend((legacy_fmt, att) for att in legacy_fmt.find(store, signed))
    if not bundle:
        return out
    bundle_fmt = _sigstore_bundle()()
    for record in bundle:
        manifest = store.fetch_manifest(record["digest"])
        out.append((bundle_fmt, Attachment.of(Digest.parse(record["signed"]), manifest)))
    return out
