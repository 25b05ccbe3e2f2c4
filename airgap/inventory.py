"""What a registry holds under a prefix: repositories, tags, manifests and every blob they reach.

Taken on the isolated side and carried out, it lets the connected side build a delta against what
the target really has (``airgap bundle --base inventory.json``), not what someone believes it has.
The registry is opened through its kind (airgap/targets/): ECR's token and repository list, Nexus's
repository endpoint, as a load would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from airgap.errors import NotFound
from airgap.fsutil import atomic_write
from airgap.model.manifest import ImageIndex, ImageManifest
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

    def to_json(self) -> bytes:
        return json.dumps({"kind": "AirgapInventory", "registry": self.registry, "created": self.created,
                           "repositories": self.repositories, "blobs": sorted(self.blobs)}, indent=2).encode() + b"\n"


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
        inv.repositories[store.repository] = entry
        progress.note(f"  {store.repository}: {len(entry)} tags")
    return inv


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
