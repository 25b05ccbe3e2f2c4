"""A real OCI layout as a copy destination that records every write the engine makes, in order.

``RecordingLayout`` is a :class:`~airgap.places.layout.LayoutStore` (the real one, writing real files),
so whatever the engine does to it lands on disk exactly as in production; the subclass only logs
each ``put_blob``, ``mount_blob`` and ``put_manifest`` once it has completed, and can be told to
refuse mounts or to fail after a number of writes (an interrupted copy). Several instances may share
one ``place`` name: the engine then treats them as repositories of one registry and mounts between
them, which a layout cannot do by itself (a mount here hard-links the blob file from the other
repository, what a registry does in its storage).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from airgap.errors import AirgapError
from airgap.model import Descriptor, Digest
from airgap.model.manifest import ImageIndex, Manifest
from airgap.places.base import BlobBody, Store
from airgap.places.layout import LayoutStore


@dataclass(frozen=True)
class Write:
    kind: str            # "blob", "mount" or "manifest"
    repo: str            # which RecordingLayout got it
    digest: str
    tag: str | None = None


class Interrupted(Exception):
    """Raised by a RecordingLayout told to fail: the process 'dies' at that write."""


class WriteLog:
    """The writes of every RecordingLayout sharing it, in the order they completed."""

    def __init__(self) -> None:
        self.writes: list[Write] = []
        self._lock = threading.Lock()

    def add(self, write: Write) -> None:
        with self._lock:
            self.writes.append(write)

    def of(self, kind: str, repo: str | None = None) -> list[Write]:
        return [w for w in self.writes if w.kind == kind and (repo is None or w.repo == repo)]


class RecordingLayout(LayoutStore):
    def __init__(self, root: Path, log: WriteLog, *, repo: str = "repo", place: str | None = None,
                 refuse_mounts: bool = False, fail_after_blobs: int | None = None,
                 fail_mid_blob: bool = False):
        super().__init__(root, create=True)
        self.log = log
        self.repo = repo
        self.description = f"recording layout {repo}"
        self._place = place
        self.refuse_mounts = refuse_mounts
        self.fail_after_blobs = fail_after_blobs
        self.fail_mid_blob = fail_mid_blob
        self._count = threading.Lock()
        self._blobs_started = 0

    @property
    def place_key(self) -> str:
        return f"place:{self._place}" if self._place else super().place_key

    def put_blob(self, desc: Descriptor, body: BlobBody) -> None:
        with self._count:
            self._blobs_started += 1
            n = self._blobs_started
        if self.fail_after_blobs is not None and n > self.fail_after_blobs:
            if not self.fail_mid_blob:
                raise Interrupted(f"interrupted before blob {desc.digest}")

            def half() -> Iterator[bytes]:
                # Half the bytes reach the layout's temporary file, then the 'process dies'.
                got = 0
                for chunk in body():
                    yield chunk
                    got += len(chunk)
                    if got * 2 >= desc.size:
                        raise Interrupted(f"interrupted half-way through blob {desc.digest}")
            super().put_blob(desc, half)
            return
        super().put_blob(desc, body)
        self.log.add(Write("blob", self.repo, str(desc.digest)))

    def mount_blob(self, desc: Descriptor, source: Store) -> bool:
        if self.refuse_mounts:
            # What Distribution does with a cross-repository mount it will not honour is a 202 and an
            # upload session; Nexus and ECR refuse outright. Either way the engine must upload.
            raise AirgapError(f"{self.description}: mount of {desc.digest} refused")
        if not isinstance(source, LayoutStore) or source.place_key != self.place_key:
            return False
        target = self.blob_path(desc.digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(source.blob_path(desc.digest), target)
        self.log.add(Write("mount", self.repo, str(desc.digest)))
        return True

    def put_manifest(self, manifest: Manifest, tag: str | None = None) -> None:
        super().put_manifest(manifest, tag)
        self.log.add(Write("manifest", self.repo, str(manifest.digest), tag))

    # -- what the destination holds (read straight from disk, not from the log) ------------------
    def holds_blob(self, digest: Digest | str) -> bool:
        return self.blob_path(Digest.parse(str(digest))).is_file()


def referenced(manifest: Manifest) -> list[str]:
    """Digests a manifest points at: its blobs, or an index's child manifests."""
    if isinstance(manifest, ImageIndex):
        return [str(d.digest) for d in manifest.manifests]
    return [str(b.digest) for b in manifest.blobs()]
