"""What a registry holds under a prefix: repositories, tags, manifests and every blob they reach.

Taken on the isolated side and carried out, it lets the connected side build a delta against what
the target really has (``airgap bundle --base inventory.json``), not what someone believes it has.
The registry is opened through its kind (airgap/targets/): ECR's token and repository list, Nexus's
repository endpoint, as a load would.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from airgap import limits
from airgap.errors import NotFound, RegistryError
from airgap.model import Digest
from airgap.fsutil import atomic_write
from airgap.model.manifest import ImageIndex, ImageManifest
from airgap.places.base import Store
from airgap.progress import Progress
from airgap.registry.listing import paged
from airgap.sign.blob import sign_blob
from airgap.sign.keys import PrivateKey
from airgap.targets.base import OpenTarget


@dataclass
class Inventory:
    registry: str
    created: str
    repositories: dict[str, dict[str, str]] = field(default_factory=dict)  # repo -> tag -> digest
    blobs: set[str] = field(default_factory=set)
    # repo -> the attachments (signatures, SBOMs, attestations) of its tagged images, found as a load
    # writes them: referrers API, tag schema, cosign tags; their manifests and blobs are in ``blobs``
    attachments: dict[str, list[dict]] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps({"kind": "AirgapInventory", "registry": self.registry, "created": self.created,
                           "repositories": self.repositories, "blobs": sorted(self.blobs),
                           "attachments": self.attachments}, indent=2).encode() + b"\n"


def repositories(opened: OpenTarget) -> list[str]:
    """Every repository under the target's prefix, as its kind lists them (catalog; ECR: its API)."""
    return opened.repositories()


def take_inventory(opened: OpenTarget, repos: list[str] | None = None,
                   progress: Progress | None = None) -> Inventory:
    """What ``opened`` holds under its prefix; ``repos`` names repositories relative to the prefix."""
    progress = progress or Progress()
    target, client = opened.target, opened.client
    inv = Inventory(str(target), datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    names = [target.repository(r) for r in repos] if repos else repositories(opened)
    for repo in names:
        store = opened.store(repo)
        try:
            tags = paged(client, f"{client.repo_path(repo)}/tags/list", "tags", f"repository:{repo}:pull")
        except NotFound:
            continue
        entry: dict[str, str] = {}
        subjects: list[Digest] = []
        for tag in tags:
            root = store.fetch_manifest(tag)
            entry[tag] = str(root.digest)
            inv.blobs.add(str(root.digest))
            children = [store.fetch_manifest(str(c.digest)) for c in root.manifests] \
                if isinstance(root, ImageIndex) else [root]
            for m in children:
                inv.blobs.add(str(m.digest))
                if isinstance(m, ImageManifest):
                    inv.blobs.update(str(b.digest) for b in m.blobs())
            if not _ATTACHMENT_TAG.match(tag):  # a signature's or index's own tag is not an image
                subjects.extend([root.digest] + [m.digest for m in children if m is not root])
        inv.repositories[store.repository] = entry
        found = _attachments(store, subjects, inv.blobs)
        if found:
            inv.attachments[store.repository] = found
        progress.note(f"  {store.repository}: {len(entry)} tags, {len(found)} attachments")
    return inv


_ATTACHMENT_TAG = re.compile(r"^sha256-[a-f0-9]{64}(\.(sig|att|sbom))?$")


def _attachments(store: Store, subjects: list[Digest], blobs: set[str]) -> list[dict]:
    """Every attachment of ``subjects`` here, recursively (a signature of an SBOM), within the limits a
    bundle's discovery keeps; their manifests and blobs are added to ``blobs``."""
    out: list[dict] = []
    seen: set[Digest] = set()
    level = list(dict.fromkeys(subjects))
    for _ in range(limits.MAX_ATTACHMENT_DEPTH):
        found: list[Digest] = []
        for subject in level:
            try:
                listed = store.attachments(subject)
            except (NotFound, RegistryError):
                continue
            for att in listed:
                if att.digest in seen or len(out) >= limits.MAX_ATTACHMENTS:
                    continue
                seen.add(att.digest)
                manifest = store.fetch_manifest(str(att.digest))
                blobs.add(str(att.digest))
                if isinstance(manifest, ImageManifest):
                    blobs.update(str(b.digest) for b in manifest.blobs())
                out.append({"digest": str(att.digest), "subject": str(subject), "artifactType": att.artifact_type,
                            "kind": att.kind, **({"tag": att.tag} if att.tag else {})})
                found.append(att.digest)
        if not found:
            break
        level = found
    return out


def write_inventory(inv: Inventory, path: Path, key: PrivateKey | None) -> list[Path]:
    data = inv.to_json()
    atomic_write(path, data)
    out = [path]
    if key is not None:
        sig = path.with_name(path.name + ".sig")
        atomic_write(sig, sign_blob(key, data) + b"\n")
        out.append(sig)
    return out


__all__ = ["Inventory", "repositories", "take_inventory", "write_inventory"]
