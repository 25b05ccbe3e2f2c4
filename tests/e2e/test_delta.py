"""Patch releases: blob-level deltas (against a bundle, its manifest, or an inventory), split media, sync."""

from __future__ import annotations

import json
import random

import pytest

from synth import LayerSpec, add_image
from helpers import airgap, load_args, load_json, write_images_md

PASSWORD = "delta-test"
BASE = LayerSpec(size=4 << 20, seed=1)
A1 = LayerSpec(size=2 << 20, seed=2)
B1 = LayerSpec(size=1 << 20, seed=3)
A2 = LayerSpec(size=3 << 20, seed=4)  # the one new layer of release 2


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    d = tmp_path_factory.mktemp("key")
    airgap("keygen", "--output-key-prefix", str(d / "k"), env={"COSIGN_PASSWORD": PASSWORD})
    return d / "k"


def _release(tmp, version, a_layers, key, *extra, out_name=None, epoch=1_700_000_000):
    layout = tmp / f"src-{version}"
    add_image(layout, "a", layers=a_layers)
    add_image(layout, "b", layers=[BASE, B1], platforms=["linux/amd64", "linux/arm64"])
    md = write_images_md(tmp / f"IMAGES-{version}.md", version, [
        {"name": "app-a", "source": f"oci:{layout}:a", "tag": version},
        {"name": "app-b", "source": f"oci:{layout}:b", "tag": "stable"}])
    out = tmp / (out_name or f"r{version}.tar")
    res = json.loads(airgap("bundle", "--images", str(md), "-o", str(out), "--no-chart", "--store", str(tmp / "s"),
                            "--key", f"{key}.key", "--json", *extra,
                            env={"COSIGN_PASSWORD": PASSWORD, "SOURCE_DATE_EPOCH": str(epoch)}).stdout)
    return out, res


def _load(bundle_files, reg, key, *extra, check=True):
    args = load_args(list(bundle_files), reg, "site", "--values-out", str(bundle_files[0].parent / "v.yaml"), *extra,
                     key=f"{key}.pub")
    if check:
        return load_json(*args)
    return airgap(*args, check=False)


def _state(reg):
    return {r: {t: reg.manifest_digest(r, t) for t in reg.tags(r)} for r in reg.catalog() if "airgap-releases" not in r}


def test_delta_ships_only_new_blobs_and_loads_like_the_full_release(tmp_path, key, registry_factory):
    reg, fresh = registry_factory(), registry_factory()
    full1, _ = _release(tmp_path, "1.0.0", [BASE, A1], key)
    _load([full1], reg, key)
    full2, r2 = _release(tmp_path, "2.0.0", [BASE, A1, A2], key, epoch=1_700_100_000)
    delta, d = _release(tmp_path, "2.0.0", [BASE, A1, A2], key, "--base", str(full1), out_name="delta.tar",
                        epoch=1_700_100_000)
    new_layer = A2.size + 10240  # the layer tar: one file plus tar headers and end blocks
    assert d["blob_bytes"] < new_layer * 1.01 + (64 << 10)  # the new layer, plus manifests, configs, signatures
    assert delta.stat().st_size < full2.stat().st_size / 2
    manifest = json.loads(airgap("inspect", str(delta), "--json").stdout)
    assert manifest["base"]["release"] == "1.0.0" and manifest["base"]["kind"] == "bundle"

    _load([delta], reg, key)
    _load([full2], fresh, key)
    assert set(_state(reg)) == set(_state(fresh))
    for repo, tags in _state(fresh).items():
        assert set(reg.tags(repo)) >= set(tags)
        for tag, digest in tags.items():
            if not tag.endswith(".sig"):  # ECDSA signatures differ run to run; the signed digests do not
                assert reg.manifest_digest(repo, tag) == digest
    assert airgap("verify", str(delta), "--key", f"{key}.pub").returncode == 0


def test_delta_into_a_registry_without_its_base_pushes_nothing(tmp_path, key, registry):
    full1, _ = _release(tmp_path, "1.0.0", [BASE, A1], key)
    delta, _ = _release(tmp_path, "2.0.0", [BASE, A1, A2], key, "--base", str(full1), out_name="delta.tar",
                        epoch=1_700_100_000)
    proc = _load([delta], registry, key, check=False)
    assert proc.returncode == 3
    err = proc.stderr.strip().splitlines()[-1]
    assert "neither in the bundle nor in the target" in err and "release 1.0.0" in err and full1.name in err
    assert "Nothing was pushed" in err
    assert registry.catalog() == []


