"""Loading into Amazon ECR: moto_server is the ECR control plane and a real Distribution registry the
data plane behind a proxy that adds what only ECR's data plane does (tests/support/ecr_standin.py).
"""

from __future__ import annotations

import json

import pytest

from ecr_standin import TOKEN_PASSWORD, ecr, ecr_env as _env, moto_server  # noqa: F401  (fixtures)
from helpers import airgap, demo_bundle_parts, load_json, load_report, run_load, write_images_md
from synth import LayerSpec, add_image


@pytest.fixture
def bundle(tmp_path):
    out, _, digests = demo_bundle_parts(tmp_path)
    return out, digests


def test_repositories_created_and_token_from_the_aws_chain(bundle, ecr, tmp_path):
    path, digests = bundle
    ecr.ecr.create_repository(repositoryName="haystack/opensearch")  # exists already: fine
    report = load_report(path, ecr.data, "haystack", "--target", "ecr", "--values-out",
                         str(tmp_path / "v.yaml"), env=_env(ecr))
    assert report["target"]["kind"] == "ecr"
    assert sorted(report["target"]["created"]) == ["haystack/haystack-indexing", "haystack/haystack-query"]
    names = {r["repositoryName"] for r in ecr.ecr.describe_repositories()["repositories"]}
    assert names == {"haystack/opensearch", "haystack/haystack-indexing", "haystack/haystack-query"}
    assert report["blobs_mounted"] == 0  # no mount unless enabled
    assert ecr.registry.manifest_digest("haystack/opensearch", "2.18.0") == digests["opensearch"]
    assert ecr.token_calls == 1  # cached for the whole load
    assert TOKEN_PASSWORD not in (tmp_path / "v.yaml").read_text()


def test_token_expiring_mid_load_is_renewed(bundle, ecr, tmp_path):
    path, digests = bundle
    ecr.expire_at_request = 8
    report = load_report(path, ecr.data, "exp", "--target", "ecr", "-j", "4", "--values-out",
                         str(tmp_path / "v.yaml"), env=_env(ecr))
    assert ecr.expired_answers >= 1 and ecr.token_calls >= 2
    assert all(i["status"] == "copied" for i in report["images"])
    assert ecr.registry.manifest_digest("exp/haystack-query", "0.1.0") == digests["query"]


def test_immutable_repository_rerun_succeeds_and_a_moved_tag_is_refused(bundle, ecr, tmp_path):
    path, _ = bundle
    for name in ("haystack-query", "haystack-indexing", "opensearch"):
        ecr.ecr.create_repository(repositoryName=f"imm/{name}", imageTagMutability="IMMUTABLE")
    args = ["--registry", f"{ecr.data.host}/imm", "--insecure-registry", "--target", "ecr",
            "--values-out", str(tmp_path / "v.yaml")]
    load_json("load", "--insecure-skip-verify", str(path), *args, env=_env(ecr))
    again = load_json("load", "--insecure-skip-verify", str(path), *args, env=_env(ecr))
    assert again["manifests_pushed"] == 0 and all(i["status"] == "present" for i in again["images"])

    # Another bundle that moves the tag 0.1.0 of haystack-query: refused, naming tag and repository.
    layout = tmp_path / "other"
    add_image(layout, "query", layers=[LayerSpec(size=1 << 20, seed=999)])
    md = write_images_md(tmp_path / "OTHER.md", "0.1.0", [{"name": "haystack-query", "source": f"oci:{layout}:query"}])
    other = tmp_path / "other.tar"
    airgap("bundle", "--images", str(md), "-o", str(other), "--no-chart", "--store", str(tmp_path / "store2"))
    proc = airgap("load", "--insecure-skip-verify", str(other), *args, env=_env(ecr), check=False)
    assert proc.returncode == 4
    # refused before the first push, naming the tag and both digests
    last = proc.stderr.strip().splitlines()[-1]
    assert "imm/haystack-query:0.1.0 points at" in last and "Nothing was pushed" in last
    assert "Traceback" not in proc.stderr


def test_no_aws_credentials_is_one_clear_line(bundle, ecr, tmp_path):
    path, _ = bundle
    env = _env(ecr)
    env.pop("AWS_ACCESS_KEY_ID")
    env.pop("AWS_SECRET_ACCESS_KEY")
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    proc = run_load(path, ecr.data, "x", "--target", "ecr",
                  env=env, check=False)
    assert proc.returncode == 4 and "no AWS credentials" in proc.stderr and "Traceback" not in proc.stderr


def test_inventory_and_sync_open_ecr_through_its_kind(bundle, ecr, registry, tmp_path):
    """No docker config holds ECR credentials: inventory and sync get the AWS token, list repositories
    with DescribeRepositories, and sync creates the destination's repositories before pushing."""
    path, digests = bundle
    env = _env(ecr)
    load_json("load", "--insecure-skip-verify", str(path), "--registry", f"{ecr.data.host}/inv", "--insecure-registry",
              "--target", "ecr", "--values-out", str(tmp_path / "v.yaml"), env=env)
    calls = ecr.token_calls
    catalog: list[str] = []
    data_hook = ecr.data.hook

    def count_catalog(req):
        if req.path.startswith("/v2/_catalog"):
            catalog.append(req.path)
        return data_hook(req)
    ecr.data.hook = count_catalog
    load_json("inventory", "--registry", f"{ecr.data.host}/inv", "--insecure-registry", "--target", "ecr",
              "-o", str(tmp_path / "inv.json"), env=env)
    inv = json.loads((tmp_path / "inv.json").read_text())
    assert set(inv["repositories"]) == {"inv/haystack-query", "inv/haystack-indexing", "inv/opensearch"}
    assert inv["repositories"]["inv/opensearch"]["2.18.0"] == digests["opensearch"]
    assert catalog == [] and ecr.token_calls == calls + 1  # DescribeRepositories, not the data plane's catalog

    # registry -> ECR: the repositories do not exist yet; sync creates them, then pushes with the token
    images_md = str(tmp_path / "IMAGES.md")
    load_json("load", "--insecure-skip-verify", str(path), "--registry", f"{registry.host}/dmz", "--insecure-registry",
              "--values-out", str(tmp_path / "v2.yaml"))
    synced = load_json("sync", "--images", images_md, "--from", f"{registry.host}/dmz", "--to", f"{ecr.data.host}/inner",
                       "--from-insecure", "--to-insecure", "--to-target", "ecr", env=env)
    assert synced["blobs_mounted"] == 0 and all(i["status"] == "copied" for i in synced["images"])
    names = {r["repositoryName"] for r in ecr.ecr.describe_repositories()["repositories"]}
    assert {"inner/haystack-query", "inner/haystack-indexing", "inner/opensearch"} <= names
    assert ecr.registry.manifest_digest("inner/haystack-query", "0.1.0") == digests["query"]
    # ECR -> registry: the source is detected by nothing here (a loopback address), named with --from-target
    back = load_json("sync", "--images", images_md, "--from", f"{ecr.data.host}/inner", "--to", f"{registry.host}/back",
                     "--from-insecure", "--to-insecure", "--from-target", "ecr", env=env)
    assert all(i["status"] == "copied" for i in back["images"])
    assert registry.manifest_digest("back/opensearch", "2.18.0") == digests["opensearch"]
