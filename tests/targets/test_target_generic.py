"""A generic OCI registry (real Distribution): the chart as an OCI artifact pulled back by Helm, the
emitted files checked by the tools that read them (skopeo for registries.conf, kubectl's kustomize,
tomllib for containerd), detection, and the probe table."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib

import pytest
import yaml

from airgap.bundle.format import BundleImage, BundleManifest
from airgap.emit import containerd, kustomize, registries_conf
from airgap.emit.mapping import mappings
from airgap.registry.client import Target
from helpers import REPO, airgap, demo_images_md, demo_layout, load_report, run_load
from registry_server import run_skopeo

CHART = REPO / "manifests" / "haystack-rag"
HELM3 = REPO / ".tools" / "bin" / "helm3"


@pytest.fixture
def chart_bundle(tmp_path):
    layout = tmp_path / "src"
    digests = demo_layout(layout)
    out = tmp_path / "bundle.tar"
    airgap("bundle", "--images", str(demo_images_md(tmp_path, layout)), "-o", str(out), "--chart", str(CHART),
           "--no-crds", "--store", str(tmp_path / "store"))
    return out, digests


def test_chart_pushed_as_oci_artifact_and_helm_pulls_it(chart_bundle, registry, tmp_path):
    if not HELM3.is_file():
        pytest.skip(f"{HELM3} is missing: run `bash scripts/install-helm.sh`")
    path, _ = chart_bundle
    out = tmp_path / "out"
    proc = run_load(path, registry, "haystack", "--json",
                  "--values-out", str(tmp_path / "v.yaml"), "--chart-out", str(tmp_path / "chart"),
                  "--emit", "values,containerd,registries-conf,kustomize", "--out-dir", str(out))
    report = json.loads(proc.stdout)
    assert report["target"]["kind"] == "generic"
    assert report["chart"] == {"ref": f"oci://{registry.host}/haystack/charts/haystack-rag", "version": "0.1.0"}
    # the chart is reported as a chart, not as a fourth image
    assert sorted(i["name"] for i in report["images"]) == ["haystack-indexing", "haystack-query", "opensearch"]
    assert [(c["destination"], c["tags"]) for c in report["charts"]] == [
        (f"{registry.host}/haystack/charts/haystack-rag", ["0.1.0"])]
    pulled = tmp_path / "pulled"
    pulled.mkdir()
    helm = subprocess.run([str(HELM3), "pull", report["chart"]["ref"], "--version", "0.1.0", "--plain-http",
                           "-d", str(pulled)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HELM_CONFIG_HOME": str(tmp_path / "helmcfg"),
                               "HELM_CACHE_HOME": str(tmp_path / "helmcache")})
    assert helm.returncode == 0, helm.stderr
    bundled = (tmp_path / "chart" / "haystack-rag-0.1.0.tgz").read_bytes()
    assert (pulled / "haystack-rag-0.1.0.tgz").read_bytes() == bundled
    # every --emit file is there; the values file equals --values-out's
    assert (out / "values-airgap.yaml").read_text() == (tmp_path / "v.yaml").read_text()
    for rel in ("registries.conf", "kustomize/kustomization.yaml", f"containerd/certs.d/{registry.host}/hosts.toml"):
        assert (out / rel).is_file(), rel
    # a second load pushes nothing, the chart included
    again = load_report(path, registry, "haystack", "--values-out", str(tmp_path / "v.yaml"))
    assert again["manifests_pushed"] == 0 and again["bytes_uploaded"] == 0
    text = airgap("load", "--insecure-skip-verify", str(path), "--registry", f"{registry.host}/haystack",
                  "--insecure-registry", "--values-out", str(tmp_path / "v.yaml"))
    assert "3 images (3 already present)" in text.stderr, text.stderr


def _bundle_manifest(digests: dict[str, str]) -> BundleManifest:
    def img(name, source, tag, digest):
        return BundleImage(name=name, source=source, tag=tag, digest=digest, media_type="", size=0)
    return BundleManifest("0.1.0", "2026-01-01T00:00:00Z", [
        img("opensearch", "docker.io/opensearchproject/opensearch:2.18.0", "2.18.0", digests["opensearch"]),
        img("haystack-query", "ghcr.io/example/haystack-query:0.1.0", "0.1.0", digests["query"]),
        img("busybox", "busybox:1.36", "1.36", digests["indexing"]),
        img("built", "oci:/tmp/layout:built", "0.1.0", digests["indexing"]),
    ], [], 0, 0)


def test_registries_conf_mirror_is_followed_by_skopeo(tmp_path, registry):
    """CRI-O/podman mirror file: containers/image (skopeo) resolves docker.io and ghcr.io names to the
    private registry, repository renames included, without any network."""
    layout = tmp_path / "src"
    demo_layout(layout)
    target = Target(registry.host, "haystack")
    for name, ref, tag in (("opensearch", "opensearch", "2.18.0"), ("haystack-query", "query", "0.1.0")):
        run_skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{layout}:{ref}",
                   f"docker://{registry.host}/haystack/{name}:{tag}")
    digests = {"opensearch": registry.manifest_digest("haystack/opensearch", "2.18.0"),
               "query": registry.manifest_digest("haystack/haystack-query", "0.1.0"), "indexing": "sha256:" + "3" * 64}
    manifest = _bundle_manifest(digests)
    conf = tmp_path / "registries.conf"
    # flat naming: every image under another name than upstream; registries.conf still resolves them
    conf.write_text(registries_conf.render(mappings(manifest, target, "flat"), target, insecure=True))
    for src, digest in (("docker.io/opensearchproject/opensearch:2.18.0", digests["opensearch"]),
                        ("ghcr.io/example/haystack-query:0.1.0", digests["query"])):
        # skopeo copy is what follows mirrors (as a CRI-O pull does); inspect does not in 1.9.
        dest = tmp_path / f"pulled-{digest[7:19]}"
        # --registries-conf is skopeo's (hidden) switch for the file CRI-O and podman read.
        out = subprocess.run(["skopeo", "--registries-conf", str(conf), "copy", "--insecure-policy", "--all",
                              f"docker://{src}", f"oci:{dest}:x"], capture_output=True, timeout=60)
        assert out.returncode == 0, out.stderr.decode()
        index = json.loads((dest / "index.json").read_text())
        assert index["manifests"][0]["digest"] == digest
    assert "oci:/tmp/layout:built is not a registry" in conf.read_text()


def test_kustomize_component_rewrites_images_in_kubectl_kustomize(tmp_path):
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl (with kustomize) is not installed")
    digests = {"opensearch": "sha256:" + "1" * 64, "query": "sha256:" + "2" * 64, "indexing": "sha256:" + "3" * 64}
    target = Target("harbor.example.com", "haystack")
    comp = tmp_path / "airgap"
    comp.mkdir()
    (comp / "kustomization.yaml").write_text(kustomize.render(mappings(_bundle_manifest(digests), target, "flat"), target))
    app = tmp_path / "app"
    app.mkdir()
    containers = [{"name": "a", "image": "opensearchproject/opensearch:2.18.0"},
                  {"name": "b", "image": "ghcr.io/example/haystack-query:0.1.0"},
                  {"name": "c", "image": "busybox:1.36"}]
    (app / "deploy.yaml").write_text(yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
                 "spec": {"containers": containers}}}}))
    (app / "kustomization.yaml").write_text(yaml.safe_dump({"resources": ["deploy.yaml"], "components": ["../airgap"]}))
    out = subprocess.run(["kubectl", "kustomize", str(app)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    images = [c["image"] for c in yaml.safe_load(out.stdout)["spec"]["template"]["spec"]["containers"]]
    assert images == [f"harbor.example.com/haystack/opensearch@{digests['opensearch']}",
                      f"harbor.example.com/haystack/haystack-query@{digests['query']}",
                      f"harbor.example.com/haystack/busybox@{digests['indexing']}"]


def test_containerd_hosts_toml_upstream_naming_with_the_ca_copied():
    digests = {"opensearch": "sha256:" + "1" * 64, "query": "sha256:" + "2" * 64, "indexing": "sha256:" + "3" * 64}
    target = Target("reg.internal:5000", "haystack")
    ca = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    files = containerd.render(mappings(_bundle_manifest(digests), target), target, ca=ca)
    own = tomllib.loads(files["reg.internal:5000/hosts.toml"])
    assert own["server"] == "https://reg.internal:5000"
    # the CA travels next to hosts.toml and is named relative to it, not by a path of the loading host
    assert own["host"]["https://reg.internal:5000"]["ca"] == "ca.crt" and files["reg.internal:5000/ca.crt"] == ca
    hub = tomllib.loads(files["docker.io/hosts.toml"])
    assert hub["server"] == "https://registry-1.docker.io"
    mirror = hub["host"]["https://reg.internal:5000/v2/haystack/docker.io"]
    assert mirror["override_path"] is True and mirror["capabilities"] == ["pull", "resolve"] and mirror["ca"] == "ca.crt"
    assert files["docker.io/ca.crt"] == ca
    assert "renamed" not in files["docker.io/hosts.toml"]
    assert {k for k in files if k.endswith("hosts.toml")} == {
        "reg.internal:5000/hosts.toml", "docker.io/hosts.toml", "ghcr.io/hosts.toml"}


def test_containerd_hosts_toml_flat_naming_lists_renamed_images():
    digests = {"opensearch": "sha256:" + "1" * 64, "query": "sha256:" + "2" * 64, "indexing": "sha256:" + "3" * 64}
    target = Target("reg.internal:5000", "haystack")
    files = containerd.render(mappings(_bundle_manifest(digests), target, "flat"), target, insecure=True,
                              naming="flat")
    hub = tomllib.loads(files["docker.io/hosts.toml"])
    assert hub["host"]["http://reg.internal:5000/v2/haystack"]["override_path"] is True
    assert "renamed: not served by this mirror" in files["docker.io/hosts.toml"]
    assert not any(k.endswith("ca.crt") for k in files)


def test_detection_and_probe_of_a_plain_registry(registry):
    doc = json.loads(airgap("probe", "--registry", f"{registry.host}/x", "--insecure-registry", "--json").stdout)
    caps = {c["name"]: c for c in doc["capabilities"]}
    assert doc["kind"] == "generic"
    assert caps["auth scheme"]["supported"].startswith("none")
    assert caps["referrers API"]["supported"] == "no" and caps["referrers API"]["source"] == "probed"
    assert caps["cross-repo mount"]["supported"] == "yes"


def test_ecr_host_names_are_recognised():
    from airgap.targets.kinds.ecr import ecr_host
    m = ecr_host("123456789012.dkr.ecr.eu-west-1.amazonaws.com")
    assert m and m.group("account") == "123456789012" and m.group("region") == "eu-west-1"
    assert ecr_host("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com")
    assert ecr_host("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn")
    assert not ecr_host("harbor.example.com") and not ecr_host("ecr.example.com")
