"""What a target already holds, for delta bundles: a previous bundle, its manifest, or an inventory.

A delta bundle ships every manifest and signature of the new release but only the blobs the base
does not reference. The base is named by the sha256 of its manifest (or inventory) bytes, so a chain
of deltas can be followed back and a load can say which bundle must go first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from airgap.bundle.format import BundleManifest
from airgap.errors import InputError
from airgap.model import sha256_digest
from airgap.sign.blob import verify_blob
from airgap.sign.keys import PublicKey


@dataclass(frozen=True)
class Base:
    kind: str                 # "bundle" or "inventory"
    digest: str               # sha256 of the base's manifest or inventory bytes
    release: str
    blobs: frozenset[str]     # every digest the target holds once the base is loaded
    source: str
    attachments: frozenset[str] = frozenset()  # attachment manifests the base carried or the target holds

    def to_json(self) -> dict:
        return {"kind": self.kind, "digest": self.digest, "release": self.release, "source": Path(self.source).name}


def _read_base_bytes(path: Path) -> tuple[bytes, bytes | None]:
    """(document bytes, detached signature) from a bundle file or a JSON document (+ DOC.sig)."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if head.lstrip()[:1] == b"{":
        data = path.read_bytes()
        sig_path = path.with_name(path.name + ".sig")
        return data, sig_path.read_bytes() if sig_path.is_file() else None
    from airgap.bundle.reader import read_head

    data, _, sig = read_head(path)
    return data, sig


def load_base(path: Path, key: PublicKey | None = None) -> Base:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"base {path} does not exist (give a previous bundle, its manifest, or an inventory)")
    data, sig = _read_base_bytes(path)
    if key is not None:
        if sig is None:
            raise InputError(f"base {path} is not signed, but --base-key was given")
        verify_blob(key, data, sig, f"base {path}")
    try:
        doc = json.loads(data)
    except ValueError:
        raise InputError(f"base {path}: not JSON") from None
    digest = str(sha256_digest(data))
    if doc.get("kind") == "AirgapBundle":
        m = BundleManifest.from_json(data, str(path))
        if not m.referenced:
            raise InputError(f"base {path} was written by an airgap that did not record its blobs; "
                             "use an inventory of the target instead (airgap inventory)")
        return Base("bundle", digest, m.release, frozenset(m.referenced), str(path),
                    frozenset(a["digest"] for i in m.images for a in i.attachments))
    if doc.get("kind") == "AirgapInventory":
        blobs = doc.get("blobs") or []
        if not isinstance(blobs, list) or not all(isinstance(b, str) for b in blobs):
            raise InputError(f"base {path}: malformed inventory (blobs: must be a list of digests)")
        listed = doc.get("attachments") if isinstance(doc.get("attachments"), dict) else {}
        known = frozenset(a["digest"] for items in listed.values() if isinstance(items, list) for a in items
                          if isinstance(a, dict) and isinstance(a.get("digest"), str))
        return Base("inventory", digest, str(doc.get("registry", "")), frozenset(blobs), str(path), known)
    raise InputError(f"base {path} is neither an airgap bundle manifest nor an inventory")
