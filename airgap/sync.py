"""Registry to registry: the image set of IMAGES.md (with its signatures) from one place to another.

For sites with a one-way link or a DMZ registry: load the bundle into the DMZ registry once, then
`airgap sync` it inward. The same copy engine, so the same order and resumability.
"""

from __future__ import annotations

from airgap import limits
from airgap.copy import CopyEngine, CopyJob, CopyReport, select_attachments
from airgap.imagesfile import ImageEntry, ImagesFile
from airgap.model import Reference
from airgap.places.registry import RegistryStore
from airgap.progress import Progress
from airgap.registry.client import RegistryClient, RegistryOptions, Target


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
         dry_run: bool = False, attachments: str = "all") -> CopyReport:
    """``attachments`` selects what travels with each image (airgap.copy.select_attachments): all of
    it by default, since a mirror that drops SBOMs or signatures is not a mirror."""
    progress = progress or Progress()
    src_client = RegistryClient(source.host, source_options)
    dst_client = RegistryClient(dest.host, dest_options)
    wanted = select_attachments(attachments)
    try:
        jobs: list[CopyJob] = []
        for entry in images.images:
            tag = target_tag(entry, images.release)
            src = RegistryStore(src_client, source.repository(entry.name))
            dst = RegistryStore(dst_client, dest.repository(entry.name))
            jobs.append(CopyJob(entry.name, src, tag, dst, [tag], discover=wanted))
        return CopyEngine(concurrency=concurrency, progress=progress, dry_run=dry_run).copy(jobs)
    finally:
        src_client.close()
        dst_client.close()
