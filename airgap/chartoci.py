"""The bundled Helm chart as an OCI artifact, the way ``helm push`` stores it.

Helm's OCI support (helm.sh/docs/topics/registries) reads a manifest whose config has media type
``application/vnd.cncf.helm.config.v1+json`` (Chart.yaml's metadata as JSON) and whose one layer is
the packaged chart, ``application/vnd.cncf.helm.chart.content.v1.tar+gzip``. The tag is the chart
version with ``+`` written as ``_`` (OCI tags do not allow ``+``; Helm turns it back).
So ``helm pull oci://REG/PREFIX/charts/<name> --version <version>`` works on the isolated side.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass

import yaml

from airgap.errors import BundleError
from airgap.model import Descriptor
from airgap.model.digest import sha256_digest
from airgap.model.manifest import ImageManifest, parse_manifest
from airgap.model.mediatypes import MediaType
from airgap.places.memory import MemoryStore

HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"


@dataclass(frozen=True)
class ChartArtifact:
    name: str
    version: str
    tag: str
    manifest: ImageManifest
    store: MemoryStore


def chart_metadata(tgz: bytes, where: str) -> dict:
    try:
        with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tf:
            member = next((m for m in tf.getmembers() if m.name.count("/") == 1 and m.name.endswith("/Chart.yaml")),
                          None)
            if member is None:
                raise BundleError(f"{where}: no <name>/Chart.yaml inside the chart")
            fh = tf.extractfile(member)
            assert fh is not None
            doc = yaml.safe_load(fh.read())
    except (tarfile.TarError, OSError, yaml.YAMLError) as exc:
        raise BundleError(f"{where}: unreadable chart ({exc})") from None
    if not isinstance(doc, dict) or not doc.get("name") or not doc.get("version"):
        raise BundleError(f"{where}: Chart.yaml needs name and version")
    return doc


def build(tgz: bytes, where: str) -> ChartArtifact:
    meta = chart_metadata(tgz, where)
    config = json.dumps(meta, separators=(",", ":"), sort_keys=True, default=str).encode()
    config_desc = {"mediaType": HELM_CONFIG, "digest": str(sha256_digest(config)), "size": len(config)}
    layer_desc = {"mediaType": HELM_CHART, "digest": str(sha256_digest(tgz)), "size": len(tgz)}
    name, version = str(meta["name"]), str(meta["version"])
    doc = {
        "schemaVersion": 2,
        "mediaType": MediaType.OCI_MANIFEST,
        "config": config_desc,
        "layers": [layer_desc],
        "annotations": {"org.opencontainers.image.title": name, "org.opencontainers.image.version": version},
    }
    data = json.dumps(doc, separators=(",", ":")).encode()
    manifest = parse_manifest(data, MediaType.OCI_MANIFEST, where=where)
    assert isinstance(manifest, ImageManifest)
    tag = version.replace("+", "_")
    blobs = {Descriptor.from_json(config_desc).digest: config, Descriptor.from_json(layer_desc).digest: tgz}
    store = MemoryStore(f"chart {name}-{version}", blobs, {tag: manifest, str(manifest.digest): manifest})
    return ChartArtifact(name, version, tag, manifest, store)
