"""Connected side: IMAGES.md (+ chart + CRDs) -> one offline bundle tarball.

One copy-engine run whose destination is the bundle (airgap/places/bundle.py): the images are
resolved, the bundle's head (signed manifest, OCI index) is planned from that graph, and each blob
then streams once from its source into the tar, hashed on the way. Registry blobs are written into
the local content store (an OCI layout, default ``~/.cache/airgap/store``, where built images land)
from the same stream, and read from there by the next bundle: an interrupted bundle resumes
without pulling again. ``oci:DIR:REF`` sources are read straight from their layout.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from airgap import limits
from airgap.bundle.format import BundleFile, BundleImage, BundleManifest
from airgap.attachments import entries as attachment_entries
from airgap.attachments import DEFAULT as ATTACHMENTS_DEFAULT
from airgap.attachments import check_spec, kinds, sbom_formats
from airgap.chartpkg import package_chart
from airgap.copy import Attached, CopyEngine, CopyJob, _Resolved, resolve
from airgap.delta import Base
from airgap.errors import AirgapError, DigestMismatch, InputError
from airgap.fsutil import atomic_write
from airgap.imagesfile import FileEntry, ImageEntry, ImagesFile
from airgap.model import Descriptor, Digest, Platform, Reference
from airgap.model.attachment import Attachment
from airgap.model.manifest import ImageManifest, Manifest
from airgap.places.base import Store
from airgap.places.bundle import BundleHead, BundlePlace
from airgap.places.layout import LayoutStore
from airgap.places.registry import RegistryStore
from airgap.progress import Progress
from airgap.errors import Transient
from airgap.registry.client import RegistryClient, RegistryOptions
from airgap.sign.blob import sign_blob
from airgap.sign.keys import PrivateKey


BUNDLE_STREAMS = limits.BUNDLE_STREAMS

if TYPE_CHECKING:
    from airgap.tools import ToolFile


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
    all_platforms: bool = False          # --platform all: every platform, whatever IMAGES.md says
    store: Path = field(default_factory=default_store)
    registry: RegistryOptions = field(default_factory=RegistryOptions)
    concurrency: int = limits.COPY_CONCURRENCY
    compress: str | None = None  # "zstd", or None for a plain tar (the default: loads stream it in place)
    key: PrivateKey | None = None  # signs every image (cosign format) and the bundle manifest
    # legacy (.sig tags, what containers/image and cosign 2 verify), bundle (cosign v3 referrers) or both
    signature_format: str = "legacy"
    base: Base | None = None       # make a delta: leave out the blobs the base references
    split: int | None = None         # bytes per part: write the bundle as parts cut at blob boundaries
    build: Callable[[], object] | None = None  # builds first-party images into the store (airgap.build)
    tools: Path | None = None        # a make dist wheelhouse to ship as tools/ (airgap.tools)
    # which upstream attachments travel (airgap.copy.select_attachments): all | signatures | none | TYPE,...
    attachments: str = ATTACHMENTS_DEFAULT


@dataclass
class BundleResult:
    path: Path
    manifest: BundleManifest
    size: int
    seconds: float
    paths: list[Path] = field(default_factory=list)  # every file written (the parts of a split bundle)

    def to_json(self) -> dict:
        return {"bundle": str(self.path), "files_written": [str(p) for p in self.paths], "size": self.size,
                "seconds": round(self.seconds, 3),
                "release": self.manifest.release, "blobs": self.manifest.blob_count,
                "blob_bytes": self.manifest.blob_bytes,
                "images": [{"name": i.name, "tag": i.tag, "digest": i.digest, "source": i.source,
                            "platforms": i.platforms, "attachments": kinds(i.attachments),
                            "sbom": sbom_formats(i.attachments)} for i in self.manifest.images],
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
        if entry.local:
            ref = f"{entry.name}:{self.images.release}"
            if self.store.resolve_tag(ref) is None:
                kind = "built from source (build:)" if entry.build else "packed from files (artifact:)"
                raise InputError(f"{where} is {kind}, and the local store {self.options.store} "
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


def signed_identity(entry: ImageEntry) -> str:
    """The docker-reference image signatures name: the upstream repository for a mirrored image,
    ``localhost/<name>`` (podman's and buildah's name for a local build) otherwise."""
    if entry.source and not entry.source.startswith("oci:"):
        ref = Reference.parse(entry.source)
        return f"{ref.registry}/{ref.repository}"
    return f"localhost/{entry.name}"


def _local_source(entry: ImageEntry) -> str:
    """What the bundle records as the source of an image made on the connected host."""
    if entry.artifact is not None:
        return f"artifact:{entry.artifact.path}"
    return f"build:{entry.build.context if entry.build else ''}"


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
        except OSError as exc:
            where = f"line {entry.line}: " if entry.line else ""
            raise InputError(f"{where}CRD file {p}: {exc.strerror}") from None
    assert entry.url and entry.sha256
    name = entry.url.rstrip("/").rsplit("/", 1)[-1]
    cached = cache / "files" / entry.sha256
    if cached.is_file():
        data = cached.read_bytes()
        if hashlib.sha256(data).hexdigest() == entry.sha256:
            return name, data
    try:
        resp = httpx.get(entry.url, follow_redirects=True, timeout=limits.FILE_DOWNLOAD_TIMEOUT)
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
    try:
        epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or time.time())
    except ValueError:
        value = os.environ["SOURCE_DATE_EPOCH"]
        raise InputError(f"SOURCE_DATE_EPOCH={value!r} is not a Unix time in seconds") from None
    created = datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    discover = check_spec(options.attachments)
    # Chart and CRDs first: a typo there should fail before minutes of pulling.
    files: list[tuple[BundleFile, bytes | ToolFile]] = []
    chart_path = None if options.no_chart else (options.chart or (images.chart and images.base_dir / images.chart))
    if chart_path:
        chart = package_chart(Path(chart_path))
        member = f"chart/{chart.filename}"
        files.append((BundleFile(member, "chart", hashlib.sha256(chart.data).hexdigest(), len(chart.data),
                                 chart.name, chart.version), chart.data))
    for crd in _file_entries(images, options):
        name, data = _crd_bytes(crd, images.base_dir, options.store.parent)
        member = f"crds/{name}"
        if any(f.path == member for f, _ in files):
            raise InputError(f"two CRD files are both named {name}")
        files.append((BundleFile(member, "crd", hashlib.sha256(data).hexdigest(), len(data), name), data))

    if options.tools is not None:
        from airgap.tools import collect
        # Streamed from disk when written, not held in memory: a wheelhouse is tens of MB.
        files.extend((t.entry, t) for t in collect(options.tools))

    sources = _Sources(images, options)
    try:
        _preflight(images, options, sources, files)
        if options.build is not None:
            options.build()  # after the chart, CRD and preflight checks: a typo fails in seconds, not after builds
        plan: list[tuple[ImageEntry, CopyJob, str]] = []
        upstream: dict[str, _Upstream] = {}
        cached: list[tuple[ImageEntry, CopyJob]] = []
        for entry in images.images:
            place, ref, tag = sources.locate(entry)
            tag = entry.tag or tag
            platforms = _platforms(options, entry, images)
            if entry.verifies:
                # Pull exactly the digest whose signature was checked, not whatever the tag says later.
                checked = upstream[entry.name] = _verify_upstream(entry, place, images)
                files.append(checked.trust_file)
                ref = checked.record["digest"]
                progress.note(f"upstream signature of {entry.source} verified ({checked.record['format']} format, "
                              f"{checked.record['signer']})")
            src: Store = place
            if place.remote:
                # Blobs an earlier (perhaps interrupted) bundle left in the local store are read from
                # there; the rest stream from the registry into the bundle and the store at once.
                src = _ReadThrough(place, sources.store)
            # discover: the upstream's attachments of the image and of each platform manifest, recursively
            job = CopyJob(entry.name, src, ref, src, [f"{entry.name}:{tag}"], platforms, discover=discover)
            plan.append((entry, job, tag))
            if src is not place:
                cached.append((entry, job))
        progress.note(f"bundle release {images.release}: {len(plan)} images, {len(files)} files -> {options.output}")
        engine = CopyEngine(concurrency=options.concurrency, progress=progress)
        resolved = engine._map(resolve, [job for _, job, _ in plan])
        result = _write(images, options, plan, resolved, files, created, epoch, progress, upstream,
                        sources.store if cached else None)
        for entry, job in cached:
            _cache_manifests(sources.store, next(r for r in resolved if r.job is job), str(entry.source))
    finally:
        sources.close()
    result.seconds = time.monotonic() - t0
    return result


class _ReadThrough(Store):
    """A registry repository read through the local content store: blobs the store holds are read
    from disk, the rest from the registry (and written into the store by the bundle place, from
    the same stream that fills the bundle)."""

    def __init__(self, origin: Store, cache: LayoutStore):
        self.origin = origin
        self.cache = cache
        self.description = origin.description

    @property
    def place_key(self) -> str:
        return self.origin.place_key

    def fetch_manifest(self, ref: str) -> Manifest:
        return self.origin.fetch_manifest(ref)

    @contextmanager
    def open_blob(self, desc: Descriptor) -> Iterator[Iterator[bytes]]:
        if not self.cache.blob_exists(desc):
            with self.origin.open_blob(desc) as chunks:
                yield chunks
            return
        with self.cache.open_blob(desc) as chunks:
            try:
                yield chunks
            except DigestMismatch:
                # Torn by a crash (the store is not fsynced) or damaged: drop it, and the engine's
                # retry reads the registry.
                self.cache.blob_path(desc.digest).unlink(missing_ok=True)
                raise Transient(f"{self.cache.description}: blob {desc.digest} is damaged; pulling it again") from None

    def blob_exists(self, desc: Descriptor) -> bool:
        return self.cache.blob_exists(desc) or self.origin.blob_exists(desc)

    def attachments(self, subject: Digest) -> list[Attachment]:
        return self.origin.attachments(subject)  # found where they are published: the registry


def _cache_manifests(store: LayoutStore, r: _Resolved, tag: str) -> None:
    """Tag a pulled image in the local store, once the store holds every blob it references (a
    delta leaves base blobs out of both)."""
    if not all(store.blob_exists(b) for b in r.blobs()):
        return
    for m in r.images:
        if m is not r.root:
            store.put_manifest(m)
    store.put_manifest(r.root, tag)


def _platforms(options: BundleOptions, entry: ImageEntry, images: ImagesFile) -> list[Platform] | None:
    if options.all_platforms:
        return None
    return list(options.platforms or entry.platforms or images.platforms) or None


def _preflight(images: ImagesFile, options: BundleOptions, sources: _Sources,
               files: list[tuple[BundleFile, bytes | ToolFile]]) -> None:
    """Before any build: every upstream reference resolves, and the output has room (airgap.preflight)."""
    from airgap import preflight

    stores: dict[str, RegistryStore] = {}
    for entry in images.images:
        if entry.source and not entry.source.startswith("oci:"):
            place, _, _ = sources.locate(entry)
            if isinstance(place, RegistryStore):  # preflight HEADs references: a registry's own call
                stores[entry.name] = place
    local = LayoutStore(options.store) if (options.store / "oci-layout").is_file() else None
    leave_out = frozenset(options.base.blobs) if options.base is not None else frozenset()
    platforms = {e.name: _platforms(options, e, images) for e in images.images}
    checked = preflight.check_references(images, stores, platforms, local, leave_out)
    need = checked.mirrored_bytes + sum(f.size for f, _ in files)
    preflight.check_output(options.output, need, options.store, checked.store_missing_bytes)


@dataclass
class _Upstream:
    """An upstream signature checked at bundle time: the record, the signature to carry, and the
    trust material (key or trusted root) that travels so the isolated side can check it again."""

    record: dict
    attached: Attached
    trust_file: tuple[BundleFile, bytes]


def _verify_upstream(entry: ImageEntry, src: Store, images: ImagesFile) -> _Upstream:
    """The upstream's own signature of what we are about to pull: legacy or Sigstore bundle with its
    key, or a Sigstore bundle keyless (identity and issuer under a trusted root)."""
    from airgap.model.attachment import REFERRER, Attachment
    from airgap.sign.cosign import SignatureError
    from airgap.sign.formats import SignatureFormat, SigstoreBundle, all_formats
    from airgap.sign.keyless import KeylessTrust
    from airgap.sign.keys import load_public_key

    where = f"{images.path}:{entry.line}: image {entry.name} ({entry.source})"
    if not src.remote:
        raise InputError(f"{where}: verify: needs a registry source")
    trust: Any
    fmts: list[SignatureFormat]
    record: dict[str, Any]
    spec = entry.verify_keyless
    if spec is not None:
        root_path = Path(spec.trusted_root)
        root_path = root_path if root_path.is_absolute() else images.base_dir / root_path
        try:
            root_bytes = root_path.read_bytes()
        except OSError as exc:
            raise InputError(f"{images.path}:{spec.line}: image {entry.name}: verify: trusted-root {root_path}: "
                             f"{exc.strerror}") from None
        trust = KeylessTrust(root_path, spec.identity, spec.identity_regexp, spec.issuer, spec.issuer_regexp)
        fmts = [SigstoreBundle()]  # keyless legacy (certificate annotations) is not verified
        member = f"upstream/{entry.name.replace('/', '_')}.trusted_root.json"
        trust_file = (BundleFile(member, "trustedroot", hashlib.sha256(root_bytes).hexdigest(), len(root_bytes),
                                 root_path.name), root_bytes)
        record = {"policy" + k.title().replace("-", ""): v for k, v in trust.to_json().items()}
    else:
        key_path = Path(entry.verify_key or "")
        key = load_public_key(key_path if key_path.is_absolute() else images.base_dir / key_path)
        trust, fmts = key, all_formats()
        pem = key.pem()
        member = f"upstream/{entry.name.replace('/', '_')}.pub"
        trust_file = (BundleFile(member, "upstreamkey", hashlib.sha256(pem).hexdigest(), len(pem), key_path.name), pem)
        record = {"key": key.fingerprint}
    root = src.fetch_manifest(Reference.parse(entry.source or "").ref)
    found: list[tuple[SignatureFormat, Attachment]] = []
    for fmt in fmts:
        try:
            found.extend((fmt, att) for att in fmt.find(src, root.digest))
        except AirgapError:
            continue  # a registry that refuses the lookup has no signature of this kind for us
    if not found:
        looked = "Sigstore-bundle referrers" if spec is not None else \
            "sha256-<hex>.sig tags or Sigstore-bundle referrers"
        raise SignatureError(f"{where}: the upstream has no cosign signature for {root.digest} (looked for {looked})")
    reasons = []
    for fmt, att in found:
        try:
            verified = fmt.verify(src, att, trust, root.digest)
            break
        except SignatureError as exc:
            reasons.append(f"{fmt.name}: {exc}")
    else:
        raise SignatureError(f"{where}: upstream signature rejected: {'; '.join(reasons)}")
    if spec is None and (fmt.name == "legacy" or verified.docker_reference):
        _check_signed_repository(entry, verified.docker_reference, where)
    record.update({"format": fmt.name, "digest": str(root.digest), "signature": str(att.digest),
                   "signer": verified.key, "identity": verified.docker_reference, "trust": member, "verified": True})
    # Carried by digest in the image's repository of the bundle, never under a tag: the .sig tag of a
    # mirrored image is ours (airgap verify and load read it back from there).
    carried = Attachment(att.subject, src.fetch_manifest(str(att.digest)).descriptor, att.artifact_type, REFERRER)
    return _Upstream(record, Attached(carried, src), trust_file)


def _check_signed_repository(entry: ImageEntry, signed_ref: str, where: str) -> None:
    """The vendor's key signs all its images: the signature must also name *this* repository, or a
    mirror could serve another of the vendor's images under this name."""
    from airgap.sign.cosign import SignatureError

    source_ref = Reference.parse(entry.source or "")
    expected = entry.verify_identity or f"{source_ref.registry}/{source_ref.repository}"
    try:
        signed = Reference.parse(signed_ref)
        signed_repo = f"{signed.registry}/{signed.repository}"
    except InputError:
        signed_repo = signed_ref
    if signed_repo != Reference.parse(expected).registry + "/" + Reference.parse(expected).repository:
        raise SignatureError(f"{where}: upstream signature is for {signed_ref!r}, not {expected!r} "
                             "(if you pull from a mirror, name the signed repository with verify: {identity: ...})")


