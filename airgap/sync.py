"""Registry to registry: the image set of IMAGES.md (with its signatures) from one place to another.

For sites with a one-way link or a DMZ registry: load the bundle into the DMZ registry once, then
`airgap sync` it inward. The same copy engine, so the same order and resumability.
"""

from __future__ import annotations

from airgap import limits
from airgap.copy import CopyEngine, CopyJob, CopyReport, resolve
from airgap.errors import AirgapError
from airgap.imagesfile import ImageEntry, ImagesFile
from airgap.model import Reference
from airgap.model.manifest import ImageIndex
from airgap.places.registry import RegistryStore
from airgap.progress import Progress
from airgap.registry.client import RegistryClient, RegistryOptions, Target
from airgap.sign.cosign import signature_tag


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
         dry_run: bool = False) -> CopyReport:
    progress = progress or Progress()
    src_client = RegistryClient(source.host, source_options)
    dst_client = RegistryClient(dest.host, dest_options)
    try:
        jobs: list[CopyJob] = []
        for entry in images.images:
            tag = target_tag(entry, images.release)
            src = RegistryStore(src_client, source.repository(entry.name))
            dst = RegistryStore(dst_client, dest.repository(entry.name))
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
        return CopyEngine(concurrency=concurrency, progress=progress, dry_run=dry_run).copy(jobs)
    finally:
        src_client.close()
        dst_client.close()
