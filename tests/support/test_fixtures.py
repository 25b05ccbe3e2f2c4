"""The test harness itself, checked against the real tools it wraps.

If these fail, every registry test built on the fixtures is suspect, so they check the fixtures
the way a user of the registry would: TLS trust, credentials, and what skopeo (an independent
implementation) makes of images written by ``airgap.synth``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import ssl
import tarfile
from pathlib import Path

import httpx
import pytest

from airgap.model import MediaType
from airgap.places.layout import REF_NAME
from synth import LayerSpec, add_image, make_corpus
from registry_server import MANIFEST_ACCEPT, RegistryError
from registry_server import run_skopeo as run_skopeo_raw


def _blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()


def _manifest(layout: Path, digest: str) -> dict:
    return json.loads(_blob(layout, digest))


# --- registry lifecycle -------------------------------------------------------------------------


def test_registry_starts_empty_and_serves_v2(registry):
    r = httpx.get(registry.url("/v2/"))
    assert r.status_code == 200
    assert r.headers.get("Docker-Distribution-Api-Version") == "registry/2.0"
    assert registry.catalog() == []
    assert registry.tags("nothing/here") == []
    assert registry.manifest_digest("nothing/here", "latest") is None
    assert registry.committed_blobs() == set()


def test_factory_starts_independent_registries(registry_factory):
    a = registry_factory()
    b = registry_factory()
    assert a.host != b.host
    assert a.data_dir != b.data_dir


@pytest.fixture
def after_teardown():
    """Checks to run once the fixtures requested after this one were torn down (LIFO order)."""
    checks: list = []
    yield checks
    for check in checks:
        check()


def test_registry_stopped_at_teardown(after_teardown, registry_factory):
    reg = registry_factory()
    proc_dir = reg.data_dir.parent

    def check_down() -> None:
        with pytest.raises(httpx.TransportError):
            httpx.get(reg.url("/v2/"), timeout=2)

    after_teardown.append(check_down)
    assert httpx.get(reg.url("/v2/")).status_code == 200
    assert (proc_dir / "config.yml").is_file()


# --- TLS ---------------------------------------------------------------------------------------


def test_tls_handshake_needs_the_ca(tls_registry):
    assert tls_registry.scheme == "https"
    assert tls_registry.ca_file is not None and tls_registry.ca_file.is_file()
    with tls_registry.client() as c:
        assert c.get(tls_registry.url("/v2/")).status_code == 200
    # The system trust store does not know the throwaway CA: the handshake must fail.
    with pytest.raises(httpx.ConnectError) as info:
        httpx.get(tls_registry.url("/v2/"), verify=ssl.create_default_context())
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)
    # Plain HTTP against the TLS port is refused by the server, not silently served.
    r = httpx.get(f"http://{tls_registry.host}/v2/")
    assert r.status_code == 400


def test_tls_localhost_name_is_valid(tls_registry):
    port = tls_registry.host.split(":")[1]
    ctx = ssl.create_default_context(cafile=str(tls_registry.ca_file))
    assert httpx.get(f"https://localhost:{port}/v2/", verify=ctx).status_code == 200


# --- auth --------------------------------------------------------------------------------------


def test_auth_rejects_without_credentials(auth_registry):
    ctx = ssl.create_default_context(cafile=str(auth_registry.ca_file))
    url = auth_registry.url("/v2/")
    r = httpx.get(url, verify=ctx)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Basic")
    assert httpx.get(url, verify=ctx, auth=(auth_registry.username, "wrong")).status_code == 401
    assert httpx.get(url, verify=ctx, auth=(auth_registry.username, auth_registry.password)).status_code == 200
    assert auth_registry.catalog() == []


def test_auth_over_plain_http(registry_factory):
    reg = registry_factory(auth=True)
    assert reg.scheme == "http" and reg.password
    assert httpx.get(reg.url("/v2/")).status_code == 401
    assert httpx.get(reg.url("/v2/"), auth=(reg.username, reg.password)).status_code == 200


# --- synth images ------------------------------------------------------------------------------


def test_layer_blob_is_a_tar_of_the_requested_size(layout):
    spec = LayerSpec(3 * 2**20 + 123, seed=7)
    digest = add_image(layout, "one", layers=[spec, LayerSpec(1000, seed=8, compressed=True)])
    manifest = _manifest(layout, digest)
    assert manifest["mediaType"] == MediaType.OCI_MANIFEST and manifest["schemaVersion"] == 2
    plain, gz = manifest["layers"]
    assert plain["mediaType"] == MediaType.OCI_LAYER
    assert gz["mediaType"] == MediaType.OCI_LAYER_GZIP
    config = json.loads(_blob(layout, manifest["config"]["digest"]))
    raw_plain = _blob(layout, plain["digest"])
    raw_gz = gzip.decompress(_blob(layout, gz["digest"]))
    # diff_ids are the digests of the uncompressed tars, in layer order.
    assert config["rootfs"]["diff_ids"] == [
        "sha256:" + hashlib.sha256(raw_plain).hexdigest(),
        "sha256:" + hashlib.sha256(raw_gz).hexdigest(),
    ]
    for raw, size in ((raw_plain, spec.size), (raw_gz, 1000)):
        with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
            (member,) = tf.getmembers()
            assert member.isfile() and member.size == size
            payload = tf.extractfile(member).read()
        assert len(payload) == size
    # Incompressible, or the benchmark would measure compression instead of I/O.
    assert len(gzip.compress(raw_plain, 1)) > 0.99 * len(raw_plain)


def test_generation_is_deterministic(tmp_path):
    specs = [LayerSpec(2**20, 1), LayerSpec(5000, 2, compressed=True)]
    a = add_image(tmp_path / "a", "x", layers=specs, labels={"k": "v"}, seed=3)
    b = add_image(tmp_path / "b", "x", layers=specs, labels={"k": "v"}, seed=3)
    assert a == b
    assert sorted(p.name for p in (tmp_path / "a/blobs/sha256").iterdir()) == sorted(
        p.name for p in (tmp_path / "b/blobs/sha256").iterdir()
    )
    assert add_image(tmp_path / "a", "y", layers=specs, labels={"k": "v"}, seed=4) != a


def test_same_ref_replaces_index_entry(layout):
    first = add_image(layout, "app", layers=[LayerSpec(100, 1)])
    second = add_image(layout, "app", layers=[LayerSpec(100, 2)])
    add_image(layout, "other", layers=[LayerSpec(100, 1)])
    entries = json.loads((layout / "index.json").read_text())["manifests"]
    names = [e["annotations"][REF_NAME] for e in entries]
    assert sorted(names) == ["app", "other"]
    assert first != second
    assert [e["digest"] for e in entries if e["annotations"][REF_NAME] == "app"] == [second]


def test_shared_base_layer_is_one_blob(layout, skopeo):
    base = LayerSpec(2 * 2**20, seed=100)
    d1 = add_image(layout, "a", layers=[base, LayerSpec(4096, 1)])
    d2 = add_image(layout, "b", layers=[base, LayerSpec(4096, 2, compressed=True)])
    l1 = [x["digest"] for x in _manifest(layout, d1)["layers"]]
    l2 = [x["digest"] for x in _manifest(layout, d2)["layers"]]
    assert l1[0] == l2[0]
    assert l1[1] != l2[1]
    # skopeo reads the layout the same way.
    s1 = json.loads(skopeo("inspect", f"oci:{layout}:a").stdout)["Layers"]
    s2 = json.loads(skopeo("inspect", f"oci:{layout}:b").stdout)["Layers"]
    assert s1 == l1 and s2 == l2


def test_multi_platform_index_has_two_children(layout, skopeo):
    digest = add_image(
        layout, "multi", layers=[LayerSpec(8192, 5)], platforms=["linux/amd64", "linux/arm64"], labels={"a": "b"}
    )
    index = _manifest(layout, digest)
    assert index["mediaType"] == MediaType.OCI_INDEX and index["schemaVersion"] == 2
    children = index["manifests"]
    assert [(c["platform"]["os"], c["platform"]["architecture"]) for c in children] == [
        ("linux", "amd64"),
        ("linux", "arm64"),
    ]
    raw = skopeo("inspect", "--raw", f"oci:{layout}:multi").stdout
    assert "sha256:" + hashlib.sha256(raw.encode()).hexdigest() == digest
    for child in children:
        arch = child["platform"]["architecture"]
        cfg = json.loads(
            skopeo("inspect", "--override-arch", arch, "--override-os", "linux", "--config", f"oci:{layout}:multi").stdout
        )
        assert cfg["architecture"] == arch
        assert cfg["config"]["Labels"] == {"a": "b"}
    # Per-platform layers differ, as in real multi-arch images.
    layers = [_manifest(layout, c["digest"])["layers"][0]["digest"] for c in children]
    assert layers[0] != layers[1]


def test_skopeo_copies_synth_images_into_registry(layout, registry, skopeo):
    base = LayerSpec(3 * 2**20, seed=1)
    single = add_image(layout, "single", layers=[base, LayerSpec(2**20, 2, compressed=True)])
    multi = add_image(layout, "multi", layers=[base, LayerSpec(4096, 3)], platforms=["linux/amd64", "linux/arm64"])
    for ref in ("single", "multi"):
        # --preserve-digests: skopeo otherwise gzips uncompressed layers on the way to docker://.
        skopeo("copy", "--all", "--preserve-digests", *registry.skopeo_dest_args(),
               f"oci:{layout}:{ref}", f"docker://{registry.host}/synth/{ref}:1")

    assert sorted(registry.catalog()) == ["synth/multi", "synth/single"]
    assert registry.tags("synth/single") == ["1"]
    for ref, digest in (("single", single), ("multi", multi)):
        raw = skopeo("inspect", "--raw", *registry.skopeo_args(), f"docker://{registry.host}/synth/{ref}:1").stdout
        raw_digest = "sha256:" + hashlib.sha256(raw.encode()).hexdigest()
        assert registry.manifest_digest(f"synth/{ref}", "1") == raw_digest == digest
    assert registry.manifest_digest("synth/single", single) == single

    # Every blob of the layout landed in storage, the shared base once (content-addressed).
    layout_blobs = {"sha256:" + p.name for p in (layout / "blobs" / "sha256").iterdir()}
    committed = registry.committed_blobs()
    assert committed == layout_blobs
    base_digest = _manifest(layout, single)["layers"][0]["digest"]
    multi_amd64 = _manifest(layout, _manifest(layout, multi)["manifests"][0]["digest"])
    assert multi_amd64["layers"][0]["digest"] == base_digest


def test_skopeo_through_tls_and_auth(layout, auth_registry, skopeo):
    digest = add_image(layout, "app", layers=[LayerSpec(2**20, 9)])
    skopeo("copy", "--preserve-digests", *auth_registry.skopeo_dest_args(),
           f"oci:{layout}:app", f"docker://{auth_registry.host}/app:v1")
    assert auth_registry.manifest_digest("app", "v1") == digest
    assert auth_registry.catalog() == ["app"]
    # And the registry really required those credentials for the push.
    with pytest.raises(RegistryError, match="authentication required"):
        run_skopeo_raw("copy", "--preserve-digests", f"--dest-cert-dir={auth_registry.cert_dir}",
                       f"oci:{layout}:app", f"docker://{auth_registry.host}/app:v2")
    assert auth_registry.manifest_digest("app", "v2") is None


def test_make_corpus_shares_base_and_hits_size(layout):
    total, base = 24 * 2**20, 6 * 2**20
    refs = make_corpus(layout, total_bytes=total, images=4, base_bytes=base, seed=1, gzip_images=1,
                       gzip_layer_bytes=2**20)
    assert refs == ["img1", "img2", "img3", "img4"]
    index = json.loads((layout / "index.json").read_text())
    by_ref = {e["annotations"][REF_NAME]: e["digest"] for e in index["manifests"]}
    firsts = {_manifest(layout, by_ref[r])["layers"][0]["digest"] for r in refs}
    assert len(firsts) == 1
    unique = sum(p.stat().st_size for p in (layout / "blobs" / "sha256").iterdir())
    assert abs(unique - total) < 0.01 * total
    media = [x["mediaType"] for x in _manifest(layout, by_ref["img1"])["layers"]]
    assert media[-1] == MediaType.OCI_LAYER_GZIP


def test_manifest_accept_header_lists_all_four_types():
    for mt in (MediaType.OCI_MANIFEST, MediaType.OCI_INDEX,
               "application/vnd.docker.distribution.manifest.v2+json",
               "application/vnd.docker.distribution.manifest.list.v2+json"):
        assert mt in MANIFEST_ACCEPT
