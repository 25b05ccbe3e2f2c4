"""The IMAGES.md ``artifact:`` kind end to end: files -> OCI artifact in the store -> signed bundle ->
`airgap load` into a real Distribution -> pulled back by digest (skopeo, and the chart's init-container
fetcher), the cosign signature verified in the registry.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from helpers import REPO, airgap, load_json, run_load, write_images_md
from test_signing import PASSWORD, _verify_in_registry

from airgap.sign import keys

FETCHER = REPO / "manifests/images/haystack-observability/fetch_artifact.py"
MODEL_TYPE = "application/vnd.airgap.model.v1"


def _model_dir(tmp: Path) -> Path:
    """A directory shaped like a sentence-transformers model, with a nested folder and a binary file."""
    d = tmp / "model"
    (d / "1_Pooling").mkdir(parents=True)
    (d / "config.json").write_text('{"hidden_size": 384}\n')
    (d / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}\n')
    (d / "model.safetensors").write_bytes(bytes(range(256)) * 4096)
    return d


def _images(tmp: Path, layers: str = "tar") -> Path:
    root = "\n        root: models/minilm" if layers == "tar" else ""
    return write_images_md(tmp / "IMAGES.md", "0.3.0", [
        {"name": "models/minilm", "values": "model.image",
         "artifact": f"\n        path: model\n        type: {MODEL_TYPE}\n        layers: {layers}{root}"
                     "\n        annotations: {org.opencontainers.image.description: test model}"},
    ])


@pytest.fixture(scope="module")
def keypair(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    airgap("keygen", "--output-key-prefix", str(d / "cosign"), env={"COSIGN_PASSWORD": PASSWORD})
    return d / "cosign.key", d / "cosign.pub"


def _fetch(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(FETCHER), *args], capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.parametrize("layers", ["tar", "files"])
def test_artifact_entry_bundles_loads_and_pulls_back_by_digest(tmp_path, keypair, registry, skopeo, layers):
    src = _model_dir(tmp_path)
    images = _images(tmp_path, layers)
    env = {"COSIGN_PASSWORD": PASSWORD, "SOURCE_DATE_EPOCH": "1700000000"}
    store = tmp_path / "store"
    built = load_json("build", "--images", str(images), "--store", str(store), env=env)
    assert [(b["name"], b["builder"]) for b in built] == [("models/minilm", "artifact")]
    digest = built[0]["digest"]
    # Deterministic: packing the same files again gives the same digest.
    again = load_json("build", "--images", str(images), "--store", str(tmp_path / "store2"), env=env)
    assert again[0]["digest"] == digest

    bundle = tmp_path / "bundle.tar"
    airgap("bundle", "--images", str(images), "-o", str(bundle), "--no-chart", "--store", str(store),
           "--key", str(keypair[0]), env=env)
    with tarfile.open(bundle) as tf:
        manifest = json.load(tf.extractfile("airgap-bundle.json"))
    entry = manifest["images"][0]
    assert entry["digest"] == digest and entry["source"] == "artifact:model" and entry["signatures"]

    site = tmp_path / "site"
    run_load(bundle, registry, "haystack", "--values-out", str(site / "values.yaml"), key=str(keypair[1]))
    values = (site / "values.yaml").read_text()
    assert digest in values and "haystack/models/minilm" in values

    # The registry serves the artifact by digest, as skopeo (containers/image) sees it.
    raw = json.loads(skopeo("inspect", "--raw", "--tls-verify=false",
                            f"docker://{registry.host}/haystack/models/minilm@{digest}").stdout)
    assert raw["artifactType"] == MODEL_TYPE
    assert raw["annotations"]["org.opencontainers.image.description"] == "test model"
    # ... signed: the signature in the registry verifies with the bundle's key.
    v = _verify_in_registry(registry, "haystack/models/minilm", digest, keys.load_public_key(keypair[1]))
    assert v.docker_reference == "localhost/models/minilm"

    # The chart's init container pulls it by digest and gets the very files back.
    dest = tmp_path / "pod-models"
    _fetch(f"{registry.host}/haystack/models/minilm@{digest}", str(dest), "--plain-http")
    got = dest / "models/minilm" if layers == "tar" else dest
    for f in ("config.json", "1_Pooling/config.json", "model.safetensors"):
        assert hashlib.sha256((got / f).read_bytes()).digest() == hashlib.sha256((src / f).read_bytes()).digest(), f
    assert (dest / ".artifact-digest").read_text().strip() == digest
    # By tag (values without a digest) it resolves to the same content.
    by_tag = json.loads(_fetch(f"{registry.host}/haystack/models/minilm:0.3.0", str(tmp_path / "t"),
                               "--plain-http").stdout)
    assert by_tag["digest"] == digest


def test_fetcher_refuses_a_bad_reference_and_a_missing_digest(tmp_path, registry):
    proc = _fetch(f"{registry.host}/haystack/models/minilm", str(tmp_path / "d"), "--plain-http", check=False)
    assert proc.returncode == 1 and "@sha256:DIGEST" in proc.stderr
    missing = "sha256:" + "0" * 64
    proc = _fetch(f"{registry.host}/haystack/models/minilm@{missing}", str(tmp_path / "d"), "--plain-http",
                  check=False)
    assert proc.returncode == 1 and "HTTP 404" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("block, words", [
    ("artifact: {path: model}", "needs type:"),
    ("artifact: {type: application/vnd.airgap.model.v1}", "needs path:"),
    ("artifact: {path: model, type: not-a-type}", "needs type:"),
    ("artifact: {path: model, type: a/b, layers: zip}", "layers: is tar"),
    ("artifact: {path: model, type: a/b, root: ../etc}", "root:"),
    ("artifact: {path: model, type: a/b, colour: red}", "unknown key 'colour'"),
    ("artifact: {path: missing, type: a/b}", "artifact path missing not found"),
    ("source: docker.io/library/busybox:1\n    artifact: {path: model, type: a/b}", "exactly one of"),
])
def test_bad_artifact_entries_name_the_line(tmp_path, block, words):
    _model_dir(tmp_path)
    (tmp_path / "IMAGES.md").write_text(f"```yaml airgap\nrelease: 1.0.0\nimages:\n  - name: m\n    {block}\n```\n")
    proc = airgap("build", "--images", str(tmp_path / "IMAGES.md"), "--store", str(tmp_path / "s"), check=False)
    assert proc.returncode == 2, proc.stderr
    assert words in proc.stderr and f"{tmp_path / 'IMAGES.md'}:" in proc.stderr and "Traceback" not in proc.stderr


def test_symlinks_are_not_packed(tmp_path):
    d = _model_dir(tmp_path)
    (d / "leak").symlink_to("/etc/hostname")
    _images(tmp_path)
    proc = airgap("build", "--images", str(tmp_path / "IMAGES.md"), "--store", str(tmp_path / "s"), check=False)
    assert proc.returncode == 2 and "leak" in proc.stderr and "not a regular file" in proc.stderr
