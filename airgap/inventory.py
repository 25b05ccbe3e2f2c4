"""What a registry holds under a prefix: repositories, tags, manifests and every blob they reach.

Taken on the isolated side and carried out, it lets the connected side build a delta against what
the target really has (``airgap bundle --base inventory.json``), not what someone believes it has.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from airgap.errors import NotFound, RegistryError
from airgap.fsutil import atomic_write
from airgap.model.manifest import ImageIndex, ImageManifest
from airgap.places.registry import RegistryStore
from airgap.progress import Progress
from airgap.registry.client import RegistryClient, Target
from airgap.sign.blob import sign_blob
from airgap.sign.keys import PrivateKey


@dataclass
class Inventory:
    registry: str
    created: str
    repositories: dict[str, dict[str, str]] = field(default_factory=dict)  # repo -> tag -> digest
    blobs: set[str] = field(default_factory=set)

    def to_json(self) -> bytes:
        return json.dumps({"kind": "AirgapInventory", "registry": self.registry, "created": self.created,
                           "repositories": self.repositories, "blobs": sorted(self.blobs)}, indent=2).encode() + b"\n"


def _paged(client: RegistryClient, path: str, key: str, scope: str) -> list[str]:
    """GET with the distribution-spec `n`/`last` pagination (Link headers)."""
    out: list[str] = []
    url = f"{path}?n=1000"
    while url:
        resp = client.request("GET", url, scope=scope, ok=(200,), what=f"listing {path}")
        out += resp.json().get(key) or []
        link = resp.headers.get("link", "")
        url = link[link.find("<") + 1:link.find(">")] if "rel=\"next\"" in link else ""
        if url.startswith(client.base):
            url = url[len(client.base):]
    return out


def repositories(client: RegistryClient, target: Target) -> list[str]:
    try:
        repos = _paged(client, "/v2/_catalog", "repositories", "registry:catalog:*")
    except (NotFound, RegistryError) as exc:
        raise RegistryError(f"registry {client.host} does not list its repositories ({exc}); name them with "
                            "--repository") from None
    prefix = f"{target.prefix}/" if target.prefix else ""
    return [r for r in repos if r.startswith(prefix)]


def take_inventory(client: RegistryClient, target: Target, repos: list[str] | None = None,
                   progress: Progress | None = None) -> Inventory:
    progress = progress or Progress()
    inv = Inventory(str(target), datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    names = repos if repos else repositories(client, target)
    for repo in names:
        store = RegistryStore(client, repo if not repos else target.repository(repo))
        try:
            tags = _paged(client, f"/v2/{store.repository}/tags/list", "tags", f"repository:{store.repository}:pull")
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


__all__ = ["Inventory", "take_inventory", "write_inventory", "repositories"]
