"""The bundle as a place the copy engine writes: one stream per blob into the tar and the local
store, a head that says exactly what the tar holds, nothing left behind on failure."""

from __future__ import annotations

import json
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from airgap.bundle.format import BundleManifest
from airgap.bundle.reader import BundleReader
from airgap.bundler import BundleOptions, create_bundle
from airgap.copy import CopyEngine, CopyJob
from airgap.errors import AirgapError, BundleError
from airgap.imagesfile import load as load_images_file
from airgap.model import Descriptor
from airgap.places.bundle import BundleHead, BundlePlace
from airgap.places.layout import LayoutStore
from airgap.registry.client import RegistryOptions
from helpers import demo_images_md, demo_layout, write_images_md
from registry_server import run_skopeo


def _push_demo(tmp_path, registry) -> dict[str, str]:
    layout = tmp_path / "src"
    digests = demo_layout(layout)
    for ref in ("query", "opensearch"):
        run_skopeo("copy", "--all", "--preserve-digests", "--dest-tls-verify=false", f"oci:{layout}:{ref}",
                   f"docker://{registry.host}/up/{ref}:1.0")
    return digests


def _registry_images(tmp_path, registry):
    return write_images_md(tmp_path / "IMAGES.md", "0.1.0", [
        {"name": "query", "source": f"{registry.host}/up/query:1.0"},
        {"name": "opensearch", "source": f"{registry.host}/up/opensearch:1.0"},
    ])


def _options(tmp_path, out, **kw) -> BundleOptions:
    return BundleOptions(output=out, no_chart=True, no_crds=True, store=tmp_path / "cache" / "store",
                         registry=RegistryOptions(insecure=True), **kw)


def test_registry_blobs_stream_once_into_bundle_and_store(tmp_path, registry):
    digests = _push_demo(tmp_path, registry)
    images = load_images_file(_registry_images(tmp_path, registry))
    out = tmp_path / "b1.tar"
    result = create_bundle(images, _options(tmp_path, out))

    reader = BundleReader(out)
    assert {i.digest for i in reader.manifest.images} == {digests["query"], digests["opensearch"]}
    needed = reader.check_complete()
    store = LayoutStore(tmp_path / "cache" / "store")
    # The store holds every blob the bundle holds (written from the same stream), and tags the
    # pulled images by their source, complete.
    assert all(store.blob_exists(d) for d in needed.values())
    assert store.resolve_tag(f"{registry.host}/up/query:1.0") is not None
    assert str(store.resolve_tag(f"{registry.host}/up/opensearch:1.0")) == digests["opensearch"]
    assert not list((tmp_path / "cache" / "store" / "blobs" / "sha256").glob(".*partial"))
    assert result.manifest.blob_count == len(reader.members) - 3  # manifest, oci-layout, index.json

    # A store blob a crash left torn (the store is a cache, not fsynced) is dropped and pulled again.
    torn = max(needed.values(), key=lambda d: d.size)
    path = store.blob_path(torn.digest)
    path.write_bytes(b"\0" * torn.size)
    create_bundle(images, _options(tmp_path, tmp_path / "b0.tar"))
    BundleReader(tmp_path / "b0.tar").check_complete()
    import hashlib
    assert "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() == str(torn.digest)

    # A second bundle reads the blobs from the store: with the registry's blob storage gone, only
    # its manifests (still served) are needed.
    for p in (registry.data_dir / "docker" / "registry" / "v2" / "blobs").rglob("data"):
        if p.stat().st_size > 1 << 20:  # layers; manifests stay
            p.write_bytes(b"gone")
    again = create_bundle(images, _options(tmp_path, tmp_path / "b2.tar"))
    assert again.manifest.referenced == result.manifest.referenced
    BundleReader(tmp_path / "b2.tar").check_complete()


def test_damaged_source_blob_writes_no_bundle_and_caches_nothing(tmp_path):
    layout = tmp_path / "src"
    demo_layout(layout)
    reader_layout = LayoutStore(layout)
    # Corrupt the largest blob in place, keeping its size: only its digest can tell.
    victim = max((p for p in (layout / "blobs" / "sha256").iterdir()), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    images = load_images_file(demo_images_md(tmp_path, layout))
    out = tmp_path / "bundle.tar"
    with pytest.raises(AirgapError, match=victim.name):
        create_bundle(images, _options(tmp_path, out))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("bundle")) == []
    assert reader_layout.root.exists()


def test_split_parts_any_arrival_order_read_back_and_by_tar(tmp_path):
    layout = tmp_path / "src"
    digests = demo_layout(layout)
    images = load_images_file(demo_images_md(tmp_path, layout))
    out = tmp_path / "bundle.tar"
    result = create_bundle(images, _options(tmp_path, out, split=6 << 20))
    assert len(result.paths) >= 3 and result.path.name == f"bundle.part01-of-{len(result.paths):02d}.tar"
    reader = BundleReader(result.paths[::-1])  # parts in any order
    assert {i.digest for i in reader.manifest.images} == set(digests.values())
    reader.check_complete()
    # Extracted with tar, every part into one directory, the layout is one any OCI tool reads.
    root = tmp_path / "x"
    root.mkdir()
    for p in result.paths:
        with tarfile.open(p) as tf:
            tf.extractall(root, filter="data")
    index = json.loads((root / "oci" / "index.json").read_text())
    assert {m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]} == {
        "haystack-query:0.1.0", "haystack-indexing:0.1.0", "opensearch:2.18.0"}
    inspect = run_skopeo("inspect", "--raw", f"oci:{root / 'oci'}:opensearch:2.18.0")
    assert json.loads(inspect.stdout)["mediaType"].endswith("index.v1+json")


