"""Reads a bundle in place: members are byte ranges of the tar, streamed without unpacking.

Opening a bundle checks its structure (first member, every member complete, every manifest and blob
that an image needs present with the right size); :meth:`BundleReader.verify_files` and the copy
engine's verify-first pass check content digests.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from airgap.bundle.format import LAYOUT_DIR, MANIFEST_NAME, SIGNATURE_NAME, BundleFile, BundleImage, BundleManifest
from airgap.errors import BundleError, DigestMismatch, InputError
from airgap.model import Descriptor, Digest, parse_manifest
from airgap.model.digest import CHUNK
from airgap.model.manifest import ImageIndex, Manifest
from airgap.places.base import Store

MAX_BUNDLE_MANIFEST = 64 << 20


@dataclass(frozen=True)
class Member:
    offset: int
    size: int
    path: Path  # the file (part) that holds it


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def is_zstd(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == ZSTD_MAGIC


@contextmanager
def open_bundle(path: Path | list[Path], scratch: Path | None = None, progress=None) -> Iterator["BundleReader"]:
    """A reader for a plain or zstd-compressed bundle.

    A zstd stream cannot be read at random offsets, so a compressed bundle is first decompressed into
    a scratch file (next to the bundle unless ``scratch`` says where) that is removed afterwards.
    """
    if isinstance(path, list) and len(path) == 1:
        path = path[0]
    if isinstance(path, list):
        yield BundleReader([Path(p) for p in path])  # split bundles are plain tars
        return
    path = Path(path)
    if not path.is_file():
        raise InputError(f"bundle {path} does not exist")
    if not is_zstd(path):
        yield BundleReader(path)
        return
    import tempfile

    import zstandard

    directory = Path(scratch) if scratch else path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tar", dir=directory)
    try:
        if progress:
            progress.note(f"decompressing {path.name} into {directory} (zstd bundles need that scratch space)")
        try:
            with open(path, "rb") as src, os.fdopen(fd, "wb") as dst:
                zstandard.ZstdDecompressor().copy_stream(src, dst, read_size=CHUNK, write_size=CHUNK)
        except zstandard.ZstdError as exc:
            raise BundleError(f"{path}: corrupt or truncated zstd stream ({exc})") from None
        yield BundleReader(Path(tmp), display=path)
    finally:
        Path(tmp).unlink(missing_ok=True)


PART_NAME = "airgap-part.json"  # first member of every part but the first of a split bundle


def _scan_tar(path: Path, where: str) -> tuple[list[tuple[str, Member]], bytes]:
    """Every regular member of a tar as a byte range, and the bytes of its first member."""
    size = path.stat().st_size
    out: list[tuple[str, Member]] = []
    first_bytes = b""
    try:
        with tarfile.open(path, mode="r:") as tf:
            for info in tf:
                if not out and info.isfile() and info.size <= MAX_BUNDLE_MANIFEST:
                    fh = tf.extractfile(info)
                    assert fh is not None
                    first_bytes = fh.read()
                if info.isfile():
                    if info.offset_data + info.size > size:
                        raise BundleError(f"{where}: truncated: member {info.name} ends at byte "
                                          f"{info.offset_data + info.size}, the file has {size}")
                    out.append((info.name, Member(info.offset_data, info.size, path)))
    except tarfile.TarError as exc:
        raise BundleError(f"{where}: not a readable tar ({exc}); the bundle is corrupt or truncated") from None
    except EOFError:
        raise BundleError(f"{where}: truncated (unexpected end of file)") from None
    if not out:
        raise BundleError(f"{where}: empty file, not an airgap bundle")
    return out, first_bytes


class BundleReader:
    """One bundle file, or the parts of a split bundle given in any order."""

    def __init__(self, path: Path | list[Path], display: Path | None = None):
        paths = [Path(p) for p in (path if isinstance(path, list) else [path])]
        for p in paths:
            if not p.is_file():
                raise InputError(f"bundle {p} does not exist")
            if is_zstd(p):
                raise BundleError(f"{p} is zstd-compressed: give it alone (the parts of a split bundle are plain tars)")
        self.members: dict[str, Member] = {}
        main, parts = None, {}
        scanned = {}
        for p in paths:
            where = str(display if display and len(paths) == 1 else p)
            members, first = _scan_tar(p, where)
            scanned[p] = members
            if members[0][0] == MANIFEST_NAME:
                if main is not None:
                    raise BundleError(f"{main} and {p} are both the first part of a bundle")
                main, manifest_bytes = p, first
            elif members[0][0] == PART_NAME:
                try:
                    parts[int(json.loads(first)["index"])] = p
                except (ValueError, KeyError, TypeError):
                    raise BundleError(f"{p}: malformed part header") from None
            else:
                raise BundleError(f"{where}: not an airgap bundle (first member is {members[0][0]!r}, "
                                  f"expected {MANIFEST_NAME})")
        if main is None:
            raise BundleError(f"none of {', '.join(map(str, paths))} is the first part of a bundle "
                              f"(the one holding {MANIFEST_NAME})")
        self.path = main
        self.paths = paths
        self.display = display or main
        where = str(self.display)
        if len(manifest_bytes) != scanned[main][0][1].size:
            raise BundleError(f"{where}: truncated bundle manifest")
        self.manifest_bytes = manifest_bytes
        self.manifest = BundleManifest.from_json(manifest_bytes, where)
        self._check_parts(parts)
        for p in [main, *parts.values()]:
            for name, member in scanned[p]:
                if name != PART_NAME:
                    self.members[name] = member

    def _check_parts(self, parts: dict[int, Path]) -> None:
        """Every part the manifest lists is here, complete, with its checksum (named precisely if not)."""
        listed = {int(p["index"]): p for p in self.manifest.parts}
        extra = set(parts) - set(listed)
        if extra:
            raise BundleError(f"{', '.join(str(parts[i]) for i in sorted(extra))}: not a part of {self.display}")
        total = len(listed) + 1
        missing = [f"part {i} of {total} ({p['name']})" for i, p in sorted(listed.items()) if i not in parts]
        if missing:
            raise BundleError(f"{self.display}: missing {', '.join(missing)}; give every part to the command")

        def check(item: tuple[int, dict]) -> str | None:
            i, entry = item
            path = parts[i]
            if path.stat().st_size != entry["size"]:
                return f"part {i} of {total} ({path}) is {path.stat().st_size} bytes, expected {entry['size']}"
            h = hashlib.sha256()
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(CHUNK), b""):
                    h.update(chunk)
            if h.hexdigest() != entry["sha256"]:
                return f"part {i} of {total} ({path}) is damaged: its sha256 does not match the bundle manifest"
            return None

        if listed:
            from concurrent.futures import ThreadPoolExecutor
            with ThreadPoolExecutor(2) as pool:
                problems = [p for p in pool.map(check, sorted(listed.items())) if p]
            if problems:
                raise BundleError("; ".join(problems))

    def blob_member(self, digest: Digest) -> str:
        return f"{LAYOUT_DIR}/blobs/{digest.algorithm}/{digest.hex}"

    def has_blob(self, desc: Descriptor) -> bool:
        m = self.members.get(self.blob_member(desc.digest))
        return m is not None and m.size == desc.size

    def read_member(self, name: str, limit: int = 8 << 20) -> bytes:
        m = self.members.get(name)
        if m is None:
            raise BundleError(f"{self.display}: member {name} is missing")
        if m.size > limit:
            raise BundleError(f"{self.display}: member {name} is implausibly large ({m.size} bytes)")
        with open(m.path, "rb") as fh:
            fh.seek(m.offset)
            return fh.read(m.size)

    def iter_member(self, name: str) -> Iterator[bytes]:
        m = self.members.get(name)
        if m is None:
            raise BundleError(f"{self.display}: member {name} is missing")
        with open(m.path, "rb") as fh:
            fh.seek(m.offset)
            left = m.size
            while left:
                chunk = fh.read(min(CHUNK, left))
                if not chunk:
                    raise BundleError(f"{self.display}: truncated inside member {name}")
                left -= len(chunk)
                yield chunk

    def store(self) -> "BundleStore":
        return BundleStore(self)

    def image_manifests(self, image: BundleImage) -> list[Manifest]:
        """The image's root manifest/index and its children, each checked against its digest."""
        store = self.store()
        root = store.fetch_manifest(image.digest)
        out: list[Manifest] = [root]
        if isinstance(root, ImageIndex):
            for child in root.manifests:
                out.append(store.fetch_manifest(str(child.digest)))
        return out

    def check_complete(self) -> dict[Digest, Descriptor]:
        """Every blob every image needs is present at its full size; returns them (deduplicated)."""
        needed: dict[Digest, Descriptor] = {}
        for image in self.manifest.images:
            for m in self.image_manifests(image):
                if isinstance(m, ImageIndex):
                    continue
                for blob in m.blobs():
                    member = self.members.get(self.blob_member(blob.digest))
                    if member is None and self.manifest.base:
                        continue  # a delta: the target must hold it already (checked before pushing)
                    if member is None:
                        raise BundleError(f"{self.display}: image {image.name}:{image.tag} needs blob "
                                          f"{blob.digest} which the bundle does not contain")
                    if member.size != blob.size:
                        raise BundleError(f"{self.display}: blob {blob.digest} of image {image.name}:{image.tag} "
                                          f"is {member.size} bytes, its manifest says {blob.size}")
                    needed[blob.digest] = blob
        return needed

    def verify_files(self) -> None:
        for f in self.manifest.files:
            self.verify_file(f)

    def verify_file(self, f: BundleFile) -> None:
        h = hashlib.sha256()
        for chunk in self.iter_member(f.path):
            h.update(chunk)
        if h.hexdigest() != f.sha256:
            raise DigestMismatch(f"{self.display}: {f.kind} file {f.path}", f"sha256:{f.sha256}",
                                 f"sha256:{h.hexdigest()}")

    def extract_file(self, f: BundleFile, dest: Path) -> Path:
        from airgap.fsutil import atomic_write
        self.verify_file(f)
        atomic_write(dest, self.iter_member(f.path))
        return dest


