"""Bundle on the connected side, load on the isolated side, against a real Distribution registry.

skopeo (containers/image, an independent implementation) is the second opinion on what was pushed.
"""

from __future__ import annotations

import json
import tarfile

import yaml

from airgap.bundle.reader import BundleReader
from helpers import airgap, demo_images_md, demo_layout, load_args, load_json, load_report, run_load
from registry_server import run_skopeo


def _bundle(tmp_path, layout=None):
    layout = layout or tmp_path / "src"
    digests = demo_layout(layout)
    images_md = demo_images_md(tmp_path, layout)
    out = tmp_path / "bundle.tar"
    airgap("bundle", "--images", str(images_md), "-o", str(out), "--no-chart", "--store", str(tmp_path / "store"))
    return out, digests


def test_roundtrip_pushes_every_image_and_values_pin_digests(tmp_path, registry):
    bundle, digests = _bundle(tmp_path)
    values = tmp_path / "values.yaml"
    report = load_report(bundle, registry, "haystack", "--values-out", str(values))
    assert {i["name"] for i in report["images"]} == {"haystack-query", "haystack-indexing", "opensearch"}
    assert all(i["status"] == "copied" for i in report["images"])

    # The registry holds exactly what was bundled, by digest, under the prefix.
    assert sorted(registry.catalog()) == ["haystack/haystack-indexing", "haystack/haystack-query", "haystack/opensearch"]
    assert registry.manifest_digest("haystack/haystack-query", "0.1.0") == digests["query"]
    assert registry.manifest_digest("haystack/opensearch", "2.18.0") == digests["opensearch"]

    # skopeo agrees, and can read the multi-arch index and each platform's config.
    raw = run_skopeo("inspect", "--raw", "--tls-verify=false",
                     f"docker://{registry.host}/haystack/opensearch:2.18.0").stdout
    index = json.loads(raw)
    assert {m["platform"]["architecture"] for m in index["manifests"]} == {"amd64", "arm64"}
    for arch in ("amd64", "arm64"):
        cfg = json.loads(run_skopeo("inspect", "--config", "--tls-verify=false", "--override-arch", arch,
                                    f"docker://{registry.host}/haystack/opensearch:2.18.0").stdout)
        assert cfg["architecture"] == arch

    doc = yaml.safe_load(values.read_text())
    assert doc["image"] == {"registry": registry.host, "tag": "0.1.0"}
    assert doc["opensearch"]["image"] == {"registry": registry.host, "repository": "haystack/opensearch",
                                          "tag": "2.18.0", "digest": digests["opensearch"]}
    assert doc["query"]["image"]["digest"] == digests["query"]
    assert doc["indexing"]["image"]["repository"] == "haystack/haystack-indexing"


def test_shared_base_layer_is_stored_once_and_uploaded_once(tmp_path, registry):
    bundle, _ = _bundle(tmp_path)
    reader = BundleReader(bundle)
    with tarfile.open(bundle) as tf:
        names = [m.name for m in tf.getmembers()]
    assert len(names) == len(set(names))
    needed = reader.check_complete()
    blob_members = [n for n in names if n.startswith("oci/blobs/")]
    # every blob once: the blobs the images need plus their manifests, nothing twice
    assert len(blob_members) == reader.manifest.blob_count
    assert reader.manifest.blob_bytes < sum(i.blob_bytes for i in reader.manifest.images)

    report = load_report(bundle, registry, "haystack", "--values-out", str(tmp_path / "v.yaml"))
    # query and indexing share the 4 MiB base layer: uploaded once, mounted into the second repository.
    assert report["blobs_mounted"] == 1
    assert report["bytes_uploaded"] == sum(d.size for d in needed.values())
    assert registry.committed_blobs() >= {str(d) for d in needed}


def test_second_load_is_a_noop(tmp_path, registry):
    bundle, _ = _bundle(tmp_path)
    args = load_args(bundle, registry, "haystack", "--values-out", str(tmp_path / "v.yaml"))
    first = load_json(*args)
    assert first["bytes_uploaded"] > 0
    second = load_json(*args)
    assert second["bytes_uploaded"] == 0 and second["blobs_uploaded"] == 0 and second["manifests_pushed"] == 0
    assert all(i["status"] == "present" for i in second["images"])
    assert (tmp_path / "v.yaml").is_file()


def test_dry_run_pushes_nothing(tmp_path, registry):
    bundle, _ = _bundle(tmp_path)
    proc = run_load(bundle, registry, "", "--dry-run",
                  "--values-out", str(tmp_path / "v.yaml"))
    assert "would upload" in proc.stderr
    assert "repository: opensearch" in proc.stdout  # the values it would write
    assert registry.catalog() == []
    assert not (tmp_path / "v.yaml").exists()


def test_inspect_reads_the_manifest(tmp_path):
    bundle, digests = _bundle(tmp_path)
    doc = json.loads(airgap("inspect", str(bundle), "--json").stdout)
    assert doc["release"] == "0.1.0"
    assert {i["name"]: i["digest"] for i in doc["images"]} == {
        "haystack-query": digests["query"], "haystack-indexing": digests["indexing"],
        "opensearch": digests["opensearch"]}
    human = airgap("inspect", str(bundle)).stdout
    assert "haystack-query" in human and "release 0.1.0" in human


def test_bundle_is_deterministic(tmp_path):
    layout = tmp_path / "src"
    demo_layout(layout)
    images_md = demo_images_md(tmp_path, layout)
    outs = []
    for n in (1, 2):
        out = tmp_path / f"b{n}.tar"
        airgap("bundle", "--images", str(images_md), "-o", str(out), "--no-chart", "--store", str(tmp_path / "s"),
               env={"SOURCE_DATE_EPOCH": "1700000000"})
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


def test_zstd_bundle_loads_and_inspects(tmp_path, registry):
    layout = tmp_path / "src"
    digests = demo_layout(layout)
    out = tmp_path / "bundle.tar.zst"
    airgap("bundle", "--images", str(demo_images_md(tmp_path, layout)), "-o", str(out), "--no-chart",
           "--compress", "zstd", "--store", str(tmp_path / "store"))
    assert out.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
    assert json.loads(airgap("inspect", str(out), "--json").stdout)["release"] == "0.1.0"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    load_report(out, registry, "", "--scratch-dir", str(scratch),
              "--values-out", str(tmp_path / "v.yaml"))
    assert registry.manifest_digest("opensearch", "2.18.0") == digests["opensearch"]
    assert list(scratch.iterdir()) == []  # the decompressed copy is gone

    # a truncated zstd bundle is refused, naming the file the user gave
    data = out.read_bytes()
    bad = tmp_path / "bad.tar.zst"
    bad.write_bytes(data[: len(data) // 2])
    proc = run_load(bad, registry, "", check=False)
    assert proc.returncode == 3 and str(bad) in proc.stderr and "Traceback" not in proc.stderr
