"""A damaged bundle pushes nothing; an interrupted load resumes without redoing finished work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from airgap.bundle.reader import BundleReader
from synth import LayerSpec, add_image
from helpers import airgap, demo_bundle, demo_images_md, demo_layout, load_json, run_load, write_images_md


@pytest.fixture
def bundle(tmp_path):
    return demo_bundle(tmp_path)


def _largest_blob(path):
    reader = BundleReader(path)
    name, member = max(((n, m) for n, m in reader.members.items() if n.startswith("oci/blobs/")),
                       key=lambda nm: nm[1].size)
    return name, member


def test_flipped_byte_in_a_layer_is_rejected_before_any_push(bundle, registry, tmp_path):
    name, member = _largest_blob(bundle)
    with open(bundle, "r+b") as fh:
        fh.seek(member.offset + member.size // 2)
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 0xFF]))
    proc = run_load(bundle, registry, "", "--values-out", str(tmp_path / "v.yaml"), check=False)
    assert proc.returncode == 3
    digest = name.rsplit("/", 1)[1]
    err = proc.stderr.strip().splitlines()[-1]
    assert err.startswith("airgap: error:") and digest in err and "corrupt" in err
    assert "Traceback" not in proc.stderr
    assert registry.catalog() == [] and registry.committed_blobs() == set()
    assert not (tmp_path / "v.yaml").exists()


def test_truncated_bundle_is_rejected_before_any_push(bundle, registry, tmp_path):
    size = bundle.stat().st_size
    with open(bundle, "r+b") as fh:
        fh.truncate(size // 2)
    proc = run_load(bundle, registry, "", check=False)
    assert proc.returncode == 3
    assert "truncated" in proc.stderr and "Traceback" not in proc.stderr
    assert registry.catalog() == []


def test_missing_blob_is_named(tmp_path, registry):
    """A bundle whose manifest lists a blob the tar does not hold (hand-edited or badly split)."""
    layout = tmp_path / "src"
    demo_layout(layout)
    out = tmp_path / "bundle.tar"
    airgap("bundle", "--images", str(demo_images_md(tmp_path, layout)), "-o", str(out), "--no-chart",
           "--store", str(tmp_path / "store"))
    # Rewrite the tar without its largest blob.
    import tarfile
    name, _ = _largest_blob(out)
    pruned = tmp_path / "pruned.tar"
    with tarfile.open(out) as src, tarfile.open(pruned, "w") as dst:
        for m in src.getmembers():
            if m.name != name:
                dst.addfile(m, src.extractfile(m))
    proc = run_load(pruned, registry, "", check=False)
    assert proc.returncode == 3
    assert name.rsplit("/", 1)[1] in proc.stderr and "does not contain" in proc.stderr
    assert registry.catalog() == []


def test_not_a_bundle(tmp_path, registry):
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not a tar file at all" * 100)
    proc = run_load(junk, registry, "", check=False)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert str(junk) in proc.stderr
    missing = run_load(tmp_path / "nope.tar", registry, "", tls=[], check=False)
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_killed_load_resumes_without_reuploading(tmp_path, registry):
    """kill -9 half-way: no tag points at anything incomplete; the rerun uploads only what is missing."""
    layout = tmp_path / "src"
    refs = []
    for n in range(8):
        add_image(layout, f"img{n}", layers=[LayerSpec(size=24 << 20, seed=1000 + n)])
        refs.append(f"img{n}")
    images_md = write_images_md(tmp_path / "IMAGES.md", "1.0.0",
                                [{"name": r, "source": f"oci:{layout}:{r}"} for r in refs])
    bundle = tmp_path / "big.tar"
    airgap("bundle", "--images", str(images_md), "-o", str(bundle), "--no-chart", "--store", str(tmp_path / "s"))
    total_layers = {str(d) for d in BundleReader(bundle).check_complete()}

    args = [sys.executable, "-m", "airgap", "-q", "load", "--insecure-skip-verify", str(bundle), "--registry", registry.host,
            "--insecure-registry", "-j", "1", "--values-out", str(tmp_path / "v.yaml")]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    committed: set[str] = set()
    while time.monotonic() < deadline:
        committed = registry.committed_blobs() & total_layers
        if len(committed) >= 3 or proc.poll() is not None:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the load finished before it could be interrupted; make the corpus bigger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = registry.committed_blobs() & total_layers
    assert 3 <= len(partial) < len(total_layers)
    # Tags are pushed last: nothing is tagged yet.
    assert all(registry.tags(r) == [] for r in refs)

    report = load_json(*args[3:])
    assert report["blobs_present"] >= len(partial)
    assert report["blobs_uploaded"] <= len(total_layers) - len(partial)
    for r in refs:
        assert registry.tags(r) == ["1.0.0"]
