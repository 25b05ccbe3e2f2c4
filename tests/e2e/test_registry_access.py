"""TLS, credentials and registry sources, against real Distribution registries."""

from __future__ import annotations

import base64
import json

import pytest

from synth import LayerSpec, add_image
from helpers import airgap, demo_bundle, load_report, run_load, write_images_md
from registry_server import run_skopeo


@pytest.fixture
def bundle(tmp_path):
    return demo_bundle(tmp_path)


def test_tls_registry_with_private_ca(bundle, tls_registry, tmp_path):
    no_ca = run_load(bundle, tls_registry, "", tls=[], check=False)
    assert no_ca.returncode == 4
    last = no_ca.stderr.strip().splitlines()[-1]
    assert "TLS" in last and "--ca-file" in last and tls_registry.host in last
    assert tls_registry.catalog() == []

    report = load_report(bundle, tls_registry, "apps", "--values-out", str(tmp_path / "v.yaml"))
    assert len(report["images"]) == 3 and report["bytes_uploaded"] > 0
    assert "apps/opensearch" in tls_registry.catalog()


def test_basic_auth_from_docker_config_and_from_env(bundle, auth_registry, tmp_path):
    reg = auth_registry
    anon = run_load(bundle, reg, "", check=False)
    assert anon.returncode == 4 and "denied" in anon.stderr and "no credentials" in anon.stderr

    wrong = run_load(bundle, reg, "", env={"AIRGAP_REGISTRY_USERNAME": reg.username,
                     "AIRGAP_REGISTRY_PASSWORD": "not-the-password"},
                   check=False)
    assert wrong.returncode == 4 and "'user'" in wrong.stderr
    assert "not-the-password" not in wrong.stderr + wrong.stdout

    # docker login's config.json, inline auths entry
    cfg = tmp_path / "docker"
    cfg.mkdir()
    token = base64.b64encode(f"{reg.username}:{reg.password}".encode()).decode()
    (cfg / "config.json").write_text(json.dumps({"auths": {reg.host: {"auth": token}}}))
    report = load_report(bundle, reg, "", "--values-out", str(tmp_path / "v.yaml"), env={"DOCKER_CONFIG": str(cfg)})
    assert report["bytes_uploaded"] > 0
    assert reg.password not in (tmp_path / "v.yaml").read_text()

    # password on stdin, as in CI pipelines
    again = run_load(bundle, reg, "", "--username", reg.username,
                   "--password-stdin", "--json", "--values-out", str(tmp_path / "v2.yaml"), input=reg.password + "\n")
    assert json.loads(again.stdout)["bytes_uploaded"] == 0
    assert reg.password not in again.stderr + again.stdout


def test_credential_helper_from_docker_config(bundle, auth_registry, tmp_path):
    reg = auth_registry
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-testhelper"
    helper.write_text("#!/bin/sh\nread host\n"
                      f"[ \"$host\" = \"{reg.host}\" ] || exit 1\n"
                      f"echo '{{\"Username\":\"{reg.username}\",\"Secret\":\"{reg.password}\"}}'\n")
    helper.chmod(0o755)
    cfg = tmp_path / "docker"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps({"credHelpers": {reg.host: "testhelper"}}))
    import os
    report = load_report(bundle, reg, "", "--values-out", str(tmp_path / "v.yaml"),
                       env={"DOCKER_CONFIG": str(cfg), "PATH": f"{bindir}:{os.environ['PATH']}"})
    assert report["bytes_uploaded"] > 0


def test_unreachable_registry_is_one_line(bundle):
    proc = run_load(bundle, "127.0.0.1:9", "", check=False)
    assert proc.returncode == 4
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("airgap: error: cannot reach registry 127.0.0.1:9")
    assert "Traceback" not in proc.stderr


def test_bundle_pulls_from_a_registry_and_filters_platforms(tmp_path, registry_factory):
    upstream = registry_factory()
    private = registry_factory()
    layout = tmp_path / "src"
    add_image(layout, "multi", layers=[LayerSpec(size=2 << 20, seed=7)], platforms=["linux/amd64", "linux/arm64"])
    run_skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{layout}:multi",
               f"docker://{upstream.host}/library/opensearch:2.18.0")
    images_md = write_images_md(tmp_path / "IMAGES.md", "0.2.0", [
        {"name": "opensearch", "source": f"{upstream.host}/library/opensearch:2.18.0", "values": "opensearch.image"}])
    out = tmp_path / "b.tar"
    result = json.loads(airgap("bundle", "--images", str(images_md), "-o", str(out), "--no-chart", "--insecure-registry",
                               "--platform", "linux/arm64", "--store", str(tmp_path / "store"), "--json").stdout)
    assert [p.split("/")[:2] for p in result["images"][0]["platforms"]] == [["linux", "arm64"]]
    assert result["images"][0]["tag"] == "2.18.0"

    load_report(out, private, "mirror", "--values-out", str(tmp_path / "v.yaml"))
    # upstream naming (the default): under the upstream host and path
    upstream_path = f"{upstream.host.replace(':', '_')}/library/opensearch"
    index = json.loads(run_skopeo("inspect", "--raw", "--tls-verify=false",
                                  f"docker://{private.host}/mirror/{upstream_path}:2.18.0").stdout)
    assert [m["platform"]["architecture"] for m in index["manifests"]] == ["arm64"]

    # A platform the image does not have is named, with the ones it has.
    wrong = airgap("bundle", "--images", str(images_md), "-o", str(tmp_path / "c.tar"), "--no-chart",
                   "--insecure-registry", "--platform", "linux/s390x", "--store", str(tmp_path / "store"), check=False)
    assert wrong.returncode == 2 and "linux/s390x" in wrong.stderr and "arm64" in wrong.stderr
