"""A reload of a bundle the target already holds (issue 14: the no-op reload) writes nothing and asks
each question once.

A real Distribution registry behind a recording proxy (tests/support/http_proxy.py: it forwards every
request and logs method and path). The bundle is signed, has a two-platform index (signed per
platform too) and a chart, so every kind of tag the load plans is there: image tags, cosign
``sha256-<hex>.sig`` tags, the chart's ``charts/<name>:<version>`` and the release record.
"""

from __future__ import annotations

import json
from collections import Counter

import httpx
import pytest

from helpers import airgap, load_args, write_images_md
from http_proxy import Proxy
from synth import LayerSpec, add_image

PW = {"COSIGN_PASSWORD": "noop-pw"}
WRITES = ("POST", "PUT", "PATCH", "DELETE")
# What a load asks whatever the bundle holds: kind detection (Harbor's and Nexus's marker endpoints,
# GET /v2/) and the release record (tag list, the newest record's manifest; a record that is not
# exactly this bundle's also costs its two blobs).
FIXED_REQUESTS = 3 + 2
# The files a verified load writes next to --values-out.
OUTPUTS = ("values.yaml", "policy.json", "registries.d/airgap.yaml", "kyverno-policy.yaml")


def _images_md(path, layout, names):
    return write_images_md(path, "0.1.0", [{"name": n, "source": f"oci:{layout}:{n}"} for n in names])


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """(key, bundle of three images and a chart, the same plus a fourth image, tag count, signature count)."""
    tmp = tmp_path_factory.mktemp("noop")
    airgap("keygen", "--output-key-prefix", str(tmp / "k"), env=PW)
    layout = tmp / "src"
    base = LayerSpec(size=256 << 10, seed=300)
    add_image(layout, "alpha", layers=[base, LayerSpec(size=64 << 10, seed=301)])
    add_image(layout, "beta", layers=[base, LayerSpec(size=64 << 10, seed=302)])
    add_image(layout, "gamma", layers=[LayerSpec(size=64 << 10, seed=303)], platforms=["linux/amd64", "linux/arm64"])
    add_image(layout, "delta", layers=[base, LayerSpec(size=64 << 10, seed=304)])
    chart = tmp / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: noop-app\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("image: {}\n")

    def make(name, images):
        out = tmp / f"{name}.tar"
        airgap("bundle", "--images", str(_images_md(tmp / f"{name}.md", layout, images)), "-o", str(out),
               "--chart", str(chart), "--no-crds", "--no-tools", "--store", str(tmp / "store"),
               "--key", str(tmp / "k.key"), env=PW)
        return out

    three = make("three", ["alpha", "beta", "gamma"])
    four = make("four", ["alpha", "beta", "gamma", "delta"])
    m = json.loads(airgap("inspect", str(three), "--json").stdout)
    signatures = sum(len(i["signatures"]) for i in m["images"])
    assert signatures > len(m["images"])  # the index is signed per platform as well
    return tmp / "k.pub", three, four, len(m["images"]) + 1, signatures


class Recorder:
    """The proxy in front of the registry, with every request it forwarded: (method, path)."""

    def __init__(self, upstream: str):
        self.requests: list[tuple[str, str]] = []
        self.proxy = Proxy(upstream, after=lambda req, resp: self.requests.append((req.method, req.path)))
        self.host = self.proxy.host

    def take(self) -> list[tuple[str, str]]:
        out, self.requests = self.requests, []
        return out


@pytest.fixture
def recorder(registry):
    rec = Recorder(f"http://{registry.host}")
    try:
        yield rec
    finally:
        rec.proxy.stop()


def _load(bundle, key, recorder, tmp_path, env=None):
    out = airgap(*load_args(bundle, recorder.host, "noop", "--json", "--values-out", str(tmp_path / "values.yaml"),
                            key=key), env=env)
    return json.loads(out.stdout), out.stderr


def _stats(tmp_path):
    return {name: (st.st_ino, st.st_mtime_ns) for name in OUTPUTS for st in [(tmp_path / name).stat()]}


