"""The Helm values file that points the chart at the private registry, pinned by digest.

Shape (Bitnami convention: ``registry`` is host[:port], ``repository`` carries the path)::

    image: {registry: HOST, tag: RELEASE}           # the keys the deployment guide names
    opensearch:
      image: {registry: HOST, repository: PREFIX/opensearch, tag: 2.18.0, digest: sha256:...}
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from airgap import limits
from airgap.bundle.format import BundleManifest
from airgap.emit.mapping import DEFAULT_NAMING, repository_for
from airgap.errors import InputError
from airgap.registry.client import Target

# A Helm values path: dot-separated keys as templates can reach them (``.Values.a.b``), no empty or
# odd parts; bounded so a hostile bundle cannot make a huge or deep document.
_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$")
MAX_DEPTH = limits.VALUES_KEY_DEPTH


def check_values_key(image_name: str, key: str) -> list[str]:
    parts = key.split(".")
    if len(parts) > MAX_DEPTH or not all(_KEY_RE.match(p) for p in parts):
        raise InputError(f"image {image_name}: values key {key!r} is not a Helm values path "
                         f"(dot-separated keys of letters, digits, _ and -, at most {MAX_DEPTH} deep)")
    return parts


def values_document(manifest: BundleManifest, target: Target, naming: str = DEFAULT_NAMING) -> dict[str, Any]:
    doc: dict[str, Any] = {"image": {"registry": target.host, "tag": manifest.release}}
    for image in manifest.images:
        if not image.values:
            continue
        node = doc
        parts = check_values_key(image.name, image.values)
        if parts == ["image"]:
            raise InputError(f"image {image.name}: values key 'image' is the chart-wide image block")
        for i, part in enumerate(parts):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise InputError(f"image {image.name}: values key {image.values} collides with "
                                 f"{'.'.join(parts[:i + 1])} of another image")
            node = child
        node.update({"registry": target.host, "repository": repository_for(image, target, naming),
                     "tag": image.tag, "digest": image.digest})
    return doc


def render_values(manifest: BundleManifest, target: Target, bundle_name: str, naming: str = DEFAULT_NAMING) -> str:
    header = (f"# Written by `airgap load` for registry {target}.\n"
              f"# Bundle {bundle_name}: release {manifest.release}, created {manifest.created}.\n"
              "# Every image is pinned by digest; use with: helm install -f THIS_FILE ...\n")
    return header + yaml.safe_dump(values_document(manifest, target, naming), sort_keys=False)

