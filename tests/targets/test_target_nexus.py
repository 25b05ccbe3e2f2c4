"""Loading into Nexus 3: a real Distribution registry behind real nginx playing Nexus (nexus_proxy.py)."""

from __future__ import annotations

import json

import pytest
import yaml

from airgap.places.layout import LayoutStore
from helpers import airgap, demo_bundle_parts, load_json, load_report, run_load
from nexus_proxy import NexusProxy, start_nexus
from registry_server import RegistryError, run_skopeo


@pytest.fixture
def nexus_factory(registry_factory, tmp_path_factory):
    started: list[NexusProxy] = []

    def start(**kw) -> tuple[NexusProxy, object]:
        backend = registry_factory()
        try:
            nx = start_nexus(tmp_path_factory.mktemp("nexus"), backend.host, **kw)
        except RegistryError as exc:
            pytest.fail(str(exc), pytrace=False)
        started.append(nx)
        return nx, backend

    try:
        yield start
    finally:
        for nx in started:
            nx.stop()


@pytest.fixture
def bundle(tmp_path):
    return demo_bundle_parts(tmp_path)


def _env(nx: NexusProxy) -> dict:
    return {"AIRGAP_REGISTRY_USERNAME": nx.username, "AIRGAP_REGISTRY_PASSWORD": nx.password}


def test_path_routing_basic_challenge_and_no_mount(bundle, nexus_factory, tmp_path):
    path, _, digests = bundle
    nx, backend = nexus_factory()
    proc = run_load(path, nx, f"{nx.hosted}/haystack", "--json", "--values-out", str(tmp_path / "v.yaml"), env=_env(nx))
    report = json.loads(proc.stdout)
    assert report["target"]["kind"] == "nexus" and "status" in report["target"]["reason"]
    assert "Sonatype Nexus" in proc.stderr  # says which kind it detected
    # query and indexing share a layer: with Nexus it is uploaded into each repository, never mounted.
    assert report["blobs_mounted"] == 0
    assert "mount=" not in nx.access_log()
    assert backend.manifest_digest(f"{nx.hosted}/haystack/opensearch", "2.18.0") == digests["opensearch"]
    values = yaml.safe_load((tmp_path / "v.yaml").read_text())
    assert values["opensearch"]["image"]["repository"] == f"{nx.hosted}/haystack/opensearch"
    # An independent client pulls it back through the path-routed address.
    run_skopeo("inspect", "--raw", "--tls-verify=false", f"--creds={nx.username}:{nx.password}",
               f"docker://{nx.host}/{nx.hosted}/haystack/opensearch:2.18.0")


def test_forced_mount_gets_202_and_falls_back_to_upload(bundle, nexus_factory, tmp_path):
    path, _, _ = bundle
    nx, _ = nexus_factory()
    report = load_report(path, nx, f"{nx.hosted}/m", "--mount",
                       "--target", "nexus", "--values-out", str(tmp_path / "v.yaml"), env=_env(nx))
    assert "mount=" in nx.access_log()  # we asked ...
    assert report["blobs_mounted"] == 0  # ... Nexus started an upload instead; we uploaded


def test_repository_endpoint_address(bundle, nexus_factory, tmp_path):
    """--registry HOST/repository/<hosted>/PREFIX talks to /repository/<hosted>/v2/ while every
    emitted file names the images the way the cluster pulls them (path-based routing)."""
    path, _, digests = bundle
    nx, backend = nexus_factory()
    out = tmp_path / "out"
    report = load_report(path, nx, f"repository/{nx.hosted}/rag", "--values-out", str(tmp_path / "v.yaml"),
                         "--emit", "registries-conf,kustomize",
                       "--out-dir", str(out), env=_env(nx))
    assert report["target"]["kind"] == "nexus"
    assert "/repository/docker-hosted/v2/rag/opensearch/manifests/2.18.0" in nx.access_log()
    assert backend.manifest_digest(f"{nx.hosted}/rag/opensearch", "2.18.0") == digests["opensearch"]
    values = yaml.safe_load((tmp_path / "v.yaml").read_text())
    assert values["opensearch"]["image"] == {"registry": nx.host, "repository": f"{nx.hosted}/rag/opensearch",
                                             "tag": "2.18.0", "digest": digests["opensearch"]}
    kustomize = yaml.safe_load((out / "kustomize" / "kustomization.yaml").read_text())
    assert {"name": "opensearch", "newName": f"{nx.host}/{nx.hosted}/rag/opensearch",
            "digest": digests["opensearch"]} in kustomize["images"]