def _tiny_head(tmp_path):
    """One one-blob image in a layout, and the head a bundle of it would have."""
    layout = tmp_path / "src"
    digests = demo_layout(layout)
    src = LayoutStore(layout)
    job = CopyJob("query", src, "query", src, ["query:1"])
    from airgap.copy import resolve
    r = resolve(job)
    blobs = {b.digest: b.size for b in r.blobs()}
    manifest = BundleManifest(release="1", created="2026-01-01T00:00:00Z", images=[], files=[],
                              blob_count=len(blobs) + 1, blob_bytes=sum(blobs.values()) + len(r.root.data))
    head = BundleHead(manifest, {"query:1": r.root.descriptor}, blobs, {r.root.digest: len(r.root.data)})
    return src, r, head, digests


def test_a_bundle_never_claims_what_it_does_not_hold(tmp_path):
    src, r, head, _ = _tiny_head(tmp_path)
    out = tmp_path / "out.tar"
    # The copy left out a planned tag: closing refuses, and no file is left.
    with pytest.raises(BundleError, match="left out"):
        with BundlePlace(out, head, 0) as place:
            CopyEngine(concurrency=1).copy([CopyJob("query", src, "query", place, [])])
    assert not out.exists() and not list(tmp_path.glob("out.tar*"))
    # A blob or tag the head does not list is refused as it arrives.
    with pytest.raises(BundleError, match="not in the planned"):
        with BundlePlace(out, head, 0) as place:
            CopyEngine(concurrency=1).copy([CopyJob("query", src, "query", place, ["query:2"])])
    assert not list(tmp_path.glob("out.tar*"))
    with BundlePlace(out, head, 0) as place:
        CopyEngine(concurrency=1).copy([CopyJob("query", src, "query", place, ["query:1"])])
    with tarfile.open(out) as tf:
        names = tf.getnames()
    assert names[:3] == ["airgap-bundle.json", "oci/oci-layout", "oci/index.json"]
    assert len(names) == 3 + len(head.blobs) + 1


class _Counting(LayoutStore):
    opened: list[str]

    @contextmanager
    def open_blob(self, desc: Descriptor) -> Iterator[Iterator[bytes]]:
        self.opened.append(str(desc.digest))
        with super().open_blob(desc) as chunks:
            yield chunks


def test_blobs_the_caller_verified_are_not_read_twice(tmp_path):
    """A load into Harbor or ECR checks every blob before creating projects; the engine's
    verify-first pass then skips them: each blob is read (and hashed) once more, by the upload."""
    layout = tmp_path / "src"
    demo_layout(layout)
    for verified, reads in ((False, 2), (True, 1)):
        src = _Counting(layout)
        src.opened = []
        job = CopyJob("query", src, "query", LayoutStore(tmp_path / f"dst-{verified}", create=True), ["q"])
        from airgap.copy import resolve
        blobs = resolve(job).blobs()
        CopyEngine(concurrency=1, verify_first=True, verified={b.digest for b in blobs} if verified else ()).copy([job])
        assert sorted(src.opened) == sorted(str(b.digest) for b in blobs for _ in range(reads))


def test_manifest_fields_a_newer_airgap_wrote_survive_a_rewrite(tmp_path):
    layout = tmp_path / "src"
    demo_layout(layout)
    out = tmp_path / "b.tar"
    create_bundle(load_images_file(demo_images_md(tmp_path, layout)), _options(tmp_path, out))
    doc = json.loads(BundleReader(out).manifest_bytes)
    doc["sboms"] = {"format": "spdx"}
    doc["images"][0]["attestations"] = ["sha256:" + "a" * 64]
    doc["files"] = [{"path": "crds/x.yaml", "kind": "crd", "sha256": "b" * 64, "size": 1, "name": "x.yaml", "version": "",
                     "mirror": "u"}]
    doc["blobs"]["compressedBytes"] = 7
    again = json.loads(BundleManifest.from_json(json.dumps(doc).encode(), "test").to_json())
    assert again == doc


def test_cli_bundle_then_tar_x_gives_a_layout_skopeo_copies(tmp_path):
    layout = tmp_path / "src"
    digests = demo_layout(layout)
    out = tmp_path / "b.tar"
    create_bundle(load_images_file(demo_images_md(tmp_path, layout)), _options(tmp_path, out, compress="zstd"))
    plain = tmp_path / "plain.tar"
    subprocess.run(["zstd", "-q", "-d", str(out), "-o", str(plain)], check=True)
    root = tmp_path / "x"
    root.mkdir()
    subprocess.run(["tar", "-xf", str(plain), "-C", str(root)], check=True)
    dst = tmp_path / "copy"
    run_skopeo("copy", "--all", "--preserve-digests", f"oci:{root / 'oci'}:haystack-query:0.1.0", f"oci:{dst}:q")
    assert str(LayoutStore(dst).resolve_tag("q")) == digests["query"]


def test_same_input_same_bundle_bytes_whatever_order_blobs_arrive(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    layout = tmp_path / "src"
    demo_layout(layout)
    images = load_images_file(demo_images_md(tmp_path, layout))
    a, b = tmp_path / "a.tar", tmp_path / "b.tar"
    create_bundle(images, _options(tmp_path, a, concurrency=8))
    create_bundle(images, _options(tmp_path, b, concurrency=1))
    assert a.read_bytes() == b.read_bytes()
    # The planned layout is what tar itself reads: every member where the listing says it is.
    with tarfile.open(a) as tf:
        assert tf.getnames()[:3] == ["airgap-bundle.json", "oci/oci-layout", "oci/index.json"]