def test_inventory_and_manifest_bases_give_the_same_delta(tmp_path, key, registry):
    full1, _ = _release(tmp_path, "1.0.0", [BASE, A1], key)
    _load([full1], registry, key)
    inv = tmp_path / "inventory.json"
    summary = json.loads(airgap("inventory", "--registry", f"{registry.host}/site", "--insecure-registry", "-o",
                                str(inv), "--key", f"{key}.key", "--json", env={"COSIGN_PASSWORD": PASSWORD}).stdout)
    assert summary["repositories"] >= 2 and (tmp_path / "inventory.json.sig").is_file()
    man = tmp_path / "r1.json"
    airgap("inspect", str(full1), "--manifest-out", str(man))
    results = []
    for base in (inv, man, full1):
        out, res = _release(tmp_path, "2.0.0", [BASE, A1, A2], key, "--base", str(base), "--base-key", f"{key}.pub",
                            out_name=f"d-{base.name}.tar", epoch=1_700_100_000)
        results.append(res["blob_bytes"])
    assert results[0] == results[1] == results[2]
    # a tampered base is refused when its signature is checked
    inv.write_text(inv.read_text().replace('"blobs": [', '"blobs": [\n    "sha256:' + "0" * 64 + '",'))
    bad = airgap("bundle", "--images", str(tmp_path / "IMAGES-2.0.0.md"), "-o", str(tmp_path / "x.tar"),
                 "--no-chart", "--base", str(inv), "--base-key", f"{key}.pub", check=False)
    assert bad.returncode == 3 and "does not verify" in bad.stderr


def test_split_parts_in_any_order_and_missing_or_damaged_parts(tmp_path, key, registry):
    bundle, res = _release(tmp_path, "1.0.0", [BASE, A1, A2], key, "--split", "5M")
    parts = [__import__("pathlib").Path(p) for p in res["files_written"]]
    assert len(parts) >= 3 and all(p.stat().st_size <= 5 << 20 for p in parts)
    assert parts[0].name.endswith(f"part01-of-{len(parts):02d}.tar")

    shuffled = parts[:]
    random.Random(1).shuffle(shuffled)
    missing = _load([p for p in shuffled if p != parts[2]], registry, key, check=False)
    assert missing.returncode == 3 and f"part 3 of {len(parts)}" in missing.stderr and parts[2].name in missing.stderr
    assert registry.catalog() == []

    damaged = tmp_path / "damaged.tar"
    damaged.write_bytes(parts[1].read_bytes())
    with open(damaged, "r+b") as fh:
        fh.seek(4096)
        fh.write(b"\xff\xff")
    bad = _load([parts[0], damaged, *parts[2:]], registry, key, check=False)
    assert bad.returncode == 3 and "part 2" in bad.stderr and "damaged" in bad.stderr
    assert registry.catalog() == []

    report = _load(shuffled, registry, key)
    assert {i["name"] for i in report["images"]} == {"app-a", "app-b"}
    assert airgap("verify", *map(str, shuffled), "--key", f"{key}.pub").returncode == 0
    # the first part alone is a signed base for the next delta (it holds the manifest and signature)
    _, d = _release(tmp_path, "2.0.0", [BASE, A1, A2, B1], key, "--base", str(parts[0]), "--base-key", f"{key}.pub",
                    out_name="next.tar", epoch=1_700_100_000)
    assert d["blob_bytes"] < 1 << 20  # nothing but manifests, configs and signatures: every layer is in the base


def test_sync_mirrors_images_and_signatures(tmp_path, key, registry_factory):
    dmz, inner = registry_factory(), registry_factory()
    full1, _ = _release(tmp_path, "1.0.0", [BASE, A1], key)
    _load([full1], dmz, key)
    report = json.loads(airgap("sync", "--images", str(tmp_path / "IMAGES-1.0.0.md"), "--from", f"{dmz.host}/site",
                               "--to", f"{inner.host}/site", "--from-insecure", "--to-insecure", "--json").stdout)
    assert report["signatures"] and report["bytes_uploaded"] > 0
    assert _state(inner) == {r: t for r, t in _state(dmz).items()}
    again = json.loads(airgap("sync", "--images", str(tmp_path / "IMAGES-1.0.0.md"), "--from", f"{dmz.host}/site",
                              "--to", f"{inner.host}/site", "--from-insecure", "--to-insecure", "--json").stdout)
    assert again["bytes_uploaded"] == 0


def test_delta_with_a_new_image_sharing_layers_loads_without_mounts(tmp_path, key, registry):
    """The delta leaves out layers a new repository needs; they are in another repository of the target.
    Where mounting is off (Nexus, ECR by default; here --no-mount) they are streamed across instead."""
    full1, _ = _release(tmp_path, "1.0.0", [BASE, A1], key)
    _load([full1], registry, key)
    layout = tmp_path / "src-2.0.0"
    add_image(layout, "a", layers=[BASE, A1])
    add_image(layout, "b", layers=[BASE, B1], platforms=["linux/amd64", "linux/arm64"])
    add_image(layout, "c", layers=[BASE, A1, A2])  # a new image, sharing a's layers
    md = write_images_md(tmp_path / "IMAGES-new.md", "2.0.0", [
        {"name": "app-a", "source": f"oci:{layout}:a", "tag": "2.0.0"},
        {"name": "app-b", "source": f"oci:{layout}:b", "tag": "stable"},
        {"name": "app-c", "source": f"oci:{layout}:c", "tag": "2.0.0"}])
    delta = tmp_path / "delta.tar"
    airgap("bundle", "--images", str(md), "-o", str(delta), "--no-chart", "--store", str(tmp_path / "s"),
           "--key", f"{key}.key", "--base", str(full1), env={"COSIGN_PASSWORD": PASSWORD, "SOURCE_DATE_EPOCH": "1700200000"})
    report = _load([delta], registry, key, "--no-mount")
    assert report["blobs_mounted"] == 0
    assert "2.0.0" in registry.tags("site/app-c")
