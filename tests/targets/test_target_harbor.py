"""Loading into Harbor: the Harbor stand-in (harbor_standin.py, written from Harbor's swagger) in front
of a real Distribution registry with token auth."""

from __future__ import annotations

import json

import pytest

from helpers import airgap, demo_bundle_parts, demo_images_md, demo_layout, load_args, load_json, load_report, run_load

ADMIN_PW = "Harbor12345-test"
ROBOT = "robot$haystack+ci"
ROBOT_PW = "r0bot-S3cret-value"


@pytest.fixture
def harbor(harbor_factory):
    return harbor_factory({"admin": ADMIN_PW, ROBOT: ROBOT_PW})[0]

@pytest.fixture
def bundle(tmp_path):
    out, _, digests = demo_bundle_parts(tmp_path)
    return out, digests


def _admin() -> dict:
    return {"AIRGAP_REGISTRY_USERNAME": "admin", "AIRGAP_REGISTRY_PASSWORD": ADMIN_PW}


def test_missing_project_is_explained_not_a_bare_401(bundle, harbor, tmp_path):
    path, _ = bundle
    proc = run_load(path, harbor, "haystack", "--values-out", str(tmp_path / "v.yaml"), env=_admin(), check=False)
    assert proc.returncode == 4
    last = proc.stderr.strip().splitlines()[-1]
    assert "Harbor project 'haystack' does not exist" in last and "--create-namespaces" in last
    assert "misleading" in last and ADMIN_PW not in proc.stderr
    assert "harbor" in proc.stderr.lower() and "systeminfo" in proc.stderr  # detected, and says how


def test_create_namespaces_then_push_with_bearer_tokens(bundle, harbor, tmp_path):
    path, digests = bundle
    report = load_report(path, harbor, "haystack", "--create-namespaces", "--values-out",
                         str(tmp_path / "v.yaml"), env=_admin())
    assert report["target"]["kind"] == "harbor" and report["target"]["created"] == ["haystack"]
    assert harbor.created == ["haystack"]
    assert report["blobs_mounted"] == 1  # Harbor mounts across repositories of a project
    assert all(i["status"] == "copied" for i in report["images"])


def test_robot_account_with_dollar_in_its_name(bundle, harbor, tmp_path):
    path, _ = bundle
    harbor.projects.add("haystack")
    proc = run_load(path, harbor, "haystack", "--username", ROBOT, "--password-stdin", "--json",
                    "--values-out", str(tmp_path / "v.yaml"),
                  input=ROBOT_PW + "\n")
    assert json.loads(proc.stdout)["bytes_uploaded"] > 0
    assert ROBOT_PW not in proc.stderr + proc.stdout + (tmp_path / "v.yaml").read_text()
    # A project robot may not create projects: the error says who may.
    proc = run_load(path, harbor, "other", "--create-namespaces", "--username", ROBOT, "--password-stdin",
                    input=ROBOT_PW + "\n", check=False)
    assert proc.returncode == 4 and "system robot" in proc.stderr and ROBOT in proc.stderr


def test_immutable_tags_rerun_is_a_noop(bundle, harbor, tmp_path):
    path, _ = bundle
    harbor.projects.add("frozen")
    harbor.immutable.add("frozen")
    args = load_args(path, harbor, "frozen", "--values-out", str(tmp_path / "v.yaml"))
    load_json(*args, env=_admin())
    again = load_json(*args, env=_admin())
    assert again["manifests_pushed"] == 0 and all(i["status"] == "present" for i in again["images"])


def test_probe_harbor(harbor):
    harbor.projects.add("haystack")
    doc = json.loads(airgap("probe", "--registry", f"{harbor.host}/haystack", "--insecure-registry", "--json",
                            env=_admin()).stdout)
    caps = {c["name"]: c for c in doc["capabilities"]}
    assert doc["kind"] == "harbor"
    assert caps["auth scheme"]["supported"].startswith("Bearer") and "/service/token" in caps["auth scheme"]["plan"]
    assert caps["namespaces"]["supported"] == "project must exist"
    assert caps["immutable tags"]["supported"] == "possible"


