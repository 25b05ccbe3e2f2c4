"""The one copy engine: images and indexes, with their attachments, between any two places.

A job's graph is its root manifest or index, the platform manifests it keeps, their blobs, and the
attachments that refer to any of them (signatures, attestations, SBOMs; :mod:`airgap.model.attachment`):
those given with the job (our own signatures) and, with ``discover``, those the source holds,
recursively (a signature of an SBOM).

Order, for every destination: all blobs (each pushed once per place, then mounted into the other
repositories of that place), then child manifests, then attachments (after their subject), then the
index or root manifest with its tags. A tag therefore never points at anything incomplete or unsigned,
and an interrupted copy resumes by skipping what the destination already holds.

With ``verify_first`` nothing is committed before every blob that will be written has been read and
digest-checked, so a corrupt source (a damaged bundle) commits nothing at all. Where the destination
can stage a blob (a registry's upload session, committed by ``PUT ?digest=``) the check happens as it
streams there, the source is read once, and the commits follow when every staged blob matched; small
blobs and places that cannot stage are read and hashed first. Without it every byte written is still
checked as it streams, so a bad blob alone is kept out.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from airgap import limits
from airgap.errors import (
    AirgapError, DigestMismatch, InputError, ManifestBlobUnknown, MissingBlobs, RegistryError, Transient,
)
from airgap.model import Descriptor, Digest, DigestingReader, Platform
from airgap.model.attachment import ATTESTATION, REFERRER, SBOM, SIGNATURE, Attachment
from airgap.model.filebody import FileBody
from airgap.model.manifest import ImageIndex, ImageManifest, Manifest, build_index
from airgap.places.base import StagedBlob, Store
from airgap.progress import Progress

MAX_ATTACHMENT_DEPTH = limits.MAX_ATTACHMENT_DEPTH
MAX_ATTACHMENTS = limits.MAX_ATTACHMENTS


@dataclass(frozen=True)
class Attached:
    """An attachment to copy with its subject, and the place holding it (our signatures are made in
    memory; a discovered attachment is in the job's source)."""

    attachment: Attachment
    src: Store


AttachmentFilter = Callable[[Attachment], bool]


def select_attachments(spec: str) -> AttachmentFilter | None:
    """``all``, ``signatures``, ``none`` or comma-separated artifact types / kinds (sbom, attestation)."""
    words = {w.strip() for w in spec.split(",") if w.strip()}
    if not words or words == {"none"}:
        return None
    if "all" in words:
        return lambda a: True
    plural = {"signatures": SIGNATURE, "sboms": SBOM, "attestations": ATTESTATION}
    wanted = {plural.get(w, w) for w in words}
    return lambda a: a.kind in wanted or a.artifact_type in wanted

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
    kind: str = "image"            # names what the job copies in reports ("image", "chart", "record")
    attach: list[Attached] = field(default_factory=list)  # attachments given with the job
    discover: AttachmentFilter | None = None  # find these attachments at the source too (recursively)


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
            "signatures": [vars(i) for i in self.images if i.kind == SIGNATURE],
            "charts": [vars(i) for i in self.images if i.kind == "chart"],
            "attachments": [vars(i) for i in self.images if i.kind not in ("image", SIGNATURE, "chart", "record")],
            "blobs_uploaded": self.blobs_uploaded, "bytes_uploaded": self.bytes_uploaded,
            "blobs_mounted": self.blobs_mounted, "blobs_present": self.blobs_present,
            "manifests_pushed": self.manifests_pushed, "seconds": round(self.seconds, 3),
            "dry_run": self.dry_run,
        }


@dataclass
class _Attachment:
    attached: Attached
    manifest: ImageManifest

    @property
    def att(self) -> Attachment:
        return self.attached.attachment


