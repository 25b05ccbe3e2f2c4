"""Rollback protection: the target registry remembers the newest bundle loaded into it.

The record is an OCI artifact at ``PREFIX/airgap-releases:loaded`` holding the signed bundle manifest
and its signature, so it cannot be forged without the signing key. ``airgap load`` refuses a bundle
created before the recorded one unless the user passes ``--allow-downgrade``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from airgap.bundle.format import BundleManifest
from airgap.copy import CopyEngine, CopyJob
from airgap.errors import AirgapError, BundleError, NotFound
from airgap.model import Descriptor, sha256_digest
from airgap.model.manifest import ImageManifest, parse_manifest
from airgap.model.mediatypes import MediaType
from airgap.places.base import read_small
from airgap.places.memory import MemoryStore
from airgap.places.registry import RegistryStore
from airgap.progress import Progress
from airgap.registry.client import RegistryClient, Target
from airgap.sign.blob import verify_blob
from airgap.sign.keys import PublicKey

RECORD_REPOSITORY = "airgap-releases"
RECORD_TAG = "loaded"
ARTIFACT_TYPE = "application/vnd.airgap.load-record.v1"
MANIFEST_MEDIA = "application/vnd.airgap.bundle.manifest.v1+json"
SIGNATURE_MEDIA = "application/vnd.airgap.bundle.signature.v1"
EMPTY = b"{}"


class DowngradeRefused(BundleError):
    pass


@dataclass(frozen=True)
class LoadRecord:
    release: str
    created: str
    manifest_digest: str
    trusted: bool  # its signature verified with the key given to this load


def _store(client: RegistryClient, target: Target) -> RegistryStore:
    return RegistryStore(client, target.repository(RECORD_REPOSITORY))


def read_record(client: RegistryClient, target: Target, key: PublicKey | None,
                progress: Progress) -> LoadRecord | None:
    if key is None:
        return None  # an unverifiable record proves nothing (the load already warned: no verification)
    store = _store(client, target)
    try:
        manifest = store.fetch_manifest(RECORD_TAG)
    except NotFound:
        return None
    if not isinstance(manifest, ImageManifest):
        return None

    def blob(media: str) -> bytes | None:
        desc = next((l for l in manifest.layers if l.media_type == media), None)
        if desc is None or desc.size > 64 << 20:
            return None
        data = read_small(store, desc, 64 << 20)
        return data if sha256_digest(data) == desc.digest else None

    data, sig = blob(MANIFEST_MEDIA), blob(SIGNATURE_MEDIA)
    if data is None:
        return None
    trusted = False
    if sig is not None:
        try:
            verify_blob(key, data, sig, "release record")
            trusted = True
        except AirgapError:
            trusted = False
    if not trusted:
        progress.note(f"warning: the release record in {target} is not signed by this key; it is ignored")
        return None
    doc = json.loads(data)
    return LoadRecord(str(doc.get("release")), str(doc.get("created")), str(sha256_digest(data)), trusted)


def check_downgrade(record: LoadRecord | None, manifest: BundleManifest, target: Target,
                    allow_downgrade: bool, progress: Progress) -> None:
    if record is None or manifest.created >= record.created:
        return
    msg = (f"bundle release {manifest.release} (created {manifest.created}) is older than release "
           f"{record.release} (created {record.created}) already loaded into {target}")
    if not allow_downgrade:
        raise DowngradeRefused(msg + "; pass --allow-downgrade to load it anyway")
    progress.note(f"warning: {msg}; loading anyway (--allow-downgrade)")


def write_record(client: RegistryClient, target: Target, manifest_bytes: bytes, signature: bytes | None,
                 record: LoadRecord | None, created: str) -> bool:
    """Record this bundle unless a newer one is recorded already (an allowed downgrade keeps it)."""
    if record is not None and record.created > created:
        return False
    mem = MemoryStore("release record")
    layers = [(manifest_bytes, MANIFEST_MEDIA)] + ([(signature, SIGNATURE_MEDIA)] if signature else [])
    for data, _ in layers + [(EMPTY, "")]:
        mem.add_blob(data, sha256_digest(data))
    doc = {"schemaVersion": 2, "mediaType": MediaType.OCI_MANIFEST, "artifactType": ARTIFACT_TYPE,
           "config": {"mediaType": MediaType.OCI_EMPTY, "digest": str(sha256_digest(EMPTY)), "size": 2},
           "layers": [Descriptor(media, sha256_digest(data), len(data)).to_json() for data, media in layers]}
    manifest = parse_manifest(json.dumps(doc, separators=(",", ":")).encode(), MediaType.OCI_MANIFEST)
    mem.add_manifest(manifest, RECORD_TAG)
    CopyEngine(concurrency=2).copy([CopyJob("release record", mem, RECORD_TAG, _store(client, target), [RECORD_TAG])])
    return True
