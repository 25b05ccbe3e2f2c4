"""Rollback protection: the target registry remembers every bundle loaded into it.

Each verified load records its signed bundle manifest and signature as an OCI artifact tagged
``PREFIX/airgap-releases:r<created>-<manifest digest>``: a new tag per release, so the record advances on
registries whose tags are immutable (Harbor tag immutability rules, ECR IMMUTABLE, Nexus ALLOW_ONCE),
where a moving ``:loaded`` tag could not. The newest record is the trusted one (its signature verifies
with the load's key) with the latest ``created``; records that do not verify are ignored, so pushing
forged tags cannot hide a real one. ``airgap load`` refuses a bundle created before it unless the user
passes ``--allow-downgrade``. Records written by older releases of airgap under ``:loaded`` are still read.

A reload of the bundle recorded last finds its own record: the record's manifest is built the same way
every time from the bundle manifest and signature (:func:`record_manifest`), so a record tag whose
manifest has exactly that digest holds this bundle's verified manifest and signature, content-addressed:
it is trusted without fetching its two blobs or checking the signature again (two requests fewer).
A record tag that moved, or one written differently, is read and checked in full as before.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from airgap import limits
from airgap.bundle.format import BundleManifest
from airgap.copy import CopyEngine, CopyJob
from airgap.errors import AirgapError, DowngradeRefused, NotFound, RegistryError
from airgap.model import Descriptor, sha256_digest
from airgap.model.manifest import ImageManifest, Manifest, parse_manifest
from airgap.model.mediatypes import MediaType
from airgap.places.base import read_small
from airgap.places.memory import MemoryStore
from airgap.places.registry import RegistryStore
from airgap.progress import Progress
from airgap.registry.client import RegistryClient, Target
from airgap.sign.blob import verify_blob
from airgap.sign.keys import PublicKey

RECORD_REPOSITORY = "airgap-releases"
RECORD_TAG = "loaded"         # the moving tag older airgap releases wrote: read, never written
RECORD_TAG_RE = re.compile(r"^r[0-9A-Za-z]{1,40}-[0-9a-f]{16}$")
MAX_RECORDS = limits.RELEASE_RECORDS
ARTIFACT_TYPE = "application/vnd.airgap.load-record.v1"
MANIFEST_MEDIA = "application/vnd.airgap.bundle.manifest.v1+json"
SIGNATURE_MEDIA = "application/vnd.airgap.bundle.signature.v1"
EMPTY = b"{}"


@dataclass(frozen=True)
class LoadRecord:
    release: str
    created: str
    manifest_digest: str


def _store(client: RegistryClient, target: Target) -> RegistryStore:
    return RegistryStore(client, target.repository(RECORD_REPOSITORY))


def record_tag(created: str, manifest_digest: str) -> str:
    """Sorts by creation time as text: ``created`` is ISO 8601 UTC (``2026-12-01T19:46:53Z``)."""
    stamp = re.sub(r"[^0-9A-Za-z]", "", created)[:40] or "0"
    return f"r{stamp}-{manifest_digest.split(':')[-1][:16]}"


def _record_tags(client: RegistryClient, target: Target) -> list[str]:
    from airgap.registry.listing import paged as _paged
    repo = target.repository(RECORD_REPOSITORY)
    try:
        tags = _paged(client, f"{client.repo_path(repo)}/tags/list", "tags", f"repository:{repo}:pull")
    except NotFound:
        return []
    except RegistryError:
        # Listing may be refused where reading is not (some proxies): fall back to the legacy tag only.
        return [RECORD_TAG]
    named = sorted((t for t in tags if isinstance(t, str) and RECORD_TAG_RE.match(t)), reverse=True)
    return named[:MAX_RECORDS] + ([RECORD_TAG] if RECORD_TAG in tags else [])


def record_manifest(manifest_bytes: bytes, signature: bytes | None) -> tuple[Manifest, list[bytes]]:
    """The record artifact of a bundle manifest and its signature: (its manifest, its blobs). Always
    the same bytes for the same bundle, so a reload can recognise its record by the manifest digest."""
    layers = [(manifest_bytes, MANIFEST_MEDIA)] + ([(signature, SIGNATURE_MEDIA)] if signature else [])
    doc = {"schemaVersion": 2, "mediaType": MediaType.OCI_MANIFEST, "artifactType": ARTIFACT_TYPE,
           "config": {"mediaType": MediaType.OCI_EMPTY, "digest": str(sha256_digest(EMPTY)), "size": 2},
           "layers": [Descriptor(media, sha256_digest(data), len(data)).to_json() for data, media in layers]}
    manifest = parse_manifest(json.dumps(doc, separators=(",", ":")).encode(), MediaType.OCI_MANIFEST)
    return manifest, [data for data, _ in layers] + [EMPTY]


def _own_record(manifest_bytes: bytes, signature: bytes | None) -> tuple[str, str, LoadRecord] | None:
    """(record tag, record manifest digest, record) this signed bundle's record has when written."""
    try:
        doc = json.loads(manifest_bytes)
    except ValueError:
        return None
    if not isinstance(doc, dict) or not signature:
        return None
    manifest, _ = record_manifest(manifest_bytes, signature)
    digest = str(sha256_digest(manifest_bytes))
    rec = LoadRecord(str(doc.get("release")), str(doc.get("created")), digest)
    return record_tag(rec.created, digest), str(manifest.digest), rec