def _write(images: ImagesFile, options: BundleOptions, plan: list[tuple[ImageEntry, CopyJob, str]],
           resolved: list[_Resolved], files: list[tuple[BundleFile, Any]], created: str, epoch: int,
           progress: Progress, upstream: dict[str, _Upstream], cache: LayoutStore | None) -> BundleResult:
    """Plan the head from the resolved graph, then one copy-engine run into the bundle place."""
    from airgap.sign.formats import signature_formats
    from airgap.sign.store import SignatureStore

    blobs: dict[Digest, int] = {}
    small: dict[Digest, int] = {}    # manifests, signature manifests and their blobs
    tags: dict[str, Descriptor] = {}
    bundle_images: list[BundleImage] = []
    done: list[tuple[_Resolved, list[Attached], str]] = []  # each image's graph, our signatures, its tag
    # Kept by digest and key next to the content store: the same image gets the same .sig bytes in
    # every bundle, so immutable targets see a known tag, not a re-push (airgap/sign/store.py).
    fmts = signature_formats(options.signature_format, SignatureStore(options.store.parent / "signatures"))
    for (entry, _job, tag), r in zip(plan, resolved):
        small[r.root.digest] = len(r.root.data)
        for m in r.images:
            small[m.digest] = len(m.data)
        for b in r.blobs():
            blobs.setdefault(b.digest, b.size)
        identity = signed_identity(entry)
        signatures: list[dict] = []
        bundle_signatures: list[dict] = []
        attach: list[Attached] = []
        if options.key is not None:
            # Like `cosign sign --recursive`: the index and every platform manifest. The signatures
            # are attachments of the image's graph: the engine writes them after what they sign.
            signed = [r.root] + ([m for m in r.images] if r.images[0] is not r.root else [])
            for fmt in fmts:
                for subject in signed:
                    made = fmt.sign(options.key, identity, subject.digest, subject.descriptor)
                    att = made.attachment
                    attach.append(Attached(att, made.store))
                    sig = made.store.fetch_manifest(str(att.digest))
                    small[att.digest] = len(sig.data)
                    for b in sig.blobs() if isinstance(sig, ImageManifest) else ():
                        small[b.digest] = b.size
                    record = {"signed": str(subject.digest), "digest": str(att.digest), "size": len(sig.data)}
                    if att.tag is not None:
                        tags[f"{entry.name}:{att.tag}"] = sig.descriptor
                    # Referrers in their own list: an older reader takes every `signatures` entry for a
                    # .sig tag, and ignores (but keeps) a field it does not know.
                    (signatures if fmt.name == "legacy" else bundle_signatures).append(record)
        # Upstream attachments, as discovered: listed in the signed manifest, carried as the image's.
        # Where we sign, our .sig takes the cosign tag; the upstream's legacy .sig under it stays behind
        # (it was checked at bundle time when IMAGES.md says verify:).
        listed = attachment_entries(r.attachments, frozenset(a.attachment.tag for a in attach
                                                             if a.attachment.tag))
        carried = {e["digest"] for e in listed}
        for a in r.attachments:
            if str(a.att.digest) not in carried:
                continue
            small[a.att.digest] = len(a.manifest.data)
            for b in a.manifest.blobs():
                blobs.setdefault(b.digest, b.size)  # an SBOM may be large: a blob like any other
            if a.att.tag:
                tags[f"{entry.name}:{a.att.tag}"] = a.manifest.descriptor
            attach.append(a.attached)
        if listed:
            progress.note(f"  {entry.name}: {len(listed)} attachments "
                          f"({', '.join(f'{n} {k}' for k, n in sorted(kinds(listed).items()))})")
        checked = upstream.get(entry.name)
        if checked is not None:
            # The upstream's signature travels too, so `airgap verify` and load can check it again.
            # (once: the discovery above may have found and listed it already)
            if all(a.attachment.digest != checked.attached.attachment.digest for a in attach):
                attach.append(checked.attached)
            up = checked.attached.src.fetch_manifest(str(checked.attached.attachment.digest))
            small[up.digest] = len(up.data)
            for b in up.blobs() if isinstance(up, ImageManifest) else ():
                small[b.digest] = b.size
        bundle_images.append(BundleImage(
            name=entry.name, source=entry.source or _local_source(entry),
            tag=tag, digest=str(r.root.digest), media_type=r.root.media_type, size=len(r.root.data),
            platforms=r.platforms(), values=entry.values, blob_bytes=sum(b.size for b in r.blobs()),
            identity=identity, signatures=signatures, upstream=checked.record if checked else None,
            bundle_signatures=bundle_signatures, attachments=listed))
        tags[f"{entry.name}:{tag}"] = r.root.descriptor
        done.append((r, attach, tag))
    referenced = sorted({str(d) for d in [*blobs, *small]})
    held: frozenset[str] = frozenset()
    if options.base is not None:
        # Manifests and signatures always travel: they are small and the load needs them to push tags.
        held = frozenset(str(d) for d in blobs if str(d) in options.base.blobs and d not in small)
        carried_all = [a["digest"] for i in bundle_images for a in i.attachments]
        fresh = sum(1 for d in carried_all if d not in options.base.attachments and d not in options.base.blobs)
        progress.note(f"delta against {options.base.kind} {options.base.source} (release {options.base.release}): "
                      f"{len(held)} blobs left out, {len(blobs) - len(held)} shipped; "
                      f"{len(carried_all)} attachments, {fresh} new since the base")
    for d in list(blobs):
        if str(d) in held:
            blobs.pop(d)
        small.pop(d, None)  # a manifest that is also someone's blob is stored once
    manifest = BundleManifest(release=images.release, created=created, images=bundle_images,
                              files=[f for f, _ in files], blob_count=len(blobs) + len(small),
                              blob_bytes=sum(blobs.values()) + sum(small.values()),
                              signer=options.key.public.fingerprint if options.key else "",
                              referenced=referenced, base=options.base.to_json() if options.base else None)
    key = options.key
    head = BundleHead(manifest, tags, blobs, small, files, sign=(lambda data: sign_blob(key, data)) if key else None,
                      held=held)
    cache_digests = frozenset(b.digest for r, _, _ in done if isinstance(r.job.src, _ReadThrough) for b in r.blobs())
    place = BundlePlace(options.output, head, epoch, compress=options.compress, split=options.split,
                        cache=cache, cache_digests=cache_digests)
    graphs = [r.retarget(CopyJob(r.job.name, r.job.src, r.job.ref, place.image(r.job.name), [tag], r.job.platforms,
                                 r.job.kind, attach=attach)) for r, attach, tag in done]
    # A plain bundle takes blobs in parallel at planned offsets (a few streams keep a registry and
    # the disk busy; each holds some MiB in flight, so not more: peak memory); a zstd stream or
    # split parts one at a time, largest first. Either way the same bytes every run.
    streams = min(options.concurrency, BUNDLE_STREAMS) if place.concurrent else 1
    with place:
        CopyEngine(concurrency=streams, progress=progress).copy([g.job for g in graphs], graphs)
    outputs = place.paths
    size = sum(p.stat().st_size for p in outputs)
    progress.note(f"wrote {', '.join(map(str, outputs))} ({size} bytes, {manifest.blob_count} blobs)")
    return BundleResult(outputs[0], manifest, size, 0.0, outputs)


__all__ = ["BundleOptions", "BundleResult", "create_bundle", "default_store", "signed_identity"]