class BundleStore(Store):
    """The bundle's OCI layout as a read-only place; every image's repository shares it."""

    def __init__(self, reader: BundleReader):
        self.reader = reader
        self.description = f"bundle {reader.display}"

    @property
    def place_key(self) -> str:
        return f"bundle:{os.path.abspath(self.reader.path)}"

    def fetch_manifest(self, ref: str) -> Manifest:
        if not ref.startswith("sha256:"):
            image = next((i for i in self.reader.manifest.images if i.ref_name == ref or i.name == ref), None)
            if image is None:
                raise BundleError(f"{self.description}: no image {ref!r}")
            ref = image.digest
        digest = Digest.parse(ref)
        data = self.reader.read_member(self.reader.blob_member(digest), limit=4 << 20)
        manifest = parse_manifest(data, None, where=f"{self.description} manifest {digest.short}")
        if manifest.digest != digest:
            raise DigestMismatch(f"{self.description}: manifest {digest.short}", str(digest), str(manifest.digest))
        return manifest

    @contextmanager
    def open_blob(self, desc: Descriptor) -> Iterator[Iterator[bytes]]:
        yield self.reader.iter_member(self.reader.blob_member(desc.digest))

    def blob_exists(self, desc: Descriptor) -> bool:
        return self.reader.has_blob(desc)