@dataclass
class _Resolved:
    job: CopyJob
    root: Manifest
    images: list[ImageManifest]    # the platform manifests (or the single manifest)
    attachments: list[_Attachment] = field(default_factory=list)  # subjects before their attachments

    def retarget(self, job: CopyJob) -> _Resolved:
        """This graph for another job (another destination, attachments given): a destination planned
        from a graph resolved once, the bundle, must get exactly it, not a tag that moved since."""
        subjects = [self.root.digest] + [m.digest for m in self.images if m is not self.root]
        return _Resolved(job, self.root, self.images, _resolve_attachments(job, subjects))

    def blobs(self) -> list[Descriptor]:
        """The image's own blobs (what reports count as its size)."""
        seen: dict[Digest, Descriptor] = {}
        for m in self.images:
            for b in m.blobs():
                seen.setdefault(b.digest, b)
        return list(seen.values())

    def sourced_blobs(self) -> list[tuple[Descriptor, Store]]:
        """Every blob of the graph, attachments' too, with the place it is read from."""
        out = [(b, self.job.src) for b in self.blobs()]
        seen = {b.digest for b, _ in out}
        for a in self.attachments:
            for b in a.manifest.blobs():
                if b.digest not in seen:
                    seen.add(b.digest)
                    out.append((b, a.attached.src))
        return out

    def platforms(self) -> list[str]:
        if isinstance(self.root, ImageIndex):
            return [str(d.platform) for d in self.root.manifests if d.platform]
        return []


def resolve(job: CopyJob) -> _Resolved:
    """Fetch the root manifest and the children it keeps; --platform filtering builds a new index."""
    root = job.src.fetch_manifest(job.ref)
    if isinstance(root, ImageManifest):
        return _Resolved(job, root, [root], _resolve_attachments(job, [root.digest]))
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
    return _Resolved(job, root, images, _resolve_attachments(job, [root.digest] + [m.digest for m in images]))


def _resolve_attachments(job: CopyJob, subjects: list[Digest]) -> list[_Attachment]:
    """The job's given attachments, then (with ``discover``) what the source holds for each subject
    and, breadth first, for each attachment found."""
    out: list[_Attachment] = []
    seen: set[tuple[Digest, str]] = set()

    def add(attached: Attached) -> bool:
        att = attached.attachment
        key = (att.digest, att.tag or "")
        if key in seen:
            return False
        if len(out) >= MAX_ATTACHMENTS:
            raise InputError(f"image {job.name}: more than {MAX_ATTACHMENTS} attachments at {job.src.description}")
        manifest = attached.src.fetch_manifest(str(att.digest))
        if not isinstance(manifest, ImageManifest) or manifest.digest != att.digest:
            # An index as an attachment (a multi-platform SBOM) is not carried yet; say so, do not guess.
            raise InputError(f"image {job.name}: attachment {att.digest} at {attached.src.description} "
                             "is not an image manifest (attachment indexes are not supported)")
        seen.add(key)
        out.append(_Attachment(attached, manifest))
        return True

    for given in job.attach:
        add(given)
    if job.discover is None:
        return out
    level = list(subjects)
    for _ in range(MAX_ATTACHMENT_DEPTH):
        found: list[Digest] = []
        for subject in level:
            try:
                listed = job.src.attachments(subject)
            except RegistryError:
                continue  # a registry that refuses the lookup has nothing to carry for it
            for att in listed:
                if job.discover(att) and add(Attached(att, job.src)):
                    found.append(att.digest)
        if not found:
            break
        level = found
    return out


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


