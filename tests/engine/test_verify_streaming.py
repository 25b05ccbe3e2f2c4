"""Verify-first into a real registry in one read: blobs are hashed as they stream into upload
sessions, and ``PUT ?digest=`` (the commit) happens only once every one of them matched.

The destination is a real Distribution registry (tests/support/registry_server.py) reached through
the real client; every request it gets is recorded from the client's own event hook. A damaged
source must leave no commit and no manifest at all, and a healthy one is read once per large blob.
"""

from __future__ import annotations

import shutil
import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest

from airgap import limits
from airgap.copy import CopyEngine, CopyJob
from airgap.errors import DigestMismatch
from airgap.model import Descriptor
from airgap.places.layout import LayoutStore
from airgap.places.registry import RegistryStore
from airgap.registry.client import RegistryClient, RegistryOptions
from synth import LayerSpec, add_image

BIG = limits.MONOLITHIC_UPLOAD_BYTES + (2 << 20)  # staged: streamed into a session, committed later


class CountingLayout(LayoutStore):
    """The real layout, counting how often each blob is opened (a second verify pass would show)."""

    def __init__(self, root: Path):
        super().__init__(root)
        self.opened: Counter[str] = Counter()
        self._lock = threading.Lock()

    def open_blob(self, desc: Descriptor):
        with self._lock:
            self.opened[str(desc.digest)] += 1
        return super().open_blob(desc)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    layout = tmp_path_factory.mktemp("src")
    add_image(layout, "a", layers=[LayerSpec(size=BIG, seed=11), LayerSpec(size=64 << 10, seed=12)], seed=1)
    add_image(layout, "b", layers=[LayerSpec(size=BIG + (1 << 20), seed=13)], seed=2)
    return layout


def _client(registry) -> tuple[RegistryClient, list[tuple[str, str]]]:
    client = RegistryClient(registry.host, RegistryOptions(insecure=True))
    sent: list[tuple[str, str]] = []
    lock = threading.Lock()

    def record(request: httpx.Request) -> None:
        with lock:
            sent.append((request.method, request.url.path + ("?" + request.url.query.decode()
                                                              if request.url.query else "")))

    client.http.event_hooks["request"].append(record)
    return client, sent


def _jobs(src: LayoutStore, client: RegistryClient) -> list[CopyJob]:
    return [CopyJob(ref, src, ref, RegistryStore(client, f"site/{ref}"), ["1.0"]) for ref in ("a", "b")]


def _damage(layout: Path, tmp_path: Path) -> tuple[CountingLayout, str]:
    """A copy of the source whose big layer of image a has one byte flipped (same size)."""
    damaged = tmp_path / "damaged"
    shutil.copytree(layout, damaged)
    store = CountingLayout(damaged)
    victim = max(store.fetch_manifest("a").layers, key=lambda d: d.size)
    path = store.blob_path(victim.digest)
    with open(path, "r+b") as fh:
        fh.seek(victim.size // 2)
        byte = fh.read(1)
        fh.seek(victim.size // 2)
        fh.write(bytes([byte[0] ^ 0xFF]))
    return store, str(victim.digest)


def test_a_damaged_blob_streamed_once_commits_nothing(source, registry, tmp_path):
    src, victim = _damage(source, tmp_path)
    client, sent = _client(registry)
    try:
        with pytest.raises(DigestMismatch, match=victim):
            CopyEngine(verify_first=True, concurrency=4).copy(_jobs(src, client))
    finally:
        client.close()
    assert src.opened[victim] == 1                       # no separate verify pass read it first
    assert any(m == "PATCH" for m, _ in sent)            # it was streamed into an upload session
    assert [(m, p) for m, p in sent if m == "PUT"] == []  # and nothing was committed: no blob, no manifest
    assert registry.committed_blobs() == set()
    assert registry.catalog() == []
    # The open sessions were cancelled (DELETE); Distribution 2.8 still leaves their hash-state files
    # under _uploads, which its upload purger removes: nothing is linked into any repository.
    assert any(m == "DELETE" for m, _ in sent)
    assert list(registry.data_dir.rglob("_layers")) == []


def test_a_healthy_copy_reads_each_large_blob_once_and_commits_it_after_all_were_sent(source, registry):
    src = CountingLayout(source)
    client, sent = _client(registry)
    try:
        report = CopyEngine(verify_first=True, concurrency=4).copy(_jobs(src, client))
    finally:
        client.close()
    big = {str(d.digest) for ref in ("a", "b") for d in src.fetch_manifest(ref).layers
           if d.size > limits.MONOLITHIC_UPLOAD_BYTES}
    assert len(big) == 2 and all(src.opened[d] == 1 for d in big)
    # Every staged blob's bytes went out before the first commit (PUT ?digest= with no body).
    patches = [i for i, (m, _) in enumerate(sent) if m == "PATCH"]
    commits = [i for i, (m, p) in enumerate(sent) if m == "PUT" and "digest=" in p]
    assert len(patches) == 2 and max(patches) < min(commits)
    blobs = {str(b.digest) for ref in ("a", "b") for b in src.fetch_manifest(ref).blobs()}
    assert report.blobs_uploaded == len(blobs) and blobs <= registry.committed_blobs()
    for ref in ("a", "b"):
        assert registry.tags(f"site/{ref}") == ["1.0"]
