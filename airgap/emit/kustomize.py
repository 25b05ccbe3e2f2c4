"""A kustomize Component whose ``images:`` entries point every source image at the private registry,
pinned by digest. Use it with ``components: [<out-dir>/kustomize]`` in a kustomization.

kustomize matches ``name`` against the image as the manifests write it, without tag or digest, so a
Docker Hub image gets one entry per spelling (``docker.io/library/redis``, ``library/redis``, ``redis``).
"""

from __future__ import annotations

import yaml

from airgap.emit.mapping import ImageMapping
from airgap.registry.client import Target


def document(maps: list[ImageMapping]) -> dict:
    images = []
    seen: set[str] = set()
    for m in maps:
        for name in m.source_names() or [m.name]:
            if name in seen:
                continue
            seen.add(name)
            images.append({"name": name, "newName": m.destination, "digest": m.digest})
    return {"apiVersion": "kustomize.config.k8s.io/v1alpha1", "kind": "Component", "images": images}


def render(maps: list[ImageMapping], target: Target) -> str:
    header = f"# Written by `airgap load`: every image of the bundle, served by {target}, pinned by digest.\n"
    return header + yaml.safe_dump(document(maps), sort_keys=False)