def _streams(uploads: list[tuple[Store, Descriptor]], concurrency: int) -> int:
    """How many large blobs to stream at once. Streams share what the destination takes in about
    evenly, so with N of them the largest blob (sent first) gets 1/N of it: more streams than
    total/largest bytes leave it running alone at the end, on one of the registry's cores, while
    the copy waits for it (the 1.3 GB corpus: a 325 MB layer, four streams). At least two, so the
    other blobs overlap the largest."""
    sizes = [d.size for _, d in uploads]
    if not sizes or max(sizes) <= 0:
        return concurrency
    return max(2, min(concurrency, sum(sizes) // max(sizes)))


class CopyEngine:
    def __init__(self, *, concurrency: int = limits.COPY_CONCURRENCY, progress: Progress | None = None,
                 verify_first: bool = False, dry_run: bool = False, retries: int = limits.COPY_RETRIES,
                 verified: Iterable[Digest] = ()):
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

    def _map(self, fn: Callable[[T], R], items: Iterable[T], streams: int | None = None) -> list[R]:
        """``fn`` over ``items`` on ``streams`` threads (default: the engine's concurrency)."""
        items = list(items)
        streams = min(self.concurrency, streams or self.concurrency)
        if len(items) <= 1 or streams == 1:
            return [fn(i) for i in items]
        with ThreadPoolExecutor(streams) as pool:
            futures = [pool.submit(fn, i) for i in items]
            try:
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:  # fail fast: what has not started does not start
                    f.cancel()
                raise

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
        sources: dict[Digest, Store] = {}
        for r in todo:
            for b, src in r.sourced_blobs():
                pairs.setdefault((r.job.dst.description, b.digest), (r.job.dst, b))
                sources.setdefault(b.digest, src)
        pair_list = list(pairs.values())
        exists = self._map(lambda p: self._blob_there(*p), pair_list)
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
        # Verify first: a blob a destination can stage is hashed as it streams there, and committed
        # only once every staged blob matched, so the source is read once; the rest (small blobs,
        # which a place may commit in the very request that sends them) is hashed before anything.
        staged: list[tuple[Store, Descriptor]] = []
        direct: list[tuple[Store, Descriptor]] = []
        for u in uploads:
            (staged if self.verify_first and not self.dry_run and self._stages(u) else direct).append(u)
        if self.verify_first and direct:
            unique = {b.digest: b for _, b in direct if b.digest not in self.verified}
            if unique:
                self.progress.phase("verifying", sum(b.size for b in unique.values()))
                self._map(lambda b: self._verify_blob(sources[b.digest], b),
                          sorted(unique.values(), key=lambda b: b.size, reverse=True))

        if self.dry_run:
            report.blobs_uploaded = len(uploads)
            report.bytes_uploaded = sum(b.size for _, b in uploads)
            report.blobs_mounted = len(mounts)
            for r, p in zip(resolved, present):
                report.images.extend(self._results(r, "present" if p else "planned"))
            report.seconds = time.monotonic() - t0
            return report

        # Largest first: a big layer started last would leave one stream running alone at the end.
        staged.sort(key=lambda u: u[1].size, reverse=True)
        direct.sort(key=lambda u: u[1].size, reverse=True)
        if uploads:
            self.progress.phase("copying", sum(b.size for _, b in uploads))
        handles = self._stage_all(staged, sources)
        self._verified = self.verify_first
        try:
            self._map(lambda step: step(), [h.commit for h in handles] + [
                functools.partial(self._upload, sources[b.digest], dst, b) for dst, b in direct])
        except BaseException:
            for h in handles:
                h.cancel()  # what did not commit yet does not linger (a committed one ignores it)
            raise
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
            results = self._results(r, "present" if p else "copied")
            report.images.extend(results)
            result = results[0]
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
        dst = r.job.dst
        if r.job.tags:
            there = all(dst.resolve_tag(t) == r.root.digest for t in r.job.tags)
        else:
            there = dst.manifest_exists(r.root.digest)
        if not there:
            return False
        return all(dst.has_attachment(a.att) for a in r.attachments)

    def _results(self, r: _Resolved, status: str) -> list[ImageResult]:
        """The job's own line, then one per attachment (``present`` when the destination had it)."""
        out = [ImageResult(name=r.job.name, destination=r.job.dst.description, tags=list(r.job.tags),
                           digest=str(r.root.digest), media_type=r.root.media_type, platforms=r.platforms(),
                           status=status, blob_bytes=sum(b.size for b in r.blobs()), kind=r.job.kind)]
        for a in r.attachments:
            att = a.att
            out.append(ImageResult(name=f"{r.job.name} {att.kind}", destination=r.job.dst.description,
                                   tags=[att.tag] if att.tag else [], digest=str(att.digest),
                                   media_type=a.manifest.media_type, platforms=[], status=status,
                                   blob_bytes=sum(b.size for b in a.manifest.blobs()), kind=att.kind))
        return out

    def _body(self, src: Store, desc: Descriptor, count: bool, rehash: bool = True) -> Iterator[bytes]:
        where = src.blob_file(desc)
        if where is not None:
            # A bundle member: read straight from the file (a plain-HTTP upload sends it with sendfile).
            return FileBody(where, desc.digest, f"blob {desc.digest} from {src.description}",
                            progress=self.progress.advance if count else None, rehash=rehash)
        return self._chunks(src, desc, count, rehash)

    def _chunks(self, src: Store, desc: Descriptor, count: bool, rehash: bool) -> Iterator[bytes]:
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

    @staticmethod
    def _blob_there(dst: Store, desc: Descriptor) -> bool:
        # A small blob is sent without asking into a repository with no tag: the HEAD costs a
        # registry a fifth of the upload, and such a repository holds at most the leftovers of an
        # interrupted load (large blobs are still asked for, so a resumed load skips those).
        if desc.size <= limits.MONOLITHIC_UPLOAD_BYTES and dst.holds_no_tags():
            return False
        return dst.blob_exists(desc)

    def _stages(self, upload: tuple[Store, Descriptor]) -> bool:
        dst, desc = upload
        return dst.stages_blobs and desc.size > limits.MONOLITHIC_UPLOAD_BYTES and desc.digest not in self.verified

    def _stage_all(self, uploads: list[tuple[Store, Descriptor]], sources: dict[Digest, Store]) -> list[StagedBlob]:
        """Stage every upload, hashing each on the way; if one fails (a damaged source), every
        session already open is cancelled and nothing is committed."""
        handles: list[StagedBlob] = []
        lock = threading.Lock()

        def stage(upload: tuple[Store, Descriptor]) -> None:
            dst, desc = upload
            src = sources[desc.digest]
            handle = self._retrying(lambda attempt: dst.stage_blob(
                desc, functools.partial(self._body, src, desc, count=attempt == 1)))
            with lock:
                handles.append(handle)

        try:
            self._map(stage, uploads, _streams(uploads, self.concurrency))
        except BaseException:
            for h in handles:
                h.cancel()
            raise
        return handles

    def _retrying(self, step: Callable[[int], R]) -> R:
        """``step(attempt)``, again from a fresh stream after a Transient failure."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return step(attempt)
            except Transient:
                if attempt >= self.retries:
                    raise
                time.sleep(limits.RETRY_BACKOFF * 2 ** (attempt - 1))

    def _upload(self, src: Store, dst: Store, desc: Descriptor) -> None:
        # Hashing twice costs CPU the registry needs on a small host: a blob verified already is
        # checked again by a registry on commit, so it only gets a size check.
        rehash = not (self._verified and dst.checks_digests_on_write)
        self._retrying(lambda attempt: dst.put_blob(
            desc, functools.partial(self._body, src, desc, count=attempt == 1, rehash=rehash)))

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
        if any(a.att.found_by == REFERRER and a.att.subject == r.root.digest for a in r.attachments) \
                and r.job.tags and not dst.manifest_exists(r.root.digest):
            # A referrer's subject goes first: some registries index a subject only once it exists.
            self._put_manifest(r, r.root)
            n += 1
        index: dict[Digest, list[Attachment]] = {}  # tag-schema entries still to write, per subject
        for a in r.attachments:  # in resolution order: every subject before what refers to it
            if not dst.has_attachment(a.att):
                if self._put_attachment(r, a):
                    index.setdefault(a.att.subject, []).append(a.att)
                n += 1
        for subject, atts in index.items():  # one write per subject's index: immutable targets take it once
            dst.add_all_to_tag_schema(subject, atts)
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

    def _put_attachment(self, r: _Resolved, a: _Attachment) -> bool:
        """Push one attachment's manifest, with the same lost-content fallback as images (Nexus); True
        when its subject's tag-schema index must still list it."""
        try:
            return r.job.dst.push_attachment(a.manifest, a.att)
        except ManifestBlobUnknown:
            self.progress.note(f"! {r.job.dst.description}: registry lost content of {a.att.digest.short}; "
                               "re-uploading it without trusting HEAD")
        for blob in a.manifest.blobs():
            self._upload(a.attached.src, r.job.dst, blob)
        return r.job.dst.push_attachment(a.manifest, a.att)
