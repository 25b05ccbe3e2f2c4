"""Registry to registry: the image set of IMAGES.md (with its signatures) from one place to another.

For sites with a one-way link or a DMZ registry: load the bundle into the DMZ registry once, then
`airgap sync` it inward. The same copy engine, so the same order and resumability.
"""

from __future__ import annotations

from airgap import limits
from airgap.copy import CopyEngine, CopyJob, CopyReport, select_attachments
from airgap.imagesfile import ImageEntry, ImagesFile
from airgap.model import Reference
from airgap.progress import Progress
from airgap.registry.client import RegistryOptions, Target
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
         dest_options: RegistryOptions, concurrency: int = limits.COPY_CONCURRENCY, progress: Progress | None = None,
         dry_run: bool = False, source_kind: str = "auto", dest_kind: str = "auto",
         create_namespaces: bool = False, mount: bool | None = None, attachments: str = "all") -> CopyReport:
    """Both registries are opened through their kinds (airgap/targets/): ECR tokens, Nexus routing,
    and the destination's projects or repositories prepared before the first push, as a load does.

    ``attachments`` selects what travels with each image (airgap.copy.select_attachments): all of it
    by default, since a mirror that drops SBOMs or signatures is not a mirror."""
    progress = progress or Progress()
    wanted = select_attachments(attachments)
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
            jobs.append(CopyJob(entry.name, src, tag, dst, [tag], discover=wanted))
            dst_t.check_manifest(src.fetch_manifest(tag), f"image {entry.name}")
        if not dry_run and jobs:
            # Everything is read at the source first: creating projects or repositories is the
            # first change to the destination.
            dst_t.prepare(sorted({j.dst.repository for j in jobs}), create_namespaces, progress)
        return CopyEngine(concurrency=concurrency, progress=progress, dry_run=dry_run).copy(jobs)
    finally:
        src_t.close()
        dst_t.close()
