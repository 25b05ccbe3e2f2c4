"""The bundled Helm chart as an OCI artifact, the way ``helm push`` stores it.

Helm's OCI support (helm.sh/docs/topics/registries) reads a manifest whose config has media type
``application/vnd.cncf.helm.config.v1+json`` (Chart.yaml's metadata as JSON) and whose one layer is
the packaged chart, ``application/vnd.cncf.helm.chart.content.v1.tar+gzip``. The tag is the chart
version with ``+`` written as ``_`` (OCI tags do not allow ``+``; Helm turns it back).
So ``helm pull oci://REG/PREFIX/charts/<name> --version <version>`` works on the isolated side.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import zlib
from dataclasses import dataclass

import yaml

from airgap import limits, safeyaml
from airgap.chartpkg import _NAME_RE, _VERSION_RE
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


MAX_CHART_UNPACKED = limits.CHART_UNPACKED_BYTES
MAX_CHART_MEMBERS = limits.CHART_MEMBERS
MAX_CHART_YAML = limits.YAML_BYTES


def chart_name_problem(name: str) -> str | None:
    return None if _NAME_RE.match(name) and len(name) <= 128 else "is not a valid Helm chart name"


def chart_version_problem(version: str) -> str | None:
    return None if _VERSION_RE.match(version) and len(version) <= 128 else "is not a SemVer chart version"


class _Capped(io.RawIOBase):
    """A read-only stream that refuses to produce more than ``limit`` bytes (gzip bombs)."""

    def __init__(self, inner: io.BufferedIOBase, limit: int, where: str):
        self.inner, self.left, self.where = inner, limit, where

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.inner.read(min(len(buffer), self.left + 1))
        if len(data) > self.left:
            raise BundleError(f"{self.where}: the chart unpacks to more than {MAX_CHART_UNPACKED} bytes; refused")
        self.left -= len(data)
        buffer[:len(data)] = data
        return len(data)


def chart_metadata(tgz: bytes, where: str, listed=None) -> dict:
    """Chart.yaml of a packaged chart, after checking every member of the archive: regular files and
    directories only, all under one ``<name>/`` directory, no absolute or ``..`` paths, no links.
    With ``listed`` (the chart's entry in a bundle manifest), name and version must match it."""
    doc = None
    top = None
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(tgz)) as gz, \
                tarfile.open(fileobj=io.BufferedReader(_Capped(gz, MAX_CHART_UNPACKED, where)), mode="r|") as tf:
            for n, member in enumerate(tf):
                tf.members.clear()  # type: ignore[attr-defined]  # undocumented list tarfile grows per member read
                name = member.name
                if n >= MAX_CHART_MEMBERS:
                    raise BundleError(f"{where}: the chart holds more than {MAX_CHART_MEMBERS} files; refused")
                parts = name.split("/")
                if name.startswith("/") or any(p in ("..", "") for p in parts) or "\\" in name:
                    raise BundleError(f"{where}: chart member {name!r} is an absolute or .. path; refused")
                if not (member.isreg() or member.isdir()) or member.type == tarfile.GNUTYPE_SPARSE:
                    raise BundleError(f"{where}: chart member {name!r} is a link or special file; refused")
                if top is None:
                    top = parts[0]
                if parts[0] != top:
                    raise BundleError(f"{where}: chart member {name!r} is outside the chart's directory {top}/")
                if len(parts) == 2 and parts[1] == "Chart.yaml" and member.isreg():
                    if member.size > MAX_CHART_YAML:
                        raise BundleError(f"{where}: {name} is {member.size} bytes; refused")
                    fh = tf.extractfile(member)
                    assert fh is not None
                    doc = safeyaml.load(fh.read(), max_bytes=MAX_CHART_YAML)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise BundleError(f"{where}: unreadable chart ({exc})") from None
    except yaml.YAMLError as exc:
        raise BundleError(f"{where}: Chart.yaml: {safeyaml.describe(exc)}") from None
    if doc is None:
        raise BundleError(f"{where}: no <name>/Chart.yaml inside the chart")
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str) or doc.get("version") is None:
        raise BundleError(f"{where}: Chart.yaml needs name and version")
    name, version = doc["name"], str(doc["version"])
    for what, value, problem in (("name", name, chart_name_problem(name)),
                                 ("version", version, chart_version_problem(version))):
        if problem:
            raise BundleError(f"{where}: Chart.yaml {what} {value[:80]!r} {problem}")
    if top != name:
        raise BundleError(f"{where}: chart {name} is packed under {top}/, not {name}/")
    if listed is not None and (listed.name, listed.version) != (name, version):
        raise BundleError(f"{where}: Chart.yaml says {name} {version}, the bundle manifest says "
                          f"{listed.name} {listed.version}")
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
