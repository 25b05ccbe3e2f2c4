"""A bundle being written, as a place the copy engine copies into.

The reader checks the signed ``airgap-bundle.json`` (and ``oci/index.json`` against it) before it
parses anything else, so those come first in the tar, before any blob. Everything they say is known
once the images are resolved: the bundler plans the head (:class:`BundleHead`) from the resolved
graph, this store writes it on opening, and then takes blobs and manifests in whatever order the
engine sends them (blobs first, each streamed once into the tar as the engine verifies it). Tags are
recorded, not written: the planned index already holds them, and closing checks that every planned
member arrived and every planned tag was pushed with the digest the head announced, so a bundle can
never claim what it does not hold. Closing adds the chart, CRD and tools/ files and the tar end;
any failure leaves no file behind (``OUT.partial`` is removed, and so are finished split parts).

A plain (uncompressed, unsplit) bundle is planned to the byte: every member's offset is known from
the head, so blobs stream into their places in parallel (airgap.bundle.writer.PlannedTar), and the
file is the same bytes whatever order they arrive in. zstd output is one stream, written in order.

With ``split``, blobs go into parts planned up front (first fit, cut at blob boundaries) that may
all be open at once, so arrival order does not matter; the first part, holding the head (with the
parts' checksums), the manifests and the files, is written when the parts are done.

With ``cache``, blobs in ``cache_digests`` are also written into that OCI layout (the connected
side's content store) from the same stream, renamed in only after the engine's verifying reader
reached the end: the store stays a resumable cache without a second full copy of every byte.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Union

from airgap import limits
from airgap.bundle.format import LAYOUT_DIR, MANIFEST_NAME, SIGNATURE_NAME, BundleFile, BundleManifest
from airgap.bundle.reader import PART_NAME
from airgap.bundle.writer import RECORD, BundleWriter, PlannedTar
from airgap.errors import AirgapError, BundleError, InputError
from airgap.model import Descriptor, Digest
from airgap.model.manifest import Manifest
from airgap.places.base import BlobBody, Store
from airgap.places.layout import LAYOUT_FILE, REF_NAME, LayoutStore

SMALL_LIMIT = limits.BUNDLE_SMALL_MEMBER_BYTES


FileData = Union[bytes, Any]  # bytes, or an object with .chunks() (airgap.tools.ToolFile)


@dataclass
class BundleHead:
    """Everything the first members say, planned from the resolved graph before a blob is written."""

    manifest: BundleManifest                 # ``parts`` is filled in here for a split bundle
    tags: dict[str, Descriptor]              # oci/index.json: ref.name -> root manifest descriptor
    blobs: dict[Digest, int]                 # image blobs the bundle ships (split parts hold these)
    small: dict[Digest, int]                 # manifests and signature blobs (always in the first file)
    files: list[tuple[BundleFile, FileData]] = field(default_factory=list)
    sign: Callable[[bytes], bytes] | None = None  # detached signature over the manifest bytes
    held: frozenset[str] = frozenset()       # a delta: blobs the base holds, not shipped

    def index_bytes(self) -> bytes:
        entries = []
        for ref, desc in self.tags.items():
            entry = desc.to_json()
            entry["annotations"] = {REF_NAME: ref}
            entries.append(entry)
        return LayoutStore._index_bytes(entries)


def _member(digest: Digest) -> str:
    return f"{LAYOUT_DIR}/blobs/{digest.algorithm}/{digest.hex}"


class BundlePlace(Store):
    """The bundle under construction; every image's repository shares it (one place, one tar)."""

    def __init__(self, output: Path, head: BundleHead, epoch: int, *, compress: str | None = None,
                 split: int | None = None, cache: LayoutStore | None = None,
                 cache_digests: frozenset[Digest] = frozenset()):
        if split and compress:
            raise InputError("--split and --compress cannot be combined (parts are plain tars, read in place)")
        self.output = Path(output)
        self.head = head
        self.epoch = epoch
        self.compress = compress
        self.split = split
        self.cache = cache
        self.cache_digests = cache_digests
        self.description = f"bundle {self.output}"
        self._lock = threading.Lock()
        self._written: set[Digest] = set()
        self._tagged: dict[str, Digest] = {}
        self._held_small: dict[Digest, bytes] = {}   # split: manifests and small blobs for the first part
        self._main: BundleWriter | None = None
        self._parts: dict[int, BundleWriter] = {}
        self._groups: dict[Digest, int] = {}
        self._part_paths: list[Path] = []
        self.paths: list[Path] = []                  # every file written, the first part first
        self._claimed: set[Digest] = set()
        self._tar: PlannedTar | None = None
        #: blobs may be written from several threads at once (a plain bundle: planned offsets)
        self.concurrent = not split and not compress
        if split:
            self._plan_parts()

    def _head_members(self, manifest_bytes: bytes, signature: bytes | None) -> list[tuple[str, bytes]]:
        members = [(MANIFEST_NAME, manifest_bytes)]
        if signature is not None:
            members.append((SIGNATURE_NAME, signature))
        return members + [(f"{LAYOUT_DIR}/oci-layout", LAYOUT_FILE),
                          (f"{LAYOUT_DIR}/index.json", self.head.index_bytes())]

    def _open_planned(self) -> None:
        data = self.head.manifest.to_json()
        signature = self.head.sign(data) + b"\n" if self.head.sign is not None else None
        head = self._head_members(data, signature)
        members = [(name, len(b)) for name, b in head]
        members += [(_member(d), size) for d, size in [*self.head.blobs.items(), *self.head.small.items()]]
        members += [(f.path, f.size) for f, _ in self.head.files]
        self._tar = PlannedTar(self.output, self.epoch, members)
        for name, b in head:
            self._tar.write_bytes(name, b)

    @property
    def place_key(self) -> str:
        return f"bundle-out:{os.path.abspath(self.output)}"

    # -- opening and closing --------------------------------------------------------------------
    def __enter__(self) -> BundlePlace:
        if self.concurrent:
            self._open_planned()
        elif not self.split:
            self._main = self._open_main(self.head.manifest)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            try:
                self._finish()
                return
            except BaseException as failure:
                self._abort(type(failure), failure, failure.__traceback__)
                raise
        self._abort(exc_type, exc, tb)

    def _open_main(self, manifest: BundleManifest) -> BundleWriter:
        data = manifest.to_json()
        w = BundleWriter(self.output, self.epoch, self.compress).__enter__()
        try:
            for name, b in self._head_members(data, self.head.sign(data) + b"\n" if self.head.sign else None):
                w.add_bytes(name, b)
        except BaseException as exc:
            w.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return w

    def _finish(self) -> None:
        missing = [d for d in [*self.head.blobs, *self.head.small] if d not in self._written]
        wrong = {t: d for t, d in self.head.tags.items() if self._tagged.get(t) != d.digest}
        if missing or wrong:
            # A planning bug, not the user's: the head would promise content the tar lacks.
            raise BundleError(f"{self.description}: the copy left out what the bundle manifest lists "
                              f"({len(missing)} blobs, tags {', '.join(sorted(wrong)) or 'none'}); nothing written")
        if self._tar is not None:
            for f, data in self.head.files:
                self._tar.write_stream(f.path, (data,) if isinstance(data, bytes) else data.chunks())
            self._tar.commit()
            self._tar = None
            self.paths = [self.output]
            return
        if self.split:
            parts = []
            total = len(self._part_paths) + 1
            for index in sorted(self._parts):
                w = self._parts[index]
                w.__exit__(None, None, None)
                assert w.sha256 is not None
                parts.append({"name": w.path.name, "index": index, "sha256": w.sha256.hexdigest(),
                              "size": w.written})
            self._parts.clear()
            self.paths = [_part_path(self.output, 1, total), *self._part_paths]
            self.output = self.paths[0]
            self._main = self._open_main(replace(self.head.manifest, parts=parts))
            for digest in sorted(self._held_small, key=str):
                self._main.add_bytes(_member(digest), self._held_small[digest])
        else:
            self.paths = [self.output]
        assert self._main is not None
        for f, data in self.head.files:
            if isinstance(data, bytes):
                self._main.add_bytes(f.path, data)
            else:  # a tools/ file (airgap.tools.ToolFile), streamed from disk
                self._main.add_stream(f.path, f.size, data.chunks())
        main, self._main = self._main, None
        main.__exit__(None, None, None)

    def _abort(self, exc_type: Any, exc: Any, tb: Any) -> None:
        for w in [*self._parts.values(), *([self._main] if self._main else [])]:
            try:
                w.__exit__(exc_type, exc, tb)
            except Exception:
                pass
        self._parts.clear()
        self._main = None
        if self._tar is not None:
            self._tar.discard()
            self._tar = None
        for p in self._part_paths:  # a failed split leaves no orphan parts behind
            p.unlink(missing_ok=True)

    # -- split parts ----------------------------------------------------------------------------
    def _plan_parts(self) -> None:
        """First fit in the head's order; each part stays within ``split`` bytes."""
        assert self.split
        limit = self.split
        overhead = BundleWriter.member_cost(PART_NAME, 200) + 2 * RECORD
        used: list[int] = []
        for digest, size in self.head.blobs.items():
            cost = BundleWriter.member_cost(_member(digest), size)
            if cost + overhead > limit:
                raise InputError(f"blob {digest} is {size} bytes: larger than a --split part "
                                 f"({limit} bytes); choose a larger part size")
            if not used or used[-1] + cost > limit:
                used.append(overhead)
            used[-1] += cost
            self._groups[digest] = len(used) + 1   # parts count from 2: part 1 holds the head
        total = len(used) + 1
        self._part_paths = [_part_path(self.output, i, total) for i in range(2, total + 1)]

    def _writer_for(self, digest: Digest) -> BundleWriter:
        if not self.split:
            assert self._main is not None, "BundlePlace used outside its with block"
            return self._main
        index = self._groups[digest]
        w = self._parts.get(index)
        if w is None:
            w = BundleWriter(self._part_paths[index - 2], self.epoch, checksum=True).__enter__()
            self._parts[index] = w
            m = self.head.manifest
            w.add_bytes(PART_NAME, json.dumps({"index": index, "parts": len(self._part_paths) + 1,
                                               "release": m.release, "created": m.created}).encode())
        return w

    # -- Store: writing ---------------------------------------------------------------------------
    def blob_exists(self, desc: Descriptor) -> bool:
        # A delta's base blobs count as present: the engine then leaves them out like any blob the
        # destination already holds. Manifests and signatures always travel (the load pushes them).
        if desc.digest in self._written:
            return True
        return str(desc.digest) in self.head.held and desc.digest not in self.head.small

    def mount_blob(self, desc: Descriptor, source: Store) -> bool:
        return desc.digest in self._written

    def put_blob(self, desc: Descriptor, body: BlobBody) -> None:
        digest = desc.digest
        planned = self.head.blobs.get(digest, self.head.small.get(digest))
        if planned is None or planned != desc.size:
            raise BundleError(f"{self.description}: blob {digest} ({desc.size} bytes) is not in the planned "
                              "bundle manifest")
        with self._lock:
            if digest in self._claimed:
                return
            self._claimed.add(digest)
        held = self.split and digest not in self.head.blobs  # small: kept for the first part
        tee = None
        chunks = body()
        if (not held and self.cache is not None and digest in self.cache_digests
                and not self.cache.blob_exists(desc)):
            tee = _Tee(self.cache.blob_path(digest))
            chunks = tee.through(chunks)
        try:
            if self._tar is not None:
                self._tar.write_stream(_member(digest), chunks)  # its own offset: no lock, in parallel
            else:
                with self._lock:
                    if held:
                        self._held_small[digest] = b"".join(_capped(chunks, desc.size))
                    else:
                        self._writer_for(digest).add_stream(_member(digest), desc.size, chunks)
        except BaseException:
            if tee is not None:
                tee.discard()
            with self._lock:
                self._claimed.discard(digest)
            raise
        if tee is not None:
            tee.commit()
        with self._lock:
            self._written.add(digest)

    def manifest_exists(self, digest: Digest) -> bool:
        return digest in self._written

    def resolve_tag(self, tag: str) -> Digest | None:
        return self._tagged.get(tag)

    def put_manifest(self, manifest: Manifest, tag: str | None = None) -> None:
        digest = manifest.digest
        if digest not in self.head.small and digest not in self.head.blobs:
            raise BundleError(f"{self.description}: manifest {digest} is not in the planned bundle manifest")
        if tag is not None:
            planned = self.head.tags.get(tag)
            if planned is None or planned.digest != digest:
                raise BundleError(f"{self.description}: tag {tag} -> {digest} is not in the planned oci/index.json")
        with self._lock:
            if digest not in self._written:
                if self._tar is not None:
                    self._tar.write_bytes(_member(digest), manifest.data)
                elif self.split and digest not in self.head.blobs:
                    self._held_small[digest] = manifest.data
                else:
                    self._writer_for(digest).add_bytes(_member(digest), manifest.data)
                self._written.add(digest)
                self._claimed.add(digest)
            if tag is not None:
                self._tagged[tag] = digest

    def image(self, name: str) -> BundleRepository:
        """The repository of image ``name`` in this bundle (tags scoped to it)."""
        return BundleRepository(self, name)

    # -- Store: reading (a bundle being written is read with airgap.bundle.reader once closed) ---
    def fetch_manifest(self, ref: str) -> Manifest:
        raise AirgapError(f"{self.description} is being written; open it with the bundle reader")

    def open_blob(self, desc: Descriptor) -> AbstractContextManager[Iterator[bytes]]:
        raise AirgapError(f"{self.description} is being written; open it with the bundle reader")