def test_a_reload_writes_nothing_and_asks_about_each_tag_once(bundles, recorder, tmp_path):
    key, three, _, tags, signatures = bundles
    first, _ = _load(three, key, recorder, tmp_path)
    assert first["manifests_pushed"] > 0
    recorder.take()
    before = _stats(tmp_path)

    again, _ = _load(three, key, recorder, tmp_path)
    seen = recorder.take()
    assert {i["status"] for i in again["images"] + again["signatures"] + again["charts"]} == {"present"}
    assert [r for r in seen if r[0] in WRITES] == []  # no push-rights probe, no record rewritten
    repeated = [r for r, n in Counter(seen).items() if n > 1]
    assert repeated == []  # the plan's answer for a tag is the engine's: one HEAD per tag
    assert len(seen) <= FIXED_REQUESTS + tags + signatures, seen
    # Tags HEADed: every image and chart tag and every signature tag, nothing else under /manifests/.
    heads = [p for m, p in seen if m == "HEAD" and "/manifests/" in p]
    assert len(heads) == tags + signatures, heads
    # The record is this bundle's (its manifest digest says so): its blobs are not fetched again.
    assert [p for m, p in seen if "/airgap-releases/blobs/" in p] == []
    # Every output already holds its bytes: none is rewritten (same inode, same mtime).
    assert _stats(tmp_path) == before
    assert sorted(again["files_written"]) == sorted(str(tmp_path / n) for n in OUTPUTS)


def test_a_reload_imports_neither_key_serialization_nor_the_sigstore_bundle_format(bundles, recorder, tmp_path):
    """A legacy-signed bundle is verified with the P-256 key read directly: cryptography's serialization
    package (SSH, PKCS#12, ciphers) and the Sigstore-bundle, DSSE and keyless modules stay unimported."""
    key, three, _, _, _ = bundles
    _load(three, key, recorder, tmp_path)
    report, stderr = _load(three, key, recorder, tmp_path, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert report["manifests_pushed"] == 0
    imported = {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines()
                if line.startswith("import time:") and line.count("|") == 2}
    assert {"airgap.loader", "airgap.sign.keys", "cryptography.hazmat.primitives.asymmetric.ec"} <= imported
    unwanted = {"cryptography.hazmat.primitives.serialization", "airgap.sign.sigstore_bundle", "airgap.sign.dsse",
                "airgap.sign.keyless"}
    assert sorted(imported & unwanted) == []


def test_a_record_tag_that_moved_is_read_in_full_and_written_again(bundles, recorder, registry, tmp_path):
    """The reload trusts the record tag without its blobs only when it holds exactly this bundle's
    record; a tag moved to other content is read, found unsigned, and the record is written anew."""
    key, three, _, _, _ = bundles
    _load(three, key, recorder, tmp_path)
    base = f"http://{registry.host}/v2/noop/airgap-releases"
    tag = next(t for t in httpx.get(f"{base}/tags/list").json()["tags"] if t.startswith("r"))
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    real = httpx.get(f"{base}/manifests/{tag}", headers=accept)
    doc = json.loads(real.content)
    forged = dict(doc, layers=[])  # the same config blob, none of the record's layers
    put = httpx.put(f"{base}/manifests/{tag}", content=json.dumps(forged).encode(),
                    headers={"Content-Type": doc["mediaType"]})
    assert put.status_code == 201, put.text
    recorder.take()

    report, stderr = _load(three, key, recorder, tmp_path)
    seen = recorder.take()
    assert report["manifests_pushed"] == 0
    assert "not signed by this key" in stderr
    assert ("PUT", f"/v2/noop/airgap-releases/manifests/{tag}") in seen  # the record, written again
    restored = httpx.head(f"{base}/manifests/{tag}", headers=accept)
    assert restored.headers["docker-content-digest"] == real.headers["docker-content-digest"]


def test_a_load_with_something_new_still_proves_push_rights_before_writing(bundles, recorder, tmp_path):
    key, three, four, _, _ = bundles
    _load(three, key, recorder, tmp_path)
    recorder.take()

    report, _ = _load(four, key, recorder, tmp_path)
    seen = recorder.take()
    assert [i["status"] for i in report["images"]].count("copied") == 1
    writes = [r for r in seen if r[0] in WRITES]
    # The probe: an upload session opened and cancelled before the first byte or manifest is written.
    assert writes[0][0] == "POST" and writes[0][1].endswith("/blobs/uploads/")
    assert writes[1][0] == "DELETE"
    assert not any(m in ("PUT", "PATCH") for m, _ in writes[:2])
