"""Connected side: IMAGES.md (+ chart + CRDs) -> one offline bundle tarball.

Registry images are first copied into the local content store (an OCI layout, default
``~/.cache/airgap/store``), which makes an interrupted bundle resumable and is where built images
land; ``oci:DIR:REF`` sources are packed straight from their layout. The tar is then written in one
pass, every blob streamed through a digest check.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import httpx

from airgap.bundle.format import LAYOUT_DIR, MANIFEST_NAME, BundleFile, BundleImage, BundleManifest
from airgap.bundle.writer import BundleWriter
from airgap.chartpkg import package_chart
from airgap.copy import CopyEngine, CopyJob, _Resolved, resolve
from airgap.errors import BundleError, InputError
from airgap.fsutil import atomic_write
from airgap.imagesfile import FileEntry, ImageEntry, ImagesFile
from airgap.model import Descriptor, Digest, DigestingReader, Platform, Reference
from airgap.model.digest import CHUNK
from airgap.places.base import Store
from airgap.places.layout import REF_NAME, LayoutStore
from airgap.places.registry import RegistryStore
from airgap.progress import Progress
from airgap.registry.client import RegistryClient, RegistryOptions


def default_store() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "airgap" / "store"


@dataclass
class BundleOptions:
    output: Path
    chart: Path | None = None            # overrides IMAGES.md chart:
    crds: list[Path] = field(default_factory=list)  # override IMAGES.md crds:
    no_chart: bool = False
    no_crds: bool = False
    platforms: list[Platform] = field(default_factory=list)  # overrides IMAGES.md platforms
    store: Path = field(default_factory=default_store)
    registry: RegistryOptions = field(default_factory=RegistryOptions)
    concurrency: int = 8
    compress: str | None = None  # "zstd", or None for a plain tar (the default: loads stream it in place)


@dataclass
class BundleResult:
    path: Path
    manifest: BundleManifest
    size: int
    seconds: float

    def to_json(self) -> dict:
        return {"bundle": str(self.path), "size": self.size, "seconds": round(self.seconds, 3),
                "release": self.manifest.release, "blobs": self.manifest.blob_count,
                "blob_bytes": self.manifest.blob_bytes,
                "images": [{"name": i.name, "tag": i.tag, "digest": i.digest, "source": i.source,
                            "platforms": i.platforms} for i in self.manifest.images],
                "files": [{"path": f.path, "kind": f.kind, "sha256": f.sha256} for f in self.manifest.files]}


class _Sources:
    """Opens each place an IMAGES.md entry names, sharing one client per registry host."""

    def __init__(self, images: ImagesFile, options: BundleOptions):
        self.images = images
        self.options = options
        self.clients: dict[str, RegistryClient] = {}
        self._store: LayoutStore | None = None

    @property
    def store(self) -> LayoutStore:
        if self._store is None:
            self._store = LayoutStore(self.options.store, create=True)
        return self._store

    def client(self, host: str) -> RegistryClient:
        if host not in self.clients:
            self.clients[host] = RegistryClient(host, self.options.registry)
        return self.clients[host]

    def close(self) -> None:
        for c in self.clients.values():
            c.close()

    def locate(self, entry: ImageEntry) -> tuple[Store, str, str]:
        """(place, ref in that place, default target tag) for an entry."""
        where = f"{self.images.path}:{entry.line}: image {entry.name}"
        if entry.build is not None:
            ref = f"{entry.name}:{self.images.release}"
            if self.store.resolve_tag(ref) is None:
                raise InputError(f"{where} is built from source (build:), and the local store {self.options.store} "
                                 f"has no {ref}: run `airgap build` first, or bundle without --no-build")
            return self.store, ref, self.images.release
        assert entry.source is not None
        if entry.source.startswith("oci:"):
            rest = entry.source[4:]
            directory, _, ref = rest.rpartition(":") if rest.count(":") >= 1 else (rest, "", "")
            layout_dir = Path(directory)
            if not layout_dir.is_absolute():
                layout_dir = self.images.base_dir / layout_dir
            try:
                layout = LayoutStore(layout_dir)
            except InputError as exc:
                raise InputError(f"{where}: {exc}") from None
            tag = ref.rsplit(":", 1)[1] if ":" in ref else self.images.release
            return layout, ref, tag
        reference = Reference.parse(entry.source)
        return (RegistryStore(self.client(reference.registry), reference.repository), reference.ref,
                reference.tag or self.images.release)


def _file_entries(images: ImagesFile, options: BundleOptions) -> list[FileEntry]:
    if options.no_crds:
        return []
    if options.crds:
        return [FileEntry(line=0, path=str(p)) for p in options.crds]
    return list(images.crds)


def _crd_bytes(entry: FileEntry, base: Path, cache: Path) -> tuple[str, bytes]:
    """(file name, content) of a CRD file; URLs are fetched once, pinned by sha256, and cached."""
    if entry.path:
        p = Path(entry.path)
        p = p if p.is_absolute() else base / p
        try:
            return p.name, p.read_bytes()
        except FileNotFoundError:
            where = f"line {entry.line}: " if entry.line else ""
            raise InputError(f"{where}CRD file {p} not found") from None
    assert entry.url and entry.sha256
    name = entry.url.rstrip("/").rsplit("/", 1)[-1]
    cached = cache / "files" / entry.sha256
    if cached.is_file():
        data = cached.read_bytes()
        if hashlib.sha256(data).hexdigest() == entry.sha256:
            return name, data
    try:
        resp = httpx.get(entry.url, follow_redirects=True, timeout=60)
        resp.raise_for_status()
    except httpx.HTTPError as exc:
        raise InputError(f"line {entry.line}: cannot download CRDs from {entry.url}: {exc}") from None
    actual = hashlib.sha256(resp.content).hexdigest()
    if actual != entry.sha256:
        raise InputError(f"line {entry.line}: {entry.url} has sha256 {actual}, IMAGES.md pins {entry.sha256}")
    atomic_write(cached, resp.content)
    return name, resp.content


def create_bundle(images: ImagesFile, options: BundleOptions, progress: Progress | None = None) -> BundleResult:
    progress = progress or Progress()
    t0 = time.monotonic()
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or time.time())
    created = datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    # Chart and CRDs first: a typo there should fail before minutes of pulling.
    files: list[tuple[BundleFile, bytes]] = []
    chart_path = None if options.no_chart else (options.chart or (images.chart and images.base_dir / images.chart))
    if chart_path:
        chart = package_chart(Path(chart_path), epoch)
        member = f"chart/{chart.filename}"
        files.append((BundleFile(member, "chart", hashlib.sha256(chart.data).hexdigest(), len(chart.data),
                                 chart.name, chart.version), chart.data))
    for entry in _file_entries(images, options):
        name, data = _crd_bytes(entry, images.base_dir, options.store.parent)
        member = f"crds/{name}"
        if any(f.path == member for f, _ in files):
            raise InputError(f"two CRD files are both named {name}")
        files.append((BundleFile(member, "crd", hashlib.sha256(data).hexdigest(), len(data), name), data))

    sources = _Sources(images, options)
    try:
        plan: list[tuple[ImageEntry, CopyJob, str]] = []
        pulls: list[CopyJob] = []
        for entry in images.images:
            place, ref, tag = sources.locate(entry)
            tag = entry.tag or tag
            platforms = list(options.platforms or entry.platforms or images.platforms) or None
            job = CopyJob(entry.name, place, ref, place, [tag], platforms)
            if isinstance(place, RegistryStore):
                # Pull into the local store first; the packer then reads the store.
                cache_ref = str(entry.source)
                pulls.append(CopyJob(entry.name, place, ref, sources.store, [cache_ref], platforms))
                job = CopyJob(entry.name, sources.store, cache_ref, sources.store, [tag], None)
            plan.append((entry, job, tag))
        progress.note(f"bundle release {images.release}: {len(plan)} images, {len(files)} files -> {options.output}")
        if pulls:
            CopyEngine(concurrency=options.concurrency, progress=progress).copy(pulls)
        resolved = [resolve(job) for _, job, _ in plan]
    finally:
        sources.close()
    return _pack(images, options, plan, resolved, files, created, epoch, progress, t0)


def _pack(images: ImagesFile, options: BundleOptions, plan: list[tuple[ImageEntry, CopyJob, str]],
          resolved: list[_Resolved], files: list[tuple[BundleFile, bytes]], created: str, epoch: int,
          progress: Progress, t0: float) -> BundleResult:
    blobs: dict[Digest, tuple[Descriptor, Store]] = {}
    manifests: dict[Digest, bytes] = {}
    bundle_images: list[BundleImage] = []
    index_entries: list[dict] = []
    for (entry, job, tag), r in zip(plan, resolved):
        manifests[r.root.digest] = r.root.data
        for m in r.images:
            manifests[m.digest] = m.data
        for b in r.blobs():
            blobs.setdefault(b.digest, (b, job.src))
        bundle_images.append(BundleImage(
            name=entry.name, source=entry.source or f"build:{entry.build.context if entry.build else ''}",
            tag=tag, digest=str(r.root.digest), media_type=r.root.media_type, size=len(r.root.data),
            platforms=r.platforms(), values=entry.values, blob_bytes=sum(b.size for b in r.blobs())))
        desc = r.root.descriptor.to_json()
        desc["annotations"] = {REF_NAME: f"{entry.name}:{tag}"}
        index_entries.append(desc)
    for d in list(blobs):
        manifests.pop(d, None)  # a manifest that is also someone's blob is stored once
    blob_bytes = sum(b.size for b, _ in blobs.values())
    manifest = BundleManifest(release=images.release, created=created, images=bundle_images,
                              files=[f for f, _ in files], blob_count=len(blobs) + len(manifests),
                              blob_bytes=blob_bytes + sum(len(m) for m in manifests.values()))
    layout_index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                               "manifests": index_entries}, indent=2).encode()

    progress.phase("packing", blob_bytes)
    with BundleWriter(options.output, epoch, options.compress) as w:
        w.add_bytes(MANIFEST_NAME, manifest.to_json())
        w.add_bytes(f"{LAYOUT_DIR}/oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        w.add_bytes(f"{LAYOUT_DIR}/index.json", layout_index)
        for digest, data in manifests.items():
            w.add_bytes(f"{LAYOUT_DIR}/blobs/{digest.algorithm}/{digest.hex}", data)
        for digest, (desc, src) in blobs.items():
            with src.open_blob(desc) as chunks:
                body = DigestingReader(chunks, desc.digest, desc.size, f"blob {desc.digest} from {src.description}")
                w.add_stream(f"{LAYOUT_DIR}/blobs/{digest.algorithm}/{digest.hex}", desc.size,
                             _counted(body, progress))
        for f, data in files:
            w.add_bytes(f.path, data)
    size = options.output.stat().st_size
    progress.note(f"wrote {options.output} ({size} bytes, {manifest.blob_count} blobs)")
    return BundleResult(options.output, manifest, size, time.monotonic() - t0)


def _counted(chunks, progress: Progress):
    for chunk in chunks:
        progress.advance(len(chunk))
        yield chunk


__all__ = ["BundleOptions", "BundleResult", "create_bundle", "default_store", "BundleError", "CHUNK"]