class BundleRepository(Store):
    """One image's repository in the bundle being written. ``oci/index.json`` names every tag
    ``<image>:<tag>`` (as the reader scopes them), so the engine can push an image and its attachments
    under their own tags (``0.1.0``, ``sha256-<hex>.sig``) and two images' signature tags never collide."""

    tag_schema = False  # only cosign-tag attachments travel in a bundle today

    def __init__(self, place: BundlePlace, name: str):
        self.place = place
        self.repository = name
        self.description = f"{place.description} ({name})"

    @property
    def place_key(self) -> str:
        return self.place.place_key

    def _tag(self, tag: str) -> str:
        return f"{self.repository}:{tag}"

    def blob_exists(self, desc: Descriptor) -> bool:
        return self.place.blob_exists(desc)

    def mount_blob(self, desc: Descriptor, source: Store) -> bool:
        return self.place.mount_blob(desc, source)

    def put_blob(self, desc: Descriptor, body: BlobBody) -> None:
        self.place.put_blob(desc, body)

    def manifest_exists(self, digest: Digest) -> bool:
        return self.place.manifest_exists(digest)

    def resolve_tag(self, tag: str) -> Digest | None:
        return self.place.resolve_tag(self._tag(tag))

    def put_manifest(self, manifest: Manifest, tag: str | None = None) -> None:
        self.place.put_manifest(manifest, self._tag(tag) if tag is not None else None)

    def fetch_manifest(self, ref: str) -> Manifest:
        return self.place.fetch_manifest(ref)

    def open_blob(self, desc: Descriptor) -> AbstractContextManager[Iterator[bytes]]:
        return self.place.open_blob(desc)


