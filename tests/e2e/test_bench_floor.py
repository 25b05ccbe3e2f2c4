"""bench/floor.py, the ideal client `make bench` reads each load ratio against, pushes what a load pushes.

The floor is only a floor if it does the load's work: every blob, every signature, every manifest
and tag, nothing skipped. Two real Distribution registries take the same signed bundle (a
two-platform index and images sharing a layer), one from `airgap load`, one from bench/floor.py;
they must then hold the same blobs and, per image, the same tags naming the same digests.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import airgap, load_args, write_images_md
from synth import LayerSpec, add_image

ROOT = Path(__file__).resolve().parents[2]
PW = {"COSIGN_PASSWORD": "floor-pw"}
RECORDS = "airgap-releases"


@pytest.fixture(scope="module")
def signed_bundle(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("floor")
    airgap("keygen", "--output-key-prefix", str(tmp / "k"), env=PW)
    layout = tmp / "src"
    base = LayerSpec(size=5 << 20, seed=410)  # over the load's in-memory limit: a streamed upload
    add_image(layout, "alpha", layers=[base, LayerSpec(size=64 << 10, seed=411)])
    add_image(layout, "beta", layers=[base, LayerSpec(size=64 << 10, seed=412)])
    add_image(layout, "gamma", layers=[LayerSpec(size=64 << 10, seed=413)], platforms=["linux/amd64", "linux/arm64"])
    images = write_images_md(tmp / "IMAGES.md", "0.1.0",
                             [{"name": n, "source": f"oci:{layout}:{n}"} for n in ("alpha", "beta", "gamma")])
    out = tmp / "b.tar"
    airgap("bundle", "--images", str(images), "-o", str(out), "--no-chart", "--no-crds", "--no-tools",
           "--store", str(tmp / "store"), "--key", str(tmp / "k.key"), env=PW)
    return out, tmp / "k.pub"


def _by_image(reg, prefix: str) -> dict[str, dict[str, str | None]]:
    """Image name (last path component) -> {tag: digest} of every repository under ``prefix``."""
    out = {}
    for repo in reg.catalog():
        if repo.startswith(prefix + "/") and not repo.endswith(RECORDS):
            out[repo.rsplit("/", 1)[1]] = {t: reg.manifest_digest(repo, t) for t in reg.tags(repo)}
    return out


def test_floor_pushes_what_a_load_pushes(signed_bundle, registry_factory):
    bundle, key = signed_bundle
    loaded, floored = registry_factory(), registry_factory()
    airgap(*load_args(bundle, loaded, "app", "--values-out", str(bundle.parent / "v.yaml"), key=key))
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "floor.py"), str(bundle), f"{floored.host}/app",
                           "--streams", "3"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr

    want, got = _by_image(loaded, "app"), _by_image(floored, "app")
    assert set(want) == {"alpha", "beta", "gamma"}
    assert got == want  # image tags and the cosign .sig tags, each naming the same digest
    assert any(t.endswith(".sig") for tags in want.values() for t in tags)
    # The load's blobs, less its release record's (which the floor does not write). Distribution keeps
    # manifests as blobs too: the record's manifest is one of them.
    record_repo = next(r for r in loaded.catalog() if r.endswith(RECORDS))
    record_blobs = set()
    for tag in loaded.tags(record_repo):
        with loaded.client() as c:
            m = c.get(loaded.url(f"/v2/{record_repo}/manifests/{tag}"),
                      headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).json()
        record_blobs |= {d["digest"] for d in [m["config"], *m.get("layers", [])]}
        record_blobs.add(loaded.manifest_digest(record_repo, tag))
    assert floored.committed_blobs() == loaded.committed_blobs() - record_blobs
