"""Everything `airgap bundle` can check before the first build: a typo fails in seconds.

* every mirrored reference resolves upstream (a HEAD per image; the error names the IMAGES.md line,
  the image and the registry's answer), and its manifests are read to learn the bundle's size;
* the output location is a writable directory (a probe file is created and removed there);
* the output's file system has room for the mirrored content, counted twice when the local store
  that the pulls land in lives on the same file system and lacks those blobs.

The chart and the CRD files (URLs fetched and checked against their sha256) are read by the bundler
before this runs. Built images are not counted: their size is known only after the build.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from airgap import limits
from airgap.copy import CopyJob, resolve
from airgap.errors import AirgapError, InputError
from airgap.imagesfile import ImageEntry, ImagesFile
from airgap.model import Digest, Platform, Reference
from airgap.places.layout import LayoutStore
from airgap.places.registry import RegistryStore
from airgap.progress import human_bytes

MARGIN = limits.BUNDLE_SPACE_MARGIN


@dataclass
class Preflight:
    digests: dict[str, Digest] = field(default_factory=dict)  # image name -> upstream digest at check time
    mirrored_bytes: int = 0                                   # unique blob bytes of the mirrored images
    store_missing_bytes: int = 0                              # of those, not yet in the local store


def _where(images: ImagesFile, entry: ImageEntry) -> str:
    return f"{images.path}:{entry.line}: image {entry.name} ({entry.source})"


def check_references(images: ImagesFile, stores: dict[str, RegistryStore], platforms: dict[str, list[Platform] | None],
                     local: LayoutStore | None, leave_out: frozenset[str] = frozenset()) -> Preflight:
    """HEAD every mirrored reference, then read its manifests for sizes. ``stores``: entry name ->
    its upstream repository; ``platforms``: entry name -> the platform filter the bundle applies;
    ``leave_out``: blob digests a delta's base holds (not shipped, so not counted)."""
    result = Preflight()
    seen: set[Digest] = set()
    for entry in images.images:
        store = stores.get(entry.name)
        if store is None or entry.source is None:
            continue
        ref = Reference.parse(entry.source)
        where = _where(images, entry)
        try:
            digest = store.resolve(ref.ref)
        except AirgapError as exc:
            raise type(exc)(f"{where}: {exc}") from None
        if digest is None:
            what = f"tag {ref.tag}" if ref.digest is None else f"digest {ref.digest}"
            raise InputError(f"{where}: registry {ref.registry} has no {what} in {ref.repository}; "
                             "check the name and tag in IMAGES.md")
        result.digests[entry.name] = digest
        try:
            r = resolve(CopyJob(entry.name, store, str(digest), store, [], platforms.get(entry.name)))
        except AirgapError as exc:
            raise type(exc)(f"{where}: {exc}") from None
        for b in r.blobs():
            if b.digest in seen:
                continue
            seen.add(b.digest)
            if str(b.digest) not in leave_out:
                result.mirrored_bytes += b.size
            if local is None or not local.blob_exists(b):
                result.store_missing_bytes += b.size
    return result


def check_output(output: Path, need: int, store: Path | None = None, store_need: int = 0) -> None:
    """The output's directory exists, is writable and has room for ``need`` bytes (plus the store's
    ``store_need`` when both share a file system)."""
    parent = output.resolve().parent if output.parent != Path("") else Path.cwd()
    if not parent.is_dir():
        raise InputError(f"output {output}: directory {parent} does not exist")
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".airgap-preflight-")
    except OSError as exc:
        raise InputError(f"output {output}: cannot write in {parent} ({exc.strerror})") from None
    os.close(fd)
    os.unlink(probe)
    free = shutil.disk_usage(parent).free
    total = need + MARGIN
    if store is not None and store_need:
        store_dir = next((p for p in [store, *store.parents] if p.exists()), None)
        if store_dir is not None and store_dir.stat().st_dev == parent.stat().st_dev:
            total += store_need
    if free < total:
        raise InputError(f"output {output}: {parent} has {human_bytes(free)} free, the bundle needs at least "
                         f"{human_bytes(total)} (mirrored images and files, plus pulls into the local store when "
                         "it shares that file system); free space or write elsewhere")


__all__ = ["Preflight", "check_output", "check_references"]
