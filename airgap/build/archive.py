"""Import a ``docker save`` archive (docker-archive) into the store as an OCI image.

Both archive shapes are read through their ``manifest.json``: the legacy one (``<id>/layer.tar``,
``<id>.json``, Docker <= 24) and the OCI-layout-shaped one (``blobs/sha256/...``, Docker >= 25).
Layers are gzip-compressed on the way in (docker saves them uncompressed) with a fixed gzip header,
so the same layer always gives the same blob; each layer's uncompressed digest is checked against
the config's ``rootfs.diff_ids``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tarfile
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Callable, TypeVar

from airgap.errors import BuildError
from airgap.model import Descriptor, Digest, DigestingReader, parse_manifest, sha256_digest
from airgap.model.digest import CHUNK
from airgap.places.layout import LayoutStore

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
T = TypeVar("T")


class HashingWriter:
    """A write-only file object that hashes and counts what passes through to ``fh``."""

    def __init__(self, fh: IO[bytes]):
        self.fh = fh
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.fh.write(data)

    def flush(self) -> None:
        self.fh.flush()


def stream_blob(store: LayoutStore, media_type: str, write: Callable[[HashingWriter], T]) -> tuple[Descriptor, T]:
    """A blob of ``store`` made by ``write(sink)`` (compressed on the way in, so its digest is known only
    at the end): written to an unnamed scratch file while hashed, then handed to ``store.put_blob``,
    which commits it atomically under its digest. An exception from ``write`` (a failed check) leaves
    nothing in the store; a blob the store already holds is not written again.

    The scratch file sits beside the store, not in /tmp: a layer can be gigabytes, and /tmp is often
    a RAM-backed tmpfs."""
    with tempfile.TemporaryFile(prefix=".airgap-blob-", dir=store.root.parent) as scratch:
        sink = HashingWriter(scratch)
        extra = write(sink)
        scratch.flush()
        desc = Descriptor(media_type, Digest("sha256", sink.sha.hexdigest()), sink.size)
        if not store.blob_exists(desc):
            def body() -> Iterator[bytes]:
                # Re-hashed on the way in: the store commits only what matches the descriptor.
                scratch.seek(0)
                return iter(DigestingReader(iter(lambda: scratch.read(CHUNK), b""), desc.digest, desc.size,
                                            f"{store.description}: blob {desc.digest}"))

            store.put_blob(desc, body)
    return desc, extra


def import_docker_archive(archive: Path, store: LayoutStore, tag: str, epoch: int | None = None) -> Digest:
    """Add the single image in ``archive`` to ``store`` as ``tag``; return its manifest digest.

    With ``epoch`` (SOURCE_DATE_EPOCH) the config's ``created`` and history times are set to it: the
    classic Docker builder has no way to do that itself.
    """
    with tarfile.open(archive) as tar:
        index = json.load(_member(tar, "manifest.json"))
        if not isinstance(index, list) or len(index) != 1:
            raise BuildError(f"{archive}: expected one image in the docker archive, found {len(index)}")
        entry = index[0]
        config = json.load(_member(tar, entry["Config"]))
        diff_ids = config.get("rootfs", {}).get("diff_ids", [])
        if len(diff_ids) != len(entry["Layers"]):
            raise BuildError(f"{archive}: {len(entry['Layers'])} layers but {len(diff_ids)} diff_ids in the config")
        layers = [_add_layer(tar, name, diff_id, store) for name, diff_id in zip(entry["Layers"], diff_ids)]
    if epoch is not None:
        stamp = datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        config["created"] = stamp
        for h in config.get("history", []):
            h["created"] = stamp
    config_bytes = json.dumps(config, separators=(",", ":"), sort_keys=True).encode()
    config_desc = put_bytes(store, config_bytes, OCI_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_desc.to_json(),
                "layers": [d.to_json() for d in layers]}
    parsed = parse_manifest(json.dumps(manifest, separators=(",", ":")).encode(), OCI_MANIFEST)
    store.put_manifest(parsed, tag)
    return parsed.digest


def _where(tar: tarfile.TarFile) -> str:
    return os.fsdecode(tar.name) if tar.name else "docker archive"


def _member(tar: tarfile.TarFile, name: str) -> IO[bytes]:
    try:
        fh = tar.extractfile(name)
    except KeyError:
        fh = None
    if fh is None:
        raise BuildError(f"{_where(tar)}: docker archive has no {name}")
    return fh


def put_bytes(store: LayoutStore, data: bytes, media_type: str) -> Descriptor:
    """A small blob (a config) into ``store``, unless it is there already."""
    desc = Descriptor(media_type, sha256_digest(data), len(data))
    if not store.blob_exists(desc):
        store.put_blob(desc, lambda: iter([data]))
    return desc


def _add_layer(tar: tarfile.TarFile, name: str, diff_id: str, store: LayoutStore) -> Descriptor:
    src = _member(tar, name)

    def write(sink: HashingWriter) -> None:
        raw = hashlib.sha256()
        # mtime=0 and no file name in the header: identical layers give identical blobs.
        with gzip.GzipFile(filename="", mode="wb", fileobj=sink, mtime=0, compresslevel=6) as gz:
            while True:
                chunk = src.read(CHUNK)
                if not chunk:
                    break
                raw.update(chunk)
                gz.write(chunk)
        if f"sha256:{raw.hexdigest()}" != diff_id:
            raise BuildError(f"{_where(tar)}: layer {name} has digest sha256:{raw.hexdigest()}, "
                             f"the config says {diff_id}")

    return stream_blob(store, OCI_LAYER_GZIP, write)[0]