def read_head(path: Path) -> tuple[bytes, BundleManifest, bytes | None]:
    """The manifest and, when signed, its signature: the first two members only, so it is cheap on a
    bundle of any size, compressed or split (the first part)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"bundle {path} does not exist")
    signature = None
    try:
        fileobj = None
        if is_zstd(path):
            import zstandard
            fileobj = zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True)
        with tarfile.open(path if fileobj is None else None, mode="r|" if fileobj else "r:",
                          fileobj=fileobj) as tf:
            info = tf.next()
            if info is None or info.name != MANIFEST_NAME:
                raise BundleError(f"{path}: not an airgap bundle (first member is not {MANIFEST_NAME})")
            fh = tf.extractfile(info)
            assert fh is not None
            data = fh.read(MAX_BUNDLE_MANIFEST)
            second = tf.next()
            if second is not None and second.name == SIGNATURE_NAME and second.size <= 4096:
                sfh = tf.extractfile(second)
                assert sfh is not None
                signature = sfh.read()
    except tarfile.TarError as exc:
        raise BundleError(f"{path}: not a readable tar ({exc})") from None
    except Exception as exc:  # zstandard.ZstdError, without importing it for plain bundles
        if exc.__class__.__name__ == "ZstdError":
            raise BundleError(f"{path}: corrupt zstd stream ({exc})") from None
        raise
    return data, BundleManifest.from_json(data, str(path)), signature


def read_manifest(path: Path) -> tuple[bytes, BundleManifest]:
    data, manifest, _ = read_head(path)
    return data, manifest
