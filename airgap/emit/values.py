"""The Helm values file that points the chart at the private registry, pinned by digest.

Shape (Bitnami convention: ``registry`` is host[:port], ``repository`` carries the path)::

    image: {registry: HOST, tag: RELEASE}           # the keys the deployment guide names
    opensearch:
      image: {registry: HOST, repository: PREFIX/opensearch, tag: 2.18.0, digest: sha256:...}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from airgap.bundle.format import BundleManifest
from airgap.errors import InputError
from airgap.fsutil import atomic_write
from airgap.registry.client import Target


def values_document(manifest: BundleManifest, target: Target) -> dict[str, Any]:
    doc: dict[str, Any] = {"image": {"registry": target.host, "tag": manifest.release}}
    for image in manifest.images:
        if not image.values:
            continue
        node = doc
        parts = image.values.split(".")
        for i, part in enumerate(parts):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise InputError(f"image {image.name}: values key {image.values} collides with "
                                 f"{'.'.join(parts[:i + 1])} of another image")
            node = child
        node.update({"registry": target.host, "repository": target.repository(image.name),
                     "tag": image.tag, "digest": image.digest})
    return doc


def render_values(manifest: BundleManifest, target: Target, bundle_name: str) -> str:
    header = (f"# Written by `airgap load` for registry {target}.\n"
              f"# Bundle {bundle_name}: release {manifest.release}, created {manifest.created}.\n"
              "# Every image is pinned by digest; use with: helm install -f THIS_FILE ...\n")
    return header + yaml.safe_dump(values_document(manifest, target), sort_keys=False)


def write_values(path: Path, manifest: BundleManifest, target: Target, bundle_name: str) -> Path:
    atomic_write(Path(path), render_values(manifest, target, bundle_name).encode())
    return Path(path)