def _capped(chunks: Iterator[bytes], size: int) -> Iterator[bytes]:
    if size > SMALL_LIMIT:
        raise BundleError(f"a {size}-byte signature blob or manifest; over the {SMALL_LIMIT}-byte limit")
    yield from chunks


class _Tee:
    """Copies a verified stream into a file as it passes; renamed into place only when the stream
    ended normally (the engine's DigestingReader raises instead of yielding the last chunk of a
    blob that does not match, so a bad blob never reaches the cache).

    Not fsynced: the store is a cache, and forcing a second copy of every byte to disk would double
    the disk time of a bundle. A blob a crash left torn fails its digest check when next read, is
    removed, and is pulled again (airgap.bundler._ReadThrough)."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        self.fh = os.fdopen(fd, "wb")
        self.done = False

    def through(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.fh.write(chunk)
            yield chunk
        self.done = True

    def commit(self) -> None:
        if not self.done:
            self.discard()
            return
        try:
            self.fh.close()
            os.chmod(self.tmp, 0o644)
            os.replace(self.tmp, self.path)
        except OSError:
            self.discard()  # the cache is an optimisation: failing to fill it does not fail the bundle

    def discard(self) -> None:
        self.fh.close()
        Path(self.tmp).unlink(missing_ok=True)


def _part_path(output: Path, index: int, total: int) -> Path:
    stem = output.name[:-4] if output.name.endswith(".tar") else output.name
    return output.with_name(f"{stem}.part{index:02d}-of-{total:02d}.tar")


__all__ = ["BundleHead", "BundlePlace"]