def read_record(client: RegistryClient, target: Target, key: PublicKey | None, progress: Progress,
                bundle: tuple[bytes, bytes | None] | None = None) -> LoadRecord | None:
    """The newest trusted record, or None. ``bundle``: (manifest bytes, signature) of the bundle being
    loaded, verified with ``key`` already: a record tag holding exactly its record needs no more reads."""
    if key is None:
        return None  # an unverifiable record proves nothing (the load already warned: no verification)
    store = _store(client, target)
    own = _own_record(*bundle) if bundle else None
    best: LoadRecord | None = None
    ignored = 0
    for tag in _record_tags(client, target):
        if best is not None and tag != RECORD_TAG:
            continue  # tags sort by creation time: the first trusted one is the newest
        rec = _read_own(store, tag, own) if own and tag == own[0] else None
        rec = rec or _read_one(store, tag, key)
        if rec is None:
            ignored += 1
        elif best is None or rec.created > best.created:
            best = rec
    if ignored:
        progress.note(f"warning: {ignored} release record(s) in {target} are not signed by this key; ignored")
    return best


def _read_own(store: RegistryStore, tag: str, own: tuple[str, str, LoadRecord]) -> LoadRecord | None:
    """``own``'s record when ``tag`` holds exactly its manifest (the blobs it names are this bundle's
    manifest and signature, by digest), else None."""
    try:
        manifest = store.fetch_manifest(tag)
    except NotFound:
        return None
    return own[2] if str(manifest.digest) == own[1] else None


def _read_one(store: RegistryStore, tag: str, key: PublicKey) -> LoadRecord | None:
    try:
        manifest = store.fetch_manifest(tag)
    except NotFound:
        return None
    if not isinstance(manifest, ImageManifest):
        return None

    def blob(media: str) -> bytes | None:
        desc = next((layer for layer in manifest.layers if layer.media_type == media), None)
        if desc is None or desc.size > limits.RELEASE_RECORD_BYTES:
            return None
        data = read_small(store, desc, limits.RELEASE_RECORD_BYTES)
        return data if sha256_digest(data) == desc.digest else None

    data, sig = blob(MANIFEST_MEDIA), blob(SIGNATURE_MEDIA)
    if data is None or sig is None:
        return None
    try:
        verify_blob(key, data, sig, "release record")
    except AirgapError:
        return None
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    return LoadRecord(str(doc.get("release")), str(doc.get("created")), str(sha256_digest(data)))


def check_downgrade(record: LoadRecord | None, manifest: BundleManifest, target: Target,
                    allow_downgrade: bool, progress: Progress) -> None:
    if record is None or manifest.created >= record.created:
        return
    msg = (f"bundle release {manifest.release} (created {manifest.created}) is older than release "
           f"{record.release} (created {record.created}) already loaded into {target}")
    if not allow_downgrade:
        raise DowngradeRefused(msg + "; pass --allow-downgrade to load it anyway")
    progress.note(f"warning: {msg}; loading anyway (--allow-downgrade)")


def is_recorded(record: LoadRecord | None, manifest_bytes: bytes) -> bool:
    """Whether ``record`` (the newest trusted one) is this very bundle manifest: a reload has nothing to
    record (its tag exists already; writing again could only move it, which immutable targets refuse)."""
    return record is not None and record.manifest_digest == str(sha256_digest(manifest_bytes))


def write_record(client: RegistryClient, target: Target, manifest_bytes: bytes, signature: bytes | None,
                 record: LoadRecord | None, created: str) -> bool:
    """Record this bundle unless a newer one is recorded already (an allowed downgrade keeps it).

    Raises when the record cannot be written: a load whose rollback protection silently stopped
    working is not a success."""
    if record is not None and (record.created > created or is_recorded(record, manifest_bytes)):
        return False
    mem = MemoryStore("release record")
    manifest, blobs = record_manifest(manifest_bytes, signature)
    for data in blobs:
        mem.add_blob(data, sha256_digest(data))
    tag = record_tag(created, str(sha256_digest(manifest_bytes)))
    mem.add_manifest(manifest, tag)
    CopyEngine(concurrency=2).copy([CopyJob("release record", mem, tag, _store(client, target), [tag])])
    return True