def test_immutable_412_for_the_same_digest_counts_as_pushed(bundle, harbor, tmp_path):
    """Harbor answers 412 to a re-push of an immutable tag even with the same digest: that is success;
    a different digest is refused with a message naming the tag."""
    from airgap.errors import RegistryError
    from airgap.places.registry import RegistryStore
    from airgap.registry.client import RegistryClient, RegistryOptions

    path, _ = bundle
    harbor.projects.add("frozen")
    harbor.immutable.add("frozen")
    load_report(path, harbor, "frozen", "--values-out", str(tmp_path / "v.yaml"), env=_admin())
    client = RegistryClient(harbor.host, RegistryOptions(insecure=True, username="admin", password=ADMIN_PW))
    try:
        store = RegistryStore(client, "frozen/opensearch")
        index = store.fetch_manifest("2.18.0")
        store.put_manifest(index, "2.18.0")  # 412 from Harbor, same digest: fine
        child = store.fetch_manifest(str(index.manifests[0].digest))
        with pytest.raises(RegistryError, match="frozen/opensearch:2.18.0 is immutable"):
            store.put_manifest(child, "2.18.0")
    finally:
        client.close()


def test_signed_bundle_into_immutable_project_twice(harbor, tmp_path):
    """cosign signatures travel as sha256-<hex>.sig tags (what Harbor lists as signature accessories);
    with immutable tags a rerun must still push nothing and fail nothing, the release record included."""
    airgap("keygen", "--output-key-prefix", str(tmp_path / "k"), env={"COSIGN_PASSWORD": "pw"})
    layout = tmp_path / "src"
    digests = demo_layout(layout)
    out = tmp_path / "signed.tar"
    airgap("bundle", "--images", str(demo_images_md(tmp_path, layout)), "-o", str(out), "--no-chart",
           "--store", str(tmp_path / "store"), "--key", str(tmp_path / "k.key"), env={"COSIGN_PASSWORD": "pw"})
    harbor.projects.add("frozen")
    harbor.immutable.add("frozen")
    args = load_args(out, harbor, "frozen", "--values-out", str(tmp_path / "v.yaml"), key=tmp_path / "k.pub")
    first = load_json(*args, env=_admin())
    assert len(first["signatures"]) == 5  # query, indexing, and opensearch's index + 2 platforms
    again = load_json(*args, env=_admin())
    assert again["manifests_pushed"] == 0
    assert all(i["status"] == "present" for i in again["images"] + again["signatures"])
    sig_tag = "sha256-" + digests["opensearch"].split(":")[1] + ".sig"
    assert any(sig_tag in s["tags"] and s["destination"].endswith("frozen/opensearch") for s in first["signatures"])


def test_damaged_bundle_creates_no_project(harbor, tmp_path):
    """Creating a project changes the target: a bundle that fails its digests must not get that far."""
    import tarfile
    out, _, _ = demo_bundle_parts(tmp_path)
    with tarfile.open(out) as tf:
        m = max((i for i in tf if i.isfile()), key=lambda i: i.size)
    with open(out, "r+b") as fh:
        fh.seek(m.offset_data + 1000)
        b = fh.read(1)
        fh.seek(m.offset_data + 1000)
        fh.write(bytes([b[0] ^ 1]))
    proc = run_load(out, harbor, "newproj", "--create-namespaces", "--values-out", str(tmp_path / "v.yaml"),
                    env=_admin(), check=False)
    assert proc.returncode == 3 and "corrupt or tampered" in proc.stderr
    assert harbor.created == []


def test_sync_into_harbor_checks_and_creates_the_project_first(bundle, harbor, registry, tmp_path):
    """sync opens its destination as a load does: a missing project is explained before any push,
    and --create-namespaces creates it."""
    path, digests = bundle
    load_json("load", "--insecure-skip-verify", str(path), "--registry", f"{registry.host}/dmz", "--insecure-registry",
              "--values-out", str(tmp_path / "v.yaml"))
    args = ["sync", "--images", str(tmp_path / "IMAGES.md"), "--from", f"{registry.host}/dmz",
            "--to", f"{harbor.host}/mirror", "--from-insecure", "--to-insecure"]
    proc = airgap(*args, env=_admin(), check=False)
    assert proc.returncode == 4 and "Harbor project 'mirror' does not exist" in proc.stderr.strip().splitlines()[-1]
    report = load_json(*args, "--create-namespaces", env=_admin())
    assert harbor.created == ["mirror"] and all(i["status"] == "copied" for i in report["images"])
    assert report["blobs_mounted"] == 1  # Harbor mounts the shared layer across the project's repositories
