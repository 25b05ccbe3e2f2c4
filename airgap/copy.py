"""The one copy engine: images and indexes between any two places.

Order, for every destination: all blobs (each pushed once per place, then mounted into the other
repositories of that place), then child manifests, then the index or root manifest, then tags. A tag
therefore never points at anything incomplete, and an interrupted copy resumes by skipping what the
destination already holds.

With ``verify_first`` every blob that will be written is read and digest-checked before the first
write, so a corrupt source (a damaged bundle) writes nothing at all. Every byte written is checked
again as it streams.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from airgap.errors import AirgapError, BundleError, DigestMismatch, InputError, ManifestBlobUnknown
from airgap.model import Descriptor, Digest, DigestingReader, Platform
from airgap.model.manifest import ImageIndex, ImageManifest, Manifest, build_index
from airgap.places.base import Store
from airgap.progress import Progress
from airgap.registry.client import Transient

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class CopyJob:
    name: str                      # names the image in messages and reports
    src: Store
    ref: str                       # tag or digest at the source
    dst: Store
    tags: list[str] = field(default_factory=list)
    platforms: list[Platform] | None = None  # None keeps every platform of an index
    kind: str = "image"            # "image", or "signature" for a cosign signature manifest


@dataclass
class ImageResult:
    name: str
    destination: str
    tags: list[str]
    digest: str
    media_type: str
    platforms: list[str]
    status: str                    # "copied", "present" or "planned" (dry run)
    blob_bytes: int
    kind: str = "image"


@dataclass
class CopyReport:
    images: list[ImageResult] = field(default_factory=list)
    blobs_uploaded: int = 0
    bytes_uploaded: int = 0
    blobs_mounted: int = 0
    blobs_present: int = 0
    manifests_pushed: int = 0
    seconds: float = 0.0
    dry_run: bool = False

    def to_json(self) -> dict:
        return {
            "images": [vars(i) for i in self.images if i.kind == "image"],
            "signatures": [vars(i) for i in self.images if i.kind == "signature"],
            "blobs_uploaded": self.blobs_uploaded, "bytes_uploaded": self.bytes_uploaded,
            "blobs_mounted": self.blobs_mounted, "blobs_present": self.blobs_present,
            "manifests_pushed": self.manifests_pushed, "seconds": round(self.seconds, 3),
            "dry_run": self.dry_run,
        }


@dataclass
class _Resolved:
    job: CopyJob
    root: Manifest
    images: list[ImageManifest]    # the platform manifests (or the single manifest)

    def blobs(self) -> list[Descriptor]:
        seen: dict[Digest, Descriptor] = {}
        for m in self.images:
            for b in m.blobs():
                seen.setdefault(b.digest, b)
        return list(seen.values())

    def platforms(self) -> list[str]:
        if isinstance(self.root, ImageIndex):
            return [str(d.platform) for d in self.root.manifests if d.platform]
        return []


def resolve(job: CopyJob) -> _Resolved:
    """Fetch the root manifest and the children it keeps; --platform filtering builds a new index."""
    root = job.src.fetch_manifest(job.ref)
    if isinstance(root, ImageManifest):
        return _Resolved(job, root, [root])
    children = list(root.manifests)
    if job.platforms:
        kept = [c for c in children if c.platform and any(p.matches(c.platform) for p in job.platforms)]
        if not kept:
            have = ", ".join(str(p) for p in root.platforms()) or "none"
            want = ", ".join(str(p) for p in job.platforms)
            raise InputError(f"image {job.name}: none of the requested platforms ({want}) is in {job.src.description} "
                             f"(it has: {have})")
        if len(kept) != len(children):
            root = build_index(kept, media_type=root.media_type)
        children = kept
    images: list[ImageManifest] = []
    for child in children:
        m = job.src.fetch_manifest(str(child.digest))
        if isinstance(m, ImageIndex):
            raise InputError(f"image {job.name}: nested indexes are not supported ({child.digest})")
        images.append(m)
    return _Resolved(job, root, images)


def _size_checked(chunks: Iterable[bytes], desc: Descriptor, src: Store) -> Iterator[bytes]:
    n = 0
    for chunk in chunks:
        n += len(chunk)
        if n > desc.size:
            break
        yield chunk
    if n != desc.size:
        raise DigestMismatch(f"blob {desc.digest} from {src.description}", str(desc.digest),
                             f"{n} bytes where {desc.size} were expected (changed since it was verified)")


class MissingBlobs(BundleError):
    """Blobs the source does not hold and the destination lacks (a delta loaded without its base)."""

    def __init__(self, blobs: list[Descriptor], hint: str = ""):
        self.blobs = blobs
        names = ", ".join(str(b.digest) for b in blobs[:5]) + (f" and {len(blobs) - 5} more" if len(blobs) > 5 else "")
        super().__init__(f"{len(blobs)} blobs are neither in the bundle nor in the target: {names}"
                         + (f"; {hint}" if hint else "") + ". Nothing was pushed")


class CopyEngine:
    def __init__(self, *, concurrency: int = 8, progress: Progress | None = None, verify_first: bool = False,
                 dry_run: bool = False, retries: int = 3, verified: Iterable[Digest] = ()):
        """``verified``: blobs the caller has already read and digest-checked at the source (a load
        into Harbor or ECR checks the whole bundle before creating projects): the verify-first pass
        skips them instead of hashing every byte a second time."""
        self.concurrency = max(1, concurrency)
        self.verified = frozenset(verified)
        self.progress = progress or Progress()
        self.verify_first = verify_first
        self.dry_run = dry_run
        self.retries = retries
        self._verified = False

    def _map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        items = list(items)
        if len(items) <= 1 or self.concurrency == 1:
            return [fn(i) for i in items]
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(fn, items))

    # -- the whole copy -------------------------------------------------------------------------
    def copy(self, jobs: list[CopyJob], resolved: list[_Resolved] | None = None) -> CopyReport:
        """``resolved``: the jobs already resolved (a destination planned from that graph, the
        bundle, must get exactly it: a tag that moved upstream in between would not match)."""
        t0 = time.monotonic()
        report = CopyReport(dry_run=self.dry_run)
        if resolved is None:
            resolved = self._map(resolve, jobs)

        present = self._map(self._already_there, resolved)
        todo = [r for r, p in zip(resolved, present) if not p]

        # Which blobs each destination lacks; a blob lacking in several repositories of one place
        # is uploaded once and mounted into the others.
        pairs: dict[tuple[str, Digest], tuple[Store, Descriptor]] = {}
        for r in todo:
            for b in r.blobs():
                pairs.setdefault((r.job.dst.description, b.digest), (r.job.dst, b))
        pair_list = list(pairs.values())
        exists = self._map(lambda p: p[0].blob_exists(p[1]), pair_list)
        sources: dict[Digest, Store] = {}
        for r in todo:
            for b in r.blobs():
                sources.setdefault(b.digest, r.job.src)
        have_in_place: dict[tuple[str, Digest], Store] = {}
        missing: list[tuple[Store, Descriptor]] = []
        for (dst, b), ok in zip(pair_list, exists):
            if ok:
                report.blobs_present += 1
                have_in_place.setdefault((dst.place_key, b.digest), dst)
            else:
                missing.append((dst, b))
        uploads: list[tuple[Store, Descriptor]] = []
        mounts: list[tuple[Store, Descriptor, Store]] = []
        for dst, b in missing:
            key = (dst.place_key, b.digest)
            if key in have_in_place:
                mounts.append((dst, b, have_in_place[key]))
            else:
                have_in_place[key] = dst
                uploads.append((dst, b))

        if self.verify_first and uploads:
            uploads, mounts = self._sources_complete(uploads, mounts, sources, todo)
        if self.verify_first and uploads:
            unique = {b.digest: b for _, b in uploads if b.digest not in self.verified}
            self.progress.phase("verifying", sum(b.size for b in unique.values()))
            self._map(lambda b: self._verify_blob(sources[b.digest], b),
                      sorted(unique.values(), key=lambda b: b.size, reverse=True))

        if self.dry_run:
            report.blobs_uploaded = len(uploads)
            report.bytes_uploaded = sum(b.size for _, b in uploads)
            report.blobs_mounted = len(mounts)
            report.images = [self._result(r, "present" if p else "planned") for r, p in zip(resolved, present)]
            report.seconds = time.monotonic() - t0
            return report

        # Largest first: a big layer started last would leave one stream running alone at the end.
        uploads.sort(key=lambda u: u[1].size, reverse=True)
        if uploads:
            self.progress.phase("copying", sum(b.size for _, b in uploads))
        self._verified = self.verify_first
        self._map(lambda u: self._upload(sources[u[1].digest], u[0], u[1]), uploads)
        report.blobs_uploaded = len(uploads)
        report.bytes_uploaded = sum(b.size for _, b in uploads)

        mounted = self._map(lambda m: self._mount_or_upload(sources[m[1].digest], *m), mounts)
        report.blobs_mounted = sum(1 for x in mounted if x)
        report.blobs_uploaded += sum(1 for x in mounted if not x)
        report.bytes_uploaded += sum(m[1].size for m, x in zip(mounts, mounted) if not x)

        self.progress.images(sum(1 for r in todo if r.job.kind == "image"))
        pushed = self._map(self._push_manifests, todo)
        report.manifests_pushed = sum(pushed)
        for r, p in zip(resolved, present):
            result = self._result(r, "present" if p else "copied")
            report.images.append(result)
            if result.kind != "image":
                continue
            self.progress.note(f"{'=' if p else '+'} {result.destination}:{','.join(result.tags) or result.digest} "
                               f"{result.digest[:19]} {result.status}")
        report.seconds = time.monotonic() - t0
        return report

    # -- steps ----------------------------------------------------------------------------------
    def _sources_complete(self, uploads, mounts, sources, todo):
        """A delta bundle lacks the blobs its base shipped: each must already be in the destination
        place, where it can be mounted from another repository; anything else is missing, and the
        copy stops before writing anything."""
        absent = [(dst, b) for dst, b in uploads if not sources[b.digest].blob_exists(b)]
        if not absent:
            return uploads, mounts
        places: dict[str, list[Store]] = {}
        for r in todo:
            group = places.setdefault(r.job.dst.place_key, [])
            if all(s.description != r.job.dst.description for s in group):
                group.append(r.job.dst)
        found: dict[tuple[str, Digest], Store] = {}
        still: list[Descriptor] = []
        for dst, b in absent:
            holder = next((s for s in places.get(dst.place_key, []) if s is not dst and s.blob_exists(b)), None)
            if holder is None:
                still.append(b)
            else:
                found[(dst.description, b.digest)] = holder
        if still:
            raise MissingBlobs(still)
        keep = [(d, b) for d, b in uploads if (d.description, b.digest) not in found]
        moved = [(d, b, found[(d.description, b.digest)]) for d, b in uploads if (d.description, b.digest) in found]
        return keep, moved + mounts

    def _already_there(self, r: _Resolved) -> bool:
        if r.job.tags:
            return all(r.job.dst.resolve_tag(t) == r.root.digest for t in r.job.tags)
        return r.job.dst.manifest_exists(r.root.digest)

    def _result(self, r: _Resolved, status: str) -> ImageResult:
        return ImageResult(name=r.job.name, destination=r.job.dst.description, tags=list(r.job.tags),
                           digest=str(r.root.digest), media_type=r.root.media_type, platforms=r.platforms(),
                           status=status, blob_bytes=sum(b.size for b in r.blobs()), kind=r.job.kind)

    def _body(self, src: Store, desc: Descriptor, count: bool, rehash: bool = True) -> Iterator[bytes]:
        with src.open_blob(desc) as chunks:
            stream = (DigestingReader(chunks, desc.digest, desc.size, f"blob {desc.digest} from {src.description}")
                      if rehash else _size_checked(chunks, desc, src))
            for chunk in stream:
                if count:
                    self.progress.advance(len(chunk))
                yield chunk

    def _verify_blob(self, src: Store, desc: Descriptor) -> None:
        for _ in self._body(src, desc, count=True):
            pass

    def _upload(self, src: Store, dst: Store, desc: Descriptor) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                # Hashing twice costs CPU the registry needs on a small host: a blob verified in the
                # first pass is checked again by a registry on commit, so it only gets a size check.
                rehash = not (self._verified and dst.checks_digests_on_write)
                dst.put_blob(desc, lambda: self._body(src, desc, count=attempt == 1, rehash=rehash))
                return
            except Transient:
                if attempt >= self.retries:
                    raise
                time.sleep(0.5 * 2 ** (attempt - 1))

    def _mount_or_upload(self, src: Store, dst: Store, desc: Descriptor, have: Store) -> bool:
        try:
            if dst.mount_blob(desc, have):
                return True
        except AirgapError:
            pass  # a refused mount is not an error: upload instead
        # A delta lacks the blobs of its base: then the copy already in the destination place is the
        # source (registries that cannot mount, Nexus and ECR by default, get it streamed across).
        self._upload(src if src.blob_exists(desc) else have, dst, desc)
        return False

    def _push_manifests(self, r: _Resolved) -> int:
        dst = r.job.dst
        n = 0
        if isinstance(r.root, ImageIndex):
            for child in r.images:
                if not dst.manifest_exists(child.digest):
                    self._put_manifest(r, child)
                    n += 1
        if not r.job.tags:
            if not dst.manifest_exists(r.root.digest):
                self._put_manifest(r, r.root)
                n += 1
            if r.job.kind == "image":
                self.progress.image_done()
            return n
        for tag in r.job.tags:
            # Check first: Harbor and ECR refuse re-pushing an immutable tag even with the same digest.
            if dst.resolve_tag(tag) != r.root.digest:
                self._put_manifest(r, r.root, tag)
                n += 1
        if r.job.kind == "image":
            self.progress.image_done()
        return n

    def _put_manifest(self, r: _Resolved, manifest: Manifest, tag: str | None = None) -> None:
        """Push one manifest; when the registry says it lacks a blob that HEAD claimed it had
        (Nexus, nexus-public#264), upload everything it references again, unconditionally, and retry once."""
        try:
            r.job.dst.put_manifest(manifest, tag)
            return
        except ManifestBlobUnknown:
            self.progress.note(f"! {r.job.dst.description}: registry lost content of {manifest.digest.short}; "
                               "re-uploading it without trusting HEAD")
        children = r.images if isinstance(manifest, ImageIndex) else [manifest]
        for image in children:
            for blob in image.blobs():
                self._upload(r.job.src, r.job.dst, blob)
            if image is not manifest:
                r.job.dst.put_manifest(image)
        r.job.dst.put_manifest(manifest, tag)