def test_blob_head_lies_then_manifest_blob_unknown_is_repaired(bundle, nexus_factory, tmp_path):
    """nexus-public#264: HEAD says a layer is there, the manifest PUT says MANIFEST_BLOB_UNKNOWN.
    The repository has history (another image under an older tag): into one without any tag a load
    sends small blobs without asking, so no HEAD could lie."""
    from airgap.copy import CopyEngine, CopyJob
    from airgap.places.registry import RegistryStore
    from airgap.registry.client import RegistryClient, RegistryOptions

    path, layout, digests = bundle
    layer = LayoutStore(layout).fetch_manifest("query").layers[-1].digest
    nx, backend = nexus_factory(ghost_blobs=(str(layer),))
    client = RegistryClient(backend.host, RegistryOptions(insecure=True))
    try:
        CopyEngine().copy([CopyJob("old", LayoutStore(layout), "indexing",
                                   RegistryStore(client, f"{nx.hosted}/g/haystack-query"), ["0.0.1"])])
    finally:
        client.close()
    proc = run_load(path, nx, f"{nx.hosted}/g", "--json",
                  "--values-out", str(tmp_path / "v.yaml"), env=_env(nx))
    assert "re-uploading" in proc.stderr
    assert backend.manifest_digest(f"{nx.hosted}/g/haystack-query", "0.1.0") == digests["query"]
    assert str(layer) in backend.committed_blobs()
    # A rerun is a no-op even though HEAD still lies: the tags are there with the right digests.
    again = load_report(path, nx, f"{nx.hosted}/g", "--values-out", str(tmp_path / "v.yaml"), env=_env(nx))
    assert again["manifests_pushed"] == 0


def test_probe_reports_nexus_capabilities(nexus_factory):
    nx, _ = nexus_factory()
    doc = json.loads(airgap("probe", "--registry", f"{nx.host}/{nx.hosted}", "--insecure-registry", "--json",
                            env=_env(nx)).stdout)
    caps = {c["name"]: c for c in doc["capabilities"]}
    assert doc["kind"] == "nexus"
    assert caps["auth scheme"]["supported"].startswith("Basic") and "'BASIC'" in caps["auth scheme"]["supported"]
    assert caps["referrers API"]["supported"] == "no" and "tag scheme" in caps["referrers API"]["plan"]
    assert caps["cross-repo mount"]["supported"] == "no"
    table = airgap("probe", "--registry", f"{nx.host}/{nx.hosted}", "--insecure-registry", env=_env(nx)).stdout
    assert "cross-repo mount" in table and "referrers API" in table and "what airgap does" in table


def test_inventory_and_sync_reach_the_repository_endpoint(bundle, nexus_factory, registry, tmp_path):
    """--registry HOST/repository/<hosted>/PREFIX: inventory lists, and sync pushes, through
    /repository/<hosted>/v2/ (before, both went to /v2/repository/... and found nothing or failed),
    naming everything the way the cluster pulls it; sync sends no mount request to Nexus."""
    path, _, digests = bundle
    nx, backend = nexus_factory()
    load_json("load", "--insecure-skip-verify", str(path), "--registry", f"{nx.host}/repository/{nx.hosted}/rag",
              "--insecure-registry", "--values-out", str(tmp_path / "v.yaml"), env=_env(nx))
    # nginx playing Nexus serves no catalog: name the repositories
    load_json("inventory", "--registry", f"{nx.host}/repository/{nx.hosted}/rag", "--insecure-registry",
              "--repository", "opensearch", "--repository", "haystack-query", "-o", str(tmp_path / "inv.json"),
              env=_env(nx))
    inv = json.loads((tmp_path / "inv.json").read_text())
    assert inv["registry"] == f"{nx.host}/{nx.hosted}/rag"
    assert inv["repositories"][f"{nx.hosted}/rag/opensearch"]["2.18.0"] == digests["opensearch"]
    assert inv["repositories"][f"{nx.hosted}/rag/haystack-query"]["0.1.0"] == digests["query"]
    assert f"/repository/{nx.hosted}/v2/rag/opensearch/tags/list" in nx.access_log()

    load_json("load", "--insecure-skip-verify", str(path), "--registry", f"{registry.host}/dmz", "--insecure-registry",
              "--values-out", str(tmp_path / "v2.yaml"))
    report = load_json("sync", "--images", str(tmp_path / "IMAGES.md"), "--from", f"{registry.host}/dmz",
                       "--to", f"{nx.host}/repository/{nx.hosted}/synced", "--from-insecure", "--to-insecure",
                       env=_env(nx))
    assert all(i["status"] == "copied" for i in report["images"]) and report["blobs_mounted"] == 0
    assert "mount=" not in nx.access_log()
    assert backend.manifest_digest(f"{nx.hosted}/synced/haystack-indexing", "0.1.0") == digests["indexing"]
