"""What to build: IMAGES.md ``build:`` entries resolved against a source tree, checked before any build.

Every problem a user can fix by editing IMAGES.md or choosing another ``--source`` (an unknown
``--only`` name, a missing context or Dockerfile) is reported here, with the IMAGES.md line, before
the first (possibly long) build starts.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from airgap import limits
from airgap.build.source import SourceTree
from airgap.errors import InputError
from airgap.imagesfile import ImageEntry, ImagesFile
from airgap.model import Platform
from airgap.places.layout import LayoutStore
from airgap.progress import Progress

LOG_TAIL_LINES = limits.BUILD_LOG_TAIL_LINES


@dataclass(frozen=True)
class BuildTarget:
    name: str
    tag: str                              # tag in the store: always the release (an entry's tag: is the
                                          # tag it ships under; the bundle applies it)
    where: str                            # "IMAGES.md:12: image haystack-query", for messages
    context: Path
    dockerfile: Path
    args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    platforms: tuple[Platform, ...] = ()  # empty: the builder's own platform
    epoch: int | None = None              # SOURCE_DATE_EPOCH, when set
    base: str | None = None               # an overlay: the ref of the target built just before, passed to
                                          # its Dockerfile as BASE_IMAGE under the builder's local name

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.tag}"


@dataclass(frozen=True)
class BuiltImage:
    name: str
    ref: str          # name:tag in the store
    digest: str
    builder: str      # or "artifact" for an artifact: entry packed from files
    seconds: float
    log: Path | None

    def to_json(self) -> dict:
        return {"name": self.name, "ref": self.ref, "digest": self.digest, "builder": self.builder,
                "seconds": round(self.seconds, 3), "log": str(self.log) if self.log else None}


class Builder(Protocol):
    name: str

    def describe(self) -> str:
        """One line naming the builder and where it runs, for the progress output."""

    def build(self, target: BuildTarget, store: LayoutStore, log: Path, progress: Progress) -> str:
        """Build ``target`` and tag it ``target.ref`` in ``store``; return its manifest digest."""


def source_date_epoch() -> int | None:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise InputError(f"SOURCE_DATE_EPOCH={value!r} is not a number of seconds since 1970") from None


def oci_labels(images: ImagesFile, tree: SourceTree, epoch: int | None, name: str) -> dict[str, str]:
    """The standard annotation keys (image-spec annotations.md), set as image labels."""
    created = datetime.fromtimestamp(epoch if epoch is not None else time.time(), timezone.utc)
    labels = {"org.opencontainers.image.title": name,
              "org.opencontainers.image.version": images.release,
              "org.opencontainers.image.created": created.strftime("%Y-%m-%dT%H:%M:%SZ")}
    if tree.url:
        labels["org.opencontainers.image.source"] = tree.url
    if tree.revision:
        labels["org.opencontainers.image.revision"] = tree.revision
    return labels


def plan_builds(images: ImagesFile, tree: SourceTree, only: Sequence[str] = (),
                extra_args: dict[str, str] | None = None) -> list[BuildTarget]:
    entries = [e for e in images.images if e.build is not None]
    if only:
        by_name = {e.name: e for e in images.images}
        for name in only:
            if name not in by_name:
                raise InputError(f"--only {name}: {images.path} has no image of that name "
                                 f"(built ones: {', '.join(e.name for e in images.images if e.local) or 'none'})")
            if not by_name[name].local:
                raise InputError(f"--only {name}: {images.path}:{by_name[name].line}: image {name} is mirrored "
                                 "(source:), not built")
        entries = [e for e in entries if e.name in only]
    epoch = source_date_epoch()
    targets: list[BuildTarget] = []
    for e in entries:
        target = _target(images, e, tree, epoch, extra_args or {})
        if e.overlay is None:
            targets.append(target)
            continue
        # The upstream Dockerfile as it is, kept in the store as <release>-upstream; then the overlay FROM it.
        first = replace(target, tag=f"{images.release}-upstream")
        targets += [first, _overlay(images, e, target, first.ref, extra_args or {})]
    return targets


def _overlay(images: ImagesFile, entry: ImageEntry, target: BuildTarget, base: str,
             extra_args: dict[str, str]) -> BuildTarget:
    """The entry's overlay: build (a Dockerfile of this project, e.g. the observability layer) on top of
    the image its build: made, without touching the upstream sources. Paths are relative to IMAGES.md."""
    assert entry.overlay is not None
    where = f"{target.where} (overlay)"
    if len(target.platforms) > 1:
        raise InputError(f"{where}: overlay: builds one platform; drop the entry's platforms: list")
    context = (images.base_dir / entry.overlay.context).resolve()
    if not context.is_dir():
        raise InputError(f"{where}: overlay context {entry.overlay.context} not found next to {images.path}")
    dockerfile = (images.base_dir / entry.overlay.dockerfile).resolve() if entry.overlay.dockerfile != "Dockerfile" \
        else context / "Dockerfile"
    if not dockerfile.is_file():
        raise InputError(f"{where}: overlay Dockerfile {entry.overlay.dockerfile} not found next to {images.path}")
    labels = {**target.labels, "org.opencontainers.image.base.name": base}
    return replace(target, where=where, context=context, dockerfile=dockerfile,
                   args={**entry.overlay.args, **extra_args}, target=entry.overlay.target, labels=labels, base=base)


def _target(images: ImagesFile, entry: ImageEntry, tree: SourceTree, epoch: int | None,
            extra_args: dict[str, str]) -> BuildTarget:
    assert entry.build is not None
    where = f"{images.path}:{entry.line}: image {entry.name}"
    context = _inside(tree, entry.build.context, where, "context")
    if not context.is_dir():
        raise InputError(f"{where}: build context {entry.build.context} not found in {tree.description}"
                         + _source_hint(images, tree))
    dockerfile = _inside(tree, entry.build.dockerfile, where, "dockerfile")
    if not dockerfile.is_file():
        raise InputError(f"{where}: Dockerfile {entry.build.dockerfile} not found in {tree.description}"
                         + _source_hint(images, tree))
    return BuildTarget(name=entry.name, tag=images.release, where=where, context=context,
                       dockerfile=dockerfile, args={**entry.build.args, **extra_args}, target=entry.build.target,
                       labels=oci_labels(images, tree, epoch, entry.name), platforms=entry.platforms, epoch=epoch)


def _inside(tree: SourceTree, rel: str, where: str, what: str) -> Path:
    # Paths in IMAGES.md are relative to the source root, like `docker build -f X CONTEXT` run there.
    path = (tree.root / rel).resolve()
    if path != tree.root and tree.root not in path.parents:
        raise InputError(f"{where}: {what} {rel} points outside the source tree {tree.root}")
    return path


def _source_hint(images: ImagesFile, tree: SourceTree) -> str:
    if tree.root == images.base_dir.resolve():
        return " (the directory of IMAGES.md; give --source DIR or --source GIT_URL@REF for the application sources)"
    return ""


def tail(lines: Iterable[str], n: int = LOG_TAIL_LINES) -> str:
    """The last ``n`` non-empty lines, indented, for the end of a build failure message."""
    last = deque((ln.rstrip() for ln in lines if ln.strip()), maxlen=n)
    return "\n".join(f"    {ln}" for ln in last)
