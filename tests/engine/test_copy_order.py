"""The copy engine in-process: the order it writes in, mounts and their fallback, resume, verify-first.

Sources are real places (an OCI layout written by tests/support/synth.py, a MemoryStore); the
destination is a real OCI layout that records each write once it has landed on disk
(tests/support/recording_store.py). The order is what a registry and a user rely on: a tag never
points at anything incomplete, so an interrupted copy leaves no tag behind, and a re-run finishes
the job without sending again what is already there.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airgap.copy import CopyEngine, CopyJob
from airgap.errors import AirgapError
from airgap.model import Descriptor, parse_manifest, sha256_digest
from airgap.model.manifest import ImageIndex, Manifest
from airgap.model.mediatypes import MediaType
from airgap.places.layout import LayoutStore
from airgap.places.memory import MemoryStore
from recording_store import Interrupted, RecordingLayout, WriteLog, referenced
from synth import LayerSpec, add_image

# One destination repository holds all three in most tests, so the tags differ.
TAGS = {"query": "query-1.0", "indexing": "indexing-1.0", "opensearch": "2.18.0"}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """Two images sharing a base layer, and a two-platform index; small, so the module runs in a second."""
    layout = tmp_path_factory.mktemp("src")
    base = LayerSpec(size=96 << 10, seed=1)
    add_image(layout, "query", layers=[base, LayerSpec(size=40 << 10, seed=2)], seed=1)
    add_image(layout, "indexing", layers=[base, LayerSpec(size=24 << 10, seed=3, compressed=True)], seed=2)
    add_image(layout, "opensearch", layers=[LayerSpec(size=56 << 10, seed=4)],
              platforms=["linux/amd64", "linux/arm64"], seed=3)
    return layout


def _jobs(src: LayoutStore, dst, refs=tuple(TAGS)) -> list[CopyJob]:
    return [CopyJob(name=ref, src=src, ref=ref, dst=dst if not callable(dst) else dst(ref), tags=[TAGS[ref]])
            for ref in refs]


def _graph(src: LayoutStore) -> dict[str, Manifest]:
    """Every manifest of the source by digest (roots and the children of indexes)."""
    out: dict[str, Manifest] = {}
    for ref in TAGS:
        root = src.fetch_manifest(ref)
        out[str(root.digest)] = root
        if isinstance(root, ImageIndex):
            for child in root.manifests:
                out[str(child.digest)] = src.fetch_manifest(str(child.digest))
    return out


def _all_blobs(graph: dict[str, Manifest]) -> set[str]:
    return {d for m in graph.values() if not isinstance(m, ImageIndex) for d in referenced(m)}


def assert_copy_order(log: WriteLog, graph: dict[str, Manifest], already: set[tuple[str, str]] = frozenset()) -> None:
    """The engine's documented order, checked on what landed in the destination, write by write.

    ``already``: (repository, digest) pairs the destination held before the copy started."""
    writes = log.writes
    manifest_at = [i for i, w in enumerate(writes) if w.kind == "manifest"]
    assert manifest_at, "nothing was pushed"
    content_at = [i for i, w in enumerate(writes) if w.kind in ("blob", "mount")]
    # Blobs first: not one blob arrives after the first manifest.
    assert not content_at or max(content_at) < min(manifest_at), \
        f"a blob was written after a manifest: {[(w.kind, w.digest[:15], w.tag) for w in writes]}"
    for i in manifest_at:
        w = writes[i]
        before = {(x.repo, x.digest) for x in writes[:i]} | set(already)
        # Everything a manifest references (blobs; an index's child manifests) is there before it.
        lacking = [d for d in referenced(graph[w.digest]) if (w.repo, d) not in before]
        assert not lacking, f"manifest {w.digest[:15]} (tag {w.tag}) pushed before {lacking}"
    for repo in {w.repo for w in writes}:
        mine = [w for w in writes if w.repo == repo and w.kind == "manifest"]
        tagged = [w for w in mine if w.tag]
        # Tags last: in each repository a tag write is never followed by an untagged manifest of
        # the same image graph (its children, or the root pushed bare).
        for t in tagged:
            family = {t.digest, *referenced(graph[t.digest])}
            later = [w for w in mine[mine.index(t) + 1:] if w.tag is None and w.digest in family]
            assert not later, f"{repo}: tag {t.tag} written before {[w.digest[:15] for w in later]}"


@pytest.mark.parametrize("concurrency", [1, 8])
def test_blobs_before_manifests_children_before_the_index_tags_last(source, tmp_path, concurrency):
    src = LayoutStore(source)
    graph = _graph(src)
    log = WriteLog()
    dst = RecordingLayout(tmp_path / "dst", log)
    report = CopyEngine(concurrency=concurrency).copy(_jobs(src, dst))

    assert_copy_order(log, graph)
    # The shared base layer travels once; every blob of the graph arrived exactly once.
    assert sorted(w.digest for w in log.of("blob")) == sorted(_all_blobs(graph))
    assert report.blobs_uploaded == len(_all_blobs(graph))
    # The index went in tagged, after both platform manifests, which went in untagged.
    index = src.fetch_manifest("opensearch")
    assert [w.tag for w in log.writes if w.digest == str(index.digest)] == ["2.18.0"]
    for ref, tag in TAGS.items():
        assert dst.resolve_tag(tag) == src.fetch_manifest(ref).digest


def test_a_second_copy_writes_nothing(source, tmp_path):
    src = LayoutStore(source)
    log = WriteLog()
    dst = RecordingLayout(tmp_path / "dst", log)
    CopyEngine().copy(_jobs(src, dst, ("opensearch",)))
    first = len(log.writes)
    report = CopyEngine().copy(_jobs(src, dst, ("opensearch",)))
    assert len(log.writes) == first
    assert [i.status for i in report.images] == ["present"]
    assert report.blobs_uploaded == report.manifests_pushed == 0


def test_blobs_shared_within_a_place_are_mounted(source, tmp_path):
    src = LayoutStore(source)
    graph = _graph(src)
    log = WriteLog()
    repos = {ref: RecordingLayout(tmp_path / ref, log, repo=ref, place="registry") for ref in ("query", "indexing")}
    report = CopyEngine(concurrency=1).copy(_jobs(src, repos.get, ("query", "indexing")))

    base = str(src.fetch_manifest("query").layers[0].digest)
    assert [w.digest for w in log.of("mount")] == [base]
    assert [w.digest for w in log.of("blob")].count(base) == 1
    assert report.blobs_mounted == 1
    assert_copy_order(log, graph)


def test_a_refused_mount_falls_back_to_an_upload(source, tmp_path):
    src = LayoutStore(source)
    graph = _graph(src)
    log = WriteLog()
    repos = {ref: RecordingLayout(tmp_path / ref, log, repo=ref, place="registry", refuse_mounts=True)
             for ref in ("query", "indexing")}
    report = CopyEngine(concurrency=1).copy(_jobs(src, repos.get, ("query", "indexing")))

    base = str(src.fetch_manifest("query").layers[0].digest)
    assert log.of("mount") == [] and report.blobs_mounted == 0
    # The base was uploaded into both repositories, and both images are complete where they were tagged.
    assert sorted(w.repo for w in log.of("blob") if w.digest == base) == ["indexing", "query"]
    for ref, repo in repos.items():
        manifest = src.fetch_manifest(ref)
        assert all(repo.holds_blob(d) for d in referenced(manifest))
        assert repo.resolve_tag(TAGS[ref]) == manifest.digest
    # Each repository got every blob of its image: the base counted twice.
    assert report.blobs_uploaded == sum(len(src.fetch_manifest(ref).blobs()) for ref in repos) == 6
    assert_copy_order(log, graph)


@pytest.mark.parametrize("mid_blob", [False, True], ids=["between-blobs", "half-way-through-a-blob"])
def test_an_interrupted_copy_leaves_no_tag_and_a_rerun_sends_only_the_rest(source, tmp_path, mid_blob):
    src = LayoutStore(source)
    graph = _graph(src)
    root = tmp_path / "dst"
    dying = RecordingLayout(root, WriteLog(), fail_after_blobs=3, fail_mid_blob=mid_blob)
    with pytest.raises(Interrupted):
        CopyEngine(concurrency=1).copy(_jobs(src, dying))

    after_crash = {d for d in _all_blobs(graph) if dying.holds_blob(d)}
    assert len(after_crash) == 3
    assert all(dying.resolve_tag(t) is None for t in TAGS.values()), "a tag points at an incomplete image"
    assert not list(root.rglob("*.partial")), "a half-written blob was left behind"

    log = WriteLog()
    rerun = RecordingLayout(root, log)
    report = CopyEngine(concurrency=1).copy(_jobs(src, rerun))
    # What was there is not sent again; the rest is; the tags now name the source's images.
    assert {w.digest for w in log.of("blob")} == _all_blobs(graph) - after_crash
    assert len(log.of("blob")) == len(_all_blobs(graph) - after_crash)
    assert report.blobs_present == len(after_crash)
    for ref, tag in TAGS.items():
        assert rerun.resolve_tag(tag) == src.fetch_manifest(ref).digest
    assert_copy_order(log, graph, {("repo", d) for d in after_crash})


def _corrupt_smallest_layer(layout: Path, tmp_path: Path) -> tuple[LayoutStore, str]:
    """A copy of the source layout whose smallest layer has one byte flipped (same size)."""
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(layout, damaged)
    store = LayoutStore(damaged)
    layers = [layer for ref in ("query", "indexing") for layer in store.fetch_manifest(ref).layers]
    victim = min(layers, key=lambda d: d.size)
    path = store.blob_path(victim.digest)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return store, str(victim.digest)


def test_verify_first_writes_nothing_from_a_corrupt_source(source, tmp_path):
    src, victim = _corrupt_smallest_layer(source, tmp_path)
    log = WriteLog()
    dst = RecordingLayout(tmp_path / "dst", log)
    with pytest.raises(AirgapError, match=victim):
        CopyEngine(verify_first=True).copy(_jobs(src, dst, ("query", "indexing")))
    assert log.writes == []
    assert [p for p in (tmp_path / "dst" / "blobs").rglob("*") if p.is_file()] == []
    assert dst.entries() == []


def test_without_verify_first_the_bad_blob_alone_is_kept_out(source, tmp_path):
    """The contrast: streaming checks alone stop the bad blob, but its good neighbours were written."""
    src, victim = _corrupt_smallest_layer(source, tmp_path)
    log = WriteLog()
    dst = RecordingLayout(tmp_path / "dst", log)
    with pytest.raises(AirgapError, match=victim):
        CopyEngine(concurrency=1).copy(_jobs(src, dst, ("query", "indexing")))
    assert log.of("blob") and victim not in {w.digest for w in log.writes}
    assert not dst.holds_blob(victim) and log.of("manifest") == []


def test_an_artifact_from_a_memory_store_is_copied_in_the_same_order(tmp_path):
    """What the bundler copies from memory (the chart as an OCI artifact, the release record)."""
    layer = b"apiVersion: v2\nname: rag\nversion: 0.1.0\n" * 50
    config = b"{}"
    layer_desc = Descriptor("application/vnd.cncf.helm.chart.content.v1.tar+gzip", sha256_digest(layer), len(layer))
    config_desc = Descriptor("application/vnd.cncf.helm.config.v1+json", sha256_digest(config), len(config))
    doc = {"schemaVersion": 2, "mediaType": str(MediaType.OCI_MANIFEST),
           "config": config_desc.to_json(), "layers": [layer_desc.to_json()]}
    manifest = parse_manifest(json.dumps(doc).encode())
    mem = MemoryStore("chart in memory")
    mem.add_blob(layer, layer_desc.digest)
    mem.add_blob(config, config_desc.digest)
    mem.add_manifest(manifest, "0.1.0")

    log = WriteLog()
    dst = RecordingLayout(tmp_path / "dst", log)
    CopyEngine().copy([CopyJob(name="chart", src=mem, ref="0.1.0", dst=dst, tags=["0.1.0"])])
    assert_copy_order(log, {str(manifest.digest): manifest})
    assert [w.kind for w in log.writes] == ["blob", "blob", "manifest"]
    assert dst.blob_path(layer_desc.digest).read_bytes() == layer
    assert dst.resolve_tag("0.1.0") == manifest.digest
