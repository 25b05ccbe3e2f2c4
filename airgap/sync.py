"""Registry to registry: the image set of IMAGES.md (with its signatures) from one place to another.

For sites with a one-way link or a DMZ registry: load the bundle into the DMZ registry once, then
`airgap sync` it inward. The same copy engine, so the same order and resumability.
"""

from __future__ import annotations

from airgap.copy import CopyEngine, CopyJob, CopyReport, resolve
from airgap.errors import AirgapError
from airgap.imagesfile import ImageEntry, ImagesFile
from airgap.model import Reference
from airgap.model.manifest import ImageIndex
from airgap.places.registry import RegistryStore
from airgap.progress import Progress
from airgap.registry.client import RegistryOptions, Target
from airgap.sign.cosign import signature_tag
from airgap.targets.session import open_target


def target_tag(entry: ImageEntry, release: str) -> str:
    """The tag an image gets at the target: as `airgap bundle` gives it."""
    if entry.tag:
        return entry.tag
    if entry.source and not entry.source.startswith("oci:"):
        return Reference.parse(entry.source).tag or release
    if entry.source and entry.source.count(":") >= 3:
        return entry.source.rsplit(":", 1)[1]
    return release


def sync(images: ImagesFile, source: Target, dest: Target, *, source_options: RegistryOptions,
         dest_options: RegistryOptions, concurrency: int = 8, progress: Progress | None = None,
         dry_run: bool = False, source_kind: str = "auto", dest_kind: str = "auto",
         create_namespaces: bool = False, mount: bool | None = None) -> CopyReport:
    """Both registries are opened through their kinds (airgap/targets/): ECR tokens, Nexus routing,
    and the destination's projects or repositories prepared before the first push, as a load does."""
    progress = progress or Progress()
    src_t = open_target(source, source_options, source_kind)
    try:
        dst_t = open_target(dest, dest_options, dest_kind, mount=mount)
    except BaseException:
        src_t.close()
        raise
    try:
        progress.note(f"from {src_t.target}: {src_t.title} ({src_t.kind}); to {dst_t.target}: {dst_t.title} "
                      f"({dst_t.kind}: {dst_t.detection.reason})")
        jobs: list[CopyJob] = []
        for entry in images.images:
            tag = target_tag(entry, images.release)
            src = src_t.store(src_t.target.repository(entry.name))
            dst = dst_t.store(dst_t.target.repository(entry.name))
            job = CopyJob(entry.name, src, tag, dst, [tag])
            jobs.append(job)
            r = resolve(job)
            digests = [r.root.digest] + ([m.digest for m in r.images] if isinstance(r.root, ImageIndex) else [])
            for d in digests:
                sig = signature_tag(d)
                try:
                    if src.resolve_tag(sig) is not None:
                        jobs.append(CopyJob(f"{entry.name} signature", src, sig, dst, [sig], kind="signature"))
                except AirgapError:
                    pass  # a registry that refuses the lookup simply has no signature to copy
            dst_t.check_manifest(r.root, f"image {entry.name}")
        if not dry_run and jobs:
            # Everything is resolved at the source first: creating projects or repositories is the
            # first change to the destination.
            dst_t.prepare(sorted({j.dst.repository for j in jobs if isinstance(j.dst, RegistryStore)}),
                          create_namespaces, progress)
        return CopyEngine(concurrency=concurrency, progress=progress, dry_run=dry_run).copy(jobs)
    finally:
        src_t.close()
        dst_t.close()
