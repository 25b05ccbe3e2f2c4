"""An OCI image layout directory (image-spec ``image-layout.md``) as a place.

Used as the connected side's local content store and as the source for ``oci:DIR:REF`` references.
Tags are ``org.opencontainers.image.ref.name`` annotations on ``index.json`` entries, which is how
skopeo, buildah and crane name images in a layout.
"""

from __future__ import annotations

import fcntl
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from airgap.errors import InputError, NotFound
from airgap.fsutil import atomic_write
from airgap.model import Descriptor, Digest, parse_manifest
from airgap.model.digest import CHUNK
from airgap.model.manifest import Manifest
from airgap.places.base import BlobBody, Store

REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_FILE = b'{"imageLayoutVersion":"1.0.0"}'


class LayoutStore(Store):
    """``repository`` scopes tags to one image of a layout holding several, as a bundle's does
    (ref.name ``<repository>:<tag>``), so ``sha256-<hex>.sig`` of two images never collide."""

    def __init__(self, root: Path, *, create: bool = False, repository: str = ""):
        self.root = Path(root)
        self.repository = repository
        self.description = f"OCI layout {self.root}" + (f" ({repository})" if repository else "")
        self._lock = threading.Lock()
        if create:
            (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
            if not (self.root / "oci-layout").exists():
                atomic_write(self.root / "oci-layout", LAYOUT_FILE)
            if not (self.root / "index.json").exists():
                atomic_write(self.root / "index.json", self._index_bytes([]))
        elif not (self.root / "oci-layout").is_file():
            raise InputError(f"{self.root}: not an OCI image layout (no oci-layout file)")

    @property
    def place_key(self) -> str:
        return f"layout:{self.root.resolve()}"

    def blob_path(self, digest: Digest) -> Path:
        return self.root / "blobs" / digest.algorithm / digest.hex

    # -- index.json ---------------------------------------------------------------------------
    def entries(self) -> list[dict]:
        try:
            doc = json.loads((self.root / "index.json").read_bytes())
        except FileNotFoundError:
            raise InputError(f"{self.root}: OCI layout has no index.json") from None
        except json.JSONDecodeError as exc:
            raise InputError(f"{self.root}/index.json: not valid JSON ({exc})") from None
        return list(doc.get("manifests") or [])

    def tags(self) -> list[str]:
        return [e.get("annotations", {}).get(REF_NAME) for e in self.entries()
                if e.get("annotations", {}).get(REF_NAME)]

    @staticmethod
    def _index_bytes(entries: list[dict]) -> bytes:
        return json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                           "manifests": entries}, indent=2).encode()

    @contextmanager
    def _index_locked(self) -> Iterator[None]:
        # Two airgap processes may share one store (a build and a bundle); serialise index updates.
        with self._lock, open(self.root / "oci-layout", "rb") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # -- Store ----------------------------------------------------------------------------------
    def ref_name(self, tag: str) -> str:
        return f"{self.repository}:{tag}" if self.repository else tag

    def resolve_tag(self, tag: str) -> Digest | None:
        name = self.ref_name(tag)
        for entry in self.entries():
            if entry.get("annotations", {}).get(REF_NAME) == name:
                return Digest.parse(entry["digest"])
        return None

    def fetch_manifest(self, ref: str) -> Manifest:
        if ref.startswith("sha256:") or ref.startswith("sha512:"):
            digest = Digest.parse(ref)
            media_type = None
        else:
            found = [e for e in self.entries() if e.get("annotations", {}).get(REF_NAME) == self.ref_name(ref)]
            if not found:
                # A layout is local input (oci:DIR:REF, the build store): a wrong name is the user's to fix.
                raise InputError(f"{self.description}: no image tagged {ref!r} "
                                 f"(has: {', '.join(self.tags()) or 'none'})")
            digest = Digest.parse(found[0]["digest"])
            media_type = found[0].get("mediaType")
        path = self.blob_path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"{self.description}: manifest {digest} is missing") from None
        manifest = parse_manifest(data, media_type, where=f"{self.description} {digest.short}")
        if manifest.digest != digest:
            raise InputError(f"{self.description}: blob {digest} does not match its digest (corrupt layout)")
        return manifest

    @contextmanager
    def open_blob(self, desc: Descriptor) -> Iterator[Iterator[bytes]]:
        path = self.blob_path(desc.digest)
        try:
            fh = open(path, "rb")
        except FileNotFoundError:
            raise NotFound(f"{self.description}: blob {desc.digest} is missing") from None
        with fh:
            yield iter(lambda: fh.read(CHUNK), b"")

    def blob_exists(self, desc: Descriptor) -> bool:
        try:
            return self.blob_path(desc.digest).stat().st_size == desc.size
        except FileNotFoundError:
            return False

    def put_blob(self, desc: Descriptor, body: BlobBody) -> None:
        # The body verifies itself before its last chunk, so a bad blob never gets renamed in.
        atomic_write(self.blob_path(desc.digest), body())

    def manifest_exists(self, digest: Digest) -> bool:
        return self.blob_path(digest).exists()

    def put_manifest(self, manifest: Manifest, tag: str | None = None) -> None:
        path = self.blob_path(manifest.digest)
        if not path.exists():
            atomic_write(path, manifest.data)
        if tag is None:
            return
        name = self.ref_name(tag)
        with self._index_locked():
            entries = [e for e in self.entries() if e.get("annotations", {}).get(REF_NAME) != name]
            desc = manifest.descriptor.to_json()
            desc["annotations"] = {REF_NAME: name}
            entries.append(desc)
            atomic_write(self.root / "index.json", self._index_bytes(entries))
