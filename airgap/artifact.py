"""The ``artifact:`` kind of IMAGES.md entry: files (a model, a data set) packed as an OCI artifact.

The artifact is written into the local content store exactly where a built image lands
(``<name>:<release>``), so signing, bundling, ``airgap load``, the values file and the node
configs treat it like any other image: it is pushed to the private registry, pinned by digest and
signed. Nothing at run time has to reach a model hub.

Two shapes (``layers:``):

* ``tar`` (the default): one ``tar+gzip`` layer with the files under ``root:``, an image config
  with ``rootfs.diff_ids`` and the manifest's ``artifactType``. Every container runtime can unpack
  it, so it mounts as a Kubernetes image volume, and the chart's init container can fetch and
  unpack it with nothing but the Python standard library.
* ``files``: one blob per file (``org.opencontainers.image.title`` names it) and the empty config,
  the shape ``oras push`` makes; for consumers that read blobs, not filesystems.

Packing is deterministic: sorted names, owner 0:0, modes 0644/0755, every mtime
``SOURCE_DATE_EPOCH`` (0 without it) and a gzip header without name or time, so the same files
always give the same digest and a rebuild ships no new blobs.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from airgap.build.archive import HashingWriter, put_bytes, stream_blob
from airgap.errors import InputError
from airgap.imagesfile import ArtifactSpec, ImageEntry, ImagesFile
from airgap.model import Descriptor, parse_manifest
from airgap.model.digest import CHUNK
from airgap.model.mediatypes import MediaType
from airgap.places.layout import LayoutStore

TITLE = "org.opencontainers.image.title"
FILE_BLOB = "application/octet-stream"
_MEDIA_TYPE = re.compile(r"^[A-Za-z0-9][\w!#$&^.+-]{0,126}/[A-Za-z0-9][\w!#$&^.+-]{0,126}$")  # RFC 6838
_ROOT = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


def parse_spec(node: yaml.Node, where: Any, label: str) -> ArtifactSpec:
    """``artifact: {path:, type:, layers:, root:, annotations:}`` of an IMAGES.md entry."""
    if not isinstance(node, yaml.MappingNode):
        raise InputError(f"{label}: artifact: must be a mapping with path: and type:")
    fields: dict[str, yaml.Node] = {}
    for k, v in node.value:
        if not isinstance(k, yaml.ScalarNode):
            raise InputError(f"{where(k)}: artifact: keys must be plain words")
        fields[k.value] = v
    allowed = {"path", "type", "layers", "root", "annotations"}
    for key, v in fields.items():
        if key not in allowed:
            raise InputError(f"{where(v)}: unknown key {key!r} in artifact: (allowed: {', '.join(sorted(allowed))})")

    def scalar(key: str, default: str | None = None) -> str | None:
        v = fields.get(key)
        if v is None:
            return default
        if not isinstance(v, yaml.ScalarNode) or not v.value:
            raise InputError(f"{where(v)}: artifact: {key}: must be plain text")
        return str(v.value)

    path = scalar("path")
    if not path:
        raise InputError(f"{label}: artifact: needs path: (a file or directory, relative to IMAGES.md)")
    artifact_type = scalar("type")
    if not artifact_type or not _MEDIA_TYPE.match(artifact_type):
        raise InputError(f"{label}: artifact: needs type: a media type such as application/vnd.airgap.model.v1 "
                         "(the manifest's artifactType)")
    layers = scalar("layers", "tar")
    if layers not in ("tar", "files"):
        raise InputError(f"{where(fields['layers'])}: artifact: layers: is tar (one layer, mountable) or files "
                         "(one blob per file)")
    root = (scalar("root", "") or "").strip("/")
    if root and (not _ROOT.match(root) or ".." in root.split("/")):
        raise InputError(f"{where(fields['root'])}: artifact: root: {root!r} must be a relative path like "
                         "models/all-MiniLM-L6-v2")
    if root and layers == "files":
        raise InputError(f"{where(fields['root'])}: artifact: root: applies to layers: tar")
    annotations: dict[str, str] = {}
    if "annotations" in fields:
        a = fields["annotations"]
        if not isinstance(a, yaml.MappingNode) or not all(
                isinstance(k, yaml.ScalarNode) and isinstance(v, yaml.ScalarNode) for k, v in a.value):
            raise InputError(f"{where(a)}: artifact: annotations: must map names to text")
        annotations = {k.value: str(v.value) for k, v in a.value}
    return ArtifactSpec(path=path, artifact_type=artifact_type, layers=layers, root=root, annotations=annotations)


@dataclass(frozen=True)
class PackedArtifact:
    name: str
    ref: str          # name:tag in the store
    digest: str
    files: int
    size: int         # bytes of the files packed

    def to_json(self) -> dict:
        return {"name": self.name, "ref": self.ref, "digest": self.digest, "files": self.files, "size": self.size,
                "kind": "artifact"}


def artifact_files(images: ImagesFile, entry: ImageEntry) -> tuple[Path, list[tuple[str, Path]]]:
    """(the entry's path, [(name inside the artifact, file)]) sorted by name; checked before any packing."""
    spec = entry.artifact
    assert spec is not None
    where = f"{images.path}:{entry.line}: image {entry.name}"
    base = Path(spec.path).expanduser()
    base = base if base.is_absolute() else images.base_dir / base
    if base.is_symlink() or not base.exists():
        raise InputError(f"{where}: artifact path {spec.path} not found ({base})")
    if base.is_file():
        return base, [(base.name, base)]
    files: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        for fn in filenames:
            p = Path(dirpath) / fn
            rel = p.relative_to(base).as_posix()
            if p.is_symlink() or not p.is_file():
                # A symlink could point anywhere on the build host; the artifact holds only regular files.
                raise InputError(f"{where}: {rel} in {base} is not a regular file (symlinks are not packed)")
            files.append((rel, p))
    if not files:
        raise InputError(f"{where}: artifact path {base} holds no files")
    files.sort()
    return base, files


def pack_artifacts(images: ImagesFile, store: Path, only: tuple[str, ...] | list[str] = (),
                   epoch: int | None = None) -> list[PackedArtifact]:
    """Pack every ``artifact:`` entry (or those in ``only``) into the store as ``<name>:<release>``."""
    entries = [e for e in images.images if e.artifact is not None and (not only or e.name in only)]
    planned = [(e, artifact_files(images, e)[1]) for e in entries]  # every path checked before the first write
    layout = LayoutStore(Path(store), create=True) if planned else None
    return [_pack(images, e, files, layout, epoch) for e, files in planned if layout is not None]


def _pack(images: ImagesFile, entry: ImageEntry, files: list[tuple[str, Path]], store: LayoutStore,
          epoch: int | None) -> PackedArtifact:
    spec = entry.artifact
    assert spec is not None
    mtime = epoch or 0
    annotations = {TITLE: entry.name, "org.opencontainers.image.version": images.release, **spec.annotations}
    if epoch is not None:
        from datetime import datetime, timezone
        annotations.setdefault("org.opencontainers.image.created",
                               datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    if spec.layers == "tar":
        layer, diff_id = _tar_layer(files, spec.root, mtime, store)
        layer_json = layer.to_json()
        layer_json["annotations"] = {TITLE: spec.root or "."}
        config = {"architecture": "amd64", "os": "linux", "config": {},
                  "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
        config_desc = put_bytes(store, json.dumps(config, separators=(",", ":"), sort_keys=True).encode(),
                                 MediaType.OCI_CONFIG)
        layers = [layer_json]
    else:
        config_desc = put_bytes(store, b"{}", MediaType.OCI_EMPTY)
        layers = []
        for rel, path in files:
            d = _put_file(path, store).to_json()
            d["annotations"] = {TITLE: rel}
            layers.append(d)
    manifest = {"schemaVersion": 2, "mediaType": MediaType.OCI_MANIFEST, "artifactType": spec.artifact_type,
                "config": config_desc.to_json(), "layers": layers, "annotations": annotations}
    data = json.dumps(manifest, separators=(",", ":")).encode()
    parsed = parse_manifest(data, MediaType.OCI_MANIFEST)
    ref = f"{entry.name}:{images.release}"
    store.put_manifest(parsed, ref)
    return PackedArtifact(entry.name, ref, str(parsed.digest), len(files), sum(p.stat().st_size for _, p in files))


def _tar_layer(files: list[tuple[str, Path]], root: str, mtime: int, store: LayoutStore) -> tuple[Descriptor, str]:
    def write(sink: HashingWriter) -> str:
        diff = hashlib.sha256()  # the uncompressed tar's digest: the config's diff_id

        class Tee:
            def __init__(self, gz: gzip.GzipFile):
                self.gz = gz

            def write(self, data: bytes) -> int:
                diff.update(data)
                return self.gz.write(data)

        with gzip.GzipFile(filename="", mode="wb", fileobj=sink, mtime=0, compresslevel=6) as gz:
            # Tee has the one method a "w|" stream needs (write); typeshed asks for a whole IO[bytes].
            with tarfile.open(fileobj=Tee(gz), mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                dirs: set[str] = set()
                for rel, path in files:
                    name = f"{root}/{rel}" if root else rel
                    parts = name.split("/")[:-1]
                    for i in range(1, len(parts) + 1):
                        d = "/".join(parts[:i])
                        if d not in dirs:
                            dirs.add(d)
                            tar.addfile(_info(d, tarfile.DIRTYPE, 0o755, 0, mtime))
                    st = path.stat()
                    mode = 0o755 if st.st_mode & stat.S_IXUSR else 0o644
                    with open(path, "rb") as fh:
                        tar.addfile(_info(name, tarfile.REGTYPE, mode, st.st_size, mtime), fh)
        return f"sha256:{diff.hexdigest()}"

    return stream_blob(store, MediaType.OCI_LAYER_GZIP, write)


def _info(name: str, kind: bytes, mode: int, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.mtime = kind, mode, size, mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _put_file(path: Path, store: LayoutStore) -> Descriptor:
    def write(sink: HashingWriter) -> None:
        with open(path, "rb") as fh:
            while True:
                chunk = fh.read(CHUNK)
                if not chunk:
                    break
                sink.write(chunk)

    return stream_blob(store, FILE_BLOB, write)[0]


__all__ = ["PackedArtifact", "artifact_files", "pack_artifacts", "parse_spec"]
