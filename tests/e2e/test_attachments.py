"""Upstream attachments travel in the bundle and are relocated at load, byte for byte, by real tools.

The source is a real Distribution 2.8 (no referrers API) holding a two-platform image that the real
producers decorated as upstreams do in 2026 (Debian trixie's cosign 2.5 and oras 1.2,
scripts/install-trixie.sh): a legacy `cosign sign --key` signature, a Sigstore-bundle attestation from
`cosign attest --new-bundle-format` (whose tag-schema index entry carries the imperfect empty
artifactType), an SPDX SBOM on the index and a CycloneDX SBOM on a platform manifest (`oras attach`),
and a cosign signature of the SPDX SBOM (an attachment of an attachment). After `airgap bundle` and
`airgap load` into (a) Distribution, where the referrers go under the tag schema merged with what is
there, and (b) the referrers stand-in, where they go through the API: `oras discover` lists the same
digests and `cosign verify` / `verify-attestation` accept the relocated signatures, offline (no TUF,
no Rekor: --insecure-ignore-tlog, --offline, an empty trusted root). Immutable Harbor (stand-in):
a second release never rewrites a tag; one that would need to is refused before the first push.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import subprocess
from pathlib import Path

import pytest

from ecr_standin import ecr, ecr_env, moto_server  # noqa: F401  (fixtures)
from helpers import airgap, load_report, module_registry, run_load, trixie_tool, write_images_md
from synth import LayerSpec, add_image

SPDX = "application/spdx+json"
CYCLONEDX = "application/vnd.cyclonedx+json"
SIGSTORE_BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PASSWORD = "upstream-key-password"
EMPTY_ROOT = {"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1", "tlogs": [],
              "certificateAuthorities": [], "ctlogs": [], "timestampAuthorities": []}


@pytest.fixture(scope="module")
def tools(tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("cosign-home")
    root = home / "trusted_root.json"
    root.write_text(json.dumps(EMPTY_ROOT))
    return {"cosign": trixie_tool("cosign"), "oras": trixie_tool("oras"), "home": home, "root": root}


def _run(tools: dict, *args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    # A private HOME and TUF_ROOT: nothing of the machine's sigstore state is read or written.
    env = {**os.environ, "HOME": str(tools["home"]), "TUF_ROOT": str(tools["home"] / "tuf"),
           "COSIGN_PASSWORD": PASSWORD, "COSIGN_YES": "true"}
    proc = subprocess.run(list(args), capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    if check:
        assert proc.returncode == 0, f"{' '.join(args)}:\n{proc.stderr}\n{proc.stdout}"
    return proc


def cosign(tools: dict, *args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return _run(tools, tools["cosign"], *args, cwd=cwd, check=check)


def oras(tools: dict, *args: str, cwd: Path) -> str:
    return _run(tools, tools["oras"], *args, "--plain-http", cwd=cwd).stdout


def _oras_attach(tools: dict, ref: str, artifact_type: str, name: str, body: bytes, tmp: Path) -> str:
    (tmp / name).write_bytes(body)
    out = oras(tools, "attach", "--no-tty", "--artifact-type", artifact_type, ref, f"{name}:{artifact_type}",
               "--format", "json", cwd=tmp)
    return json.loads(out)["digest"]


def discover(tools: dict, ref: str, tmp: Path, api: bool = False) -> set[str]:
    """Digests of every referrer `oras discover` lists for ``ref`` (one level: its JSON is flat)."""
    mode = ["--distribution-spec", "v1.1-referrers-api"] if api else ["--distribution-spec", "v1.1-referrers-tag"]
    doc = json.loads(oras(tools, "discover", *mode, "--format", "json", ref, cwd=tmp))
    return {m["digest"] for m in doc.get("manifests") or []}


@pytest.fixture(scope="module")
def source_registry(tmp_path_factory):
    with module_registry(tmp_path_factory.mktemp("source-registry")) as registry:
        yield registry


@pytest.fixture(scope="module")
def upstream(tools, source_registry, tmp_path_factory) -> dict:
    """The source registry with the decorated image; returns what was attached, by name."""
    tmp = tmp_path_factory.mktemp("upstream")
    src = source_registry
    layout = tmp / "layout"
    digest = add_image(layout, "app", layers=[LayerSpec(size=1 << 16, seed=31)],
                       platforms=["linux/amd64", "linux/arm64"])
    subprocess.run(["skopeo", "copy", "--all", "--dest-tls-verify=false", "--preserve-digests", f"oci:{layout}:app",
                    f"docker://{src.host}/site/app:1.0"], check=True, capture_output=True)
    index = json.loads((layout / "blobs" / "sha256" / digest.split(":")[1]).read_text())
    platform = index["manifests"][0]["digest"]
    cosign(tools, "generate-key-pair", cwd=tmp)
    repo = f"{src.host}/site/app"
    flags = ["--tlog-upload=false", "--allow-http-registry", "--key", str(tmp / "cosign.key")]
    cosign(tools, "sign", *flags, f"{repo}@{digest}", cwd=tmp)
    (tmp / "predicate.json").write_text(json.dumps({"spdxVersion": "SPDX-2.3", "name": "app"}))
    cosign(tools, "attest", "--new-bundle-format", *flags, "--type", "spdxjson", "--predicate",
           str(tmp / "predicate.json"), f"{repo}@{digest}", cwd=tmp)
    spdx = _oras_attach(tools, f"{repo}@{digest}", SPDX, "sbom.spdx.json", b'{"spdxVersion":"SPDX-2.3"}', tmp)
    cdx = _oras_attach(tools, f"{repo}@{platform}", CYCLONEDX, "bom.cdx.json", b'{"bomFormat":"CycloneDX"}', tmp)
    cosign(tools, "sign", *flags, f"{repo}@{spdx}", cwd=tmp)
    referrers = discover(tools, f"{repo}@{digest}", tmp)
    [bundle_ref] = referrers - {spdx}
    sig = src.manifest_digest("site/app", f"sha256-{digest.split(':')[1]}.sig")
    spdx_sig = src.manifest_digest("site/app", f"sha256-{spdx.split(':')[1]}.sig")
    assert sig and spdx_sig
    return {"registry": src, "repo": repo, "digest": digest, "platform": platform, "spdx": spdx, "cdx": cdx,
            "bundle": bundle_ref, "sig": sig, "spdx_sig": spdx_sig, "pub": tmp / "cosign.pub", "dir": tmp,
            "layout": layout}


def _images_md(tmp: Path, upstream: dict, release: str = "1.0") -> Path:
    return write_images_md(tmp / "IMAGES.md", release, [{"name": "app", "source": f"{upstream['repo']}:1.0"}])


def _bundle(tmp: Path, upstream: dict, *extra: str, release: str = "1.0", name: str = "b.tar") -> tuple[Path, dict]:
    out = tmp / name
    result = json.loads(airgap("bundle", "--images", str(_images_md(tmp, upstream, release)), "-o", str(out),
                               "--no-chart", "--insecure-registry", "--store", str(tmp / "store"), "--json",
                               *extra, env={"COSIGN_PASSWORD": "ours"}).stdout)
    return out, result


@pytest.fixture(scope="module")
def carried(upstream, tmp_path_factory) -> tuple[Path, dict, list[dict]]:
    tmp = tmp_path_factory.mktemp("carried")
    out, result = _bundle(tmp, upstream)
    listed = json.loads(airgap("inspect", str(out), "--json").stdout)["images"][0]["attachments"]
    return out, result, listed


def test_bundle_lists_every_attachment_recursively_classified_by_its_manifest(upstream, carried):
    out, result, listed = carried
    by_digest = {a["digest"]: a for a in listed}
    assert set(by_digest) == {upstream[k] for k in ("bundle", "spdx", "cdx", "sig", "spdx_sig")}
    # cosign 2.5's index entry says application/vnd.oci.empty.v1+json: the manifest says a Sigstore bundle
    assert by_digest[upstream["bundle"]]["artifactType"] == SIGSTORE_BUNDLE
    assert by_digest[upstream["bundle"]]["foundBy"] == "referrer"
    assert by_digest[upstream["cdx"]]["subject"] == upstream["platform"]      # a platform manifest's own
    sbom_sig = by_digest[upstream["spdx_sig"]]                                # the signature of the SBOM
    assert sbom_sig["subject"] == upstream["spdx"] and sbom_sig["foundBy"] == "cosign-tag"
    assert sbom_sig["tag"] == f"sha256-{upstream['spdx'].split(':')[1]}.sig"
    order = [a["digest"] for a in listed]
    assert order.index(upstream["spdx"]) < order.index(upstream["spdx_sig"])  # subjects before what refers to them
    assert result["images"][0]["sbom"] == ["cyclonedx", "spdx"]
    assert result["images"][0]["attachments"] == {"signature": 3, "sbom": 2}
    table = airgap("inspect", str(out)).stdout
    assert SPDX in table and CYCLONEDX in table and "cyclonedx,spdx" in table


def test_attachments_none_carries_nothing_and_a_type_selects(upstream, tmp_path):
    _, none = _bundle(tmp_path, upstream, "--attachments", "none", name="none.tar")
    assert none["images"][0]["attachments"] == {} and none["images"][0]["sbom"] == []
    out, sboms = _bundle(tmp_path, upstream, "--attachments", "sbom", name="sbom.tar")
    listed = json.loads(airgap("inspect", str(out), "--json").stdout)["images"][0]["attachments"]
    assert {a["digest"] for a in listed} == {upstream["spdx"], upstream["cdx"]}
    # a typo would carry nothing without a word: refused in one line, before anything is pulled
    for cmd in (["bundle", "--images", str(_images_md(tmp_path, upstream)), "-o", str(tmp_path / "typo.tar"),
                 "--no-chart", "--insecure-registry", "--store", str(tmp_path / "store")],
                ["load", "--insecure-skip-verify", str(out), "--registry", "127.0.0.1:9/x", "--insecure-registry"],
                ["sync", "--images", str(_images_md(tmp_path, upstream)), "--from", "127.0.0.1:9",
                 "--to", "127.0.0.1:9/x", "--from-insecure-registry", "--to-insecure-registry"]):
        proc = airgap(*cmd, "--attachments", "sbomz", check=False)
        assert proc.returncode != 0 and "'sbomz' is not all, none" in proc.stderr.strip().splitlines()[-1]
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "typo.tar").exists()


def _manifest_bytes(reg, repo: str, digest: str) -> bytes:
    resp = reg.client().get(reg.url(f"/v2/{repo}/manifests/{digest}"),
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert resp.status_code == 200, (repo, digest, resp.status_code)
    return resp.content


def _manifest_index(reg, repo: str, digest: str) -> bytes:
    resp = reg.client().get(reg.url(f"/v2/{repo}/manifests/{digest}"),
                            headers={"Accept": "application/vnd.oci.image.index.v1+json"})
    assert resp.status_code == 200, (repo, digest, resp.status_code)
    return resp.content


def _verify_relocated(tools: dict, upstream: dict, repo: str, tmp: Path) -> None:
    """What a cluster admission check or an auditor does at the target: offline, with the upstream key."""
    pub = str(upstream["pub"])
    cosign(tools, "verify", "--key", pub, "--insecure-ignore-tlog", "--offline", "--allow-http-registry",
           f"{repo}@{upstream['digest']}", cwd=tmp)
    cosign(tools, "verify", "--key", pub, "--insecure-ignore-tlog", "--offline", "--allow-http-registry",
           f"{repo}@{upstream['spdx']}", cwd=tmp)  # the SBOM's own signature
    cosign(tools, "verify-attestation", "--new-bundle-format", "--trusted-root", str(tools["root"]), "--key", pub,
           "--insecure-ignore-tlog", "--allow-http-registry", "--type", "spdxjson", f"{repo}@{upstream['digest']}",
           cwd=tmp)


def test_load_relocates_through_the_tag_schema_merging_with_what_is_there(tools, upstream, carried, registry_factory,
                                                                          tmp_path):
    out, _, listed = carried
    src, dst = upstream["registry"], registry_factory()
    # someone else's referrer on the target already: our load must keep it in the index
    subprocess.run(["skopeo", "copy", "--all", "--dest-tls-verify=false", "--preserve-digests",
                    f"oci:{upstream['layout']}:app", f"docker://{dst.host}/inner/app:0.9"],
                   check=True, capture_output=True)
    theirs = _oras_attach(tools, f"{dst.host}/inner/app@{upstream['digest']}", "x/scan-report", "scan.txt", b"ok",
                          tmp_path)
    report = load_report(out, dst, "inner", "--naming", "flat", "--values-out", str(tmp_path / "v.yaml"))
    assert {a["digest"] for a in report["attachments"] + report["signatures"]} == {a["digest"] for a in listed}

    repo = f"{dst.host}/inner/app"
    assert discover(tools, f"{repo}@{upstream['digest']}", tmp_path) == \
        discover(tools, f"{upstream['repo']}@{upstream['digest']}", tmp_path) | {theirs}
    assert discover(tools, f"{repo}@{upstream['platform']}", tmp_path) == {upstream["cdx"]}
    for a in listed:  # byte for byte: same digests, same bytes, cosign tags kept
        assert _manifest_bytes(dst, "inner/app", a["digest"]) == _manifest_bytes(src, "site/app", a["digest"])
        if a.get("tag"):
            assert dst.manifest_digest("inner/app", a["tag"]) == a["digest"]
    _verify_relocated(tools, upstream, repo, tmp_path)

    again = load_report(out, dst, "inner", "--naming", "flat", "--values-out", str(tmp_path / "v.yaml"))
    assert again["manifests_pushed"] == 0 and again["blobs_uploaded"] == 0


def test_load_relocates_through_the_referrers_api_without_tags(tools, upstream, carried, referrers_registry, tmp_path):
    out, _, listed = carried
    api = referrers_registry
    load_report(out, api, "inner", "--naming", "flat", "--values-out", str(tmp_path / "v.yaml"))
    repo = f"{api.host}/inner/app"
    import httpx
    tags = httpx.get(f"http://{api.host}/v2/inner/app/tags/list").json()["tags"]
    # the image's tag and the cosign .sig tag of the SBOM: no sha256-<hex> index was needed
    assert not [t for t in tags if t.startswith("sha256-") and not t.endswith(".sig")], tags
    assert {e["digest"] for e in api.listed[("inner/app", upstream["digest"])].values()} == \
        {upstream["bundle"], upstream["spdx"]}
    assert discover(tools, f"{repo}@{upstream['digest']}", tmp_path, api=True) == {upstream["bundle"], upstream["spdx"]}
    assert discover(tools, f"{repo}@{upstream['platform']}", tmp_path, api=True) == {upstream["cdx"]}
    _verify_relocated(tools, upstream, repo, tmp_path)

    # and a registry with the API is a source like any other: the next bundle finds them through it
    queries = api.queries
    md = write_images_md(tmp_path / "FROM-API.md", "1.0", [{"name": "app", "source": f"{repo}:1.0"}])
    airgap("bundle", "--images", str(md), "-o", str(tmp_path / "again.tar"), "--no-chart", "--insecure-registry",
           "--store", str(tmp_path / "store"))
    again = json.loads(airgap("inspect", str(tmp_path / "again.tar"), "--json").stdout)["images"][0]["attachments"]
    assert api.queries > queries
    assert {(a["digest"], a["subject"], a["artifactType"]) for a in again} == \
        {(a["digest"], a["subject"], a["artifactType"]) for a in listed}


def test_signed_bundle_our_signature_takes_the_sig_tag_and_verify_checks_attachments(tools, upstream, tmp_path,
                                                                                      registry_factory):
    airgap("keygen", "--output-key-prefix", str(tmp_path / "ours"), env={"COSIGN_PASSWORD": "ours"})
    out, _ = _bundle(tmp_path, upstream, "--key", str(tmp_path / "ours.key"))
    listed = json.loads(airgap("inspect", str(out), "--json").stdout)["images"][0]["attachments"]
    # the upstream's legacy .sig of the image stays behind (our .sig takes that tag); the rest travels
    assert not [a for a in listed if a["subject"] == upstream["digest"] and a.get("tag")]
    assert {upstream["bundle"], upstream["spdx"], upstream["cdx"]} <= {a["digest"] for a in listed}
    doc = json.loads(airgap("verify", str(out), "--key", str(tmp_path / "ours.pub"), "--json").stdout)
    assert doc["images"][0]["attachments"] == len(listed)
    dst = registry_factory()
    load_report(out, dst, "inner", "--naming", "flat", "--values-out", str(tmp_path / "v.yaml"),
                key=tmp_path / "ours.pub")
    repo = f"{dst.host}/inner/app"
    cosign(tools, "verify", "--key", str(tmp_path / "ours.pub"), "--insecure-ignore-tlog", "--offline",
           "--allow-http-registry", f"{repo}@{upstream['digest']}", cwd=tmp_path)
    cosign(tools, "verify-attestation", "--new-bundle-format", "--trusted-root", str(tools["root"]), "--key",
           str(upstream["pub"]), "--insecure-ignore-tlog", "--allow-http-registry", "--type", "spdxjson",
           f"{repo}@{upstream['digest']}", cwd=tmp_path)


def test_inventory_counts_attachments_and_a_delta_ships_only_the_new_ones(tools, upstream, registry_factory,
                                                                         tmp_path):
    """Release after release: the target's inventory lists what it holds, attachments included; the
    next bundle, a delta against it, carries every attachment manifest but only blobs the target lacks."""
    src, dst = upstream["registry"], registry_factory()
    layout = tmp_path / "layout"
    digest = add_image(layout, "other", layers=[LayerSpec(size=1 << 18, seed=41)])
    subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", "--preserve-digests", f"oci:{layout}:other",
                    f"docker://{src.host}/site/other:2.0"], check=True, capture_output=True)
    first = _oras_attach(tools, f"{src.host}/site/other@{digest}", SPDX, "a.spdx.json", b'{"n":1}', tmp_path)
    md = write_images_md(tmp_path / "OTHER.md", "2.0", [{"name": "other", "source": f"{src.host}/site/other:2.0"}])

    def bundle(name: str, *extra: str) -> Path:
        airgap("bundle", "--images", str(md), "-o", str(tmp_path / name), "--no-chart", "--insecure-registry",
               "--store", str(tmp_path / "store"), *extra)
        return tmp_path / name

    load_report(bundle("full.tar"), dst, "inner", "--naming", "flat", "--values-out", str(tmp_path / "v.yaml"))
    inv = tmp_path / "inventory.json"
    summary = json.loads(airgap("inventory", "--registry", f"{dst.host}/inner", "--insecure-registry", "-o", str(inv),
                                "--json").stdout)
    assert summary["attachments"] == 1
    assert [a["digest"] for a in json.loads(inv.read_text())["attachments"]["inner/other"]] == [first]

    payload = b'{"bomFormat":"CycloneDX","n":2}'
    second = _oras_attach(tools, f"{src.host}/site/other@{digest}", CYCLONEDX, "b.cdx.json", payload, tmp_path)
    delta = bundle("delta.tar", "--base", str(inv))
    m = json.loads(airgap("inspect", str(delta), "--json").stdout)
    assert {a["digest"] for a in m["images"][0]["attachments"]} == {first, second}
    with tarfile.open(delta) as tf:
        members = set(tf.getnames())
    image_blobs = [b for b in json.loads(_manifest_bytes(src, "site/other", digest))["layers"]]
    assert not any(f"oci/blobs/sha256/{b['digest'].split(':')[1]}" in members for b in image_blobs)
    assert f"oci/blobs/sha256/{hashlib.sha256(payload).hexdigest()}" in members   # the new SBOM's content
    load_report(delta, dst, "inner", "--naming", "flat", "--values-out", str(tmp_path / "v.yaml"))
    assert discover(tools, f"{dst.host}/inner/other@{digest}", tmp_path) == {first, second}


# -- immutable targets ------------------------------------------------------------------------------

ADMIN = {"AIRGAP_REGISTRY_USERNAME": "admin", "AIRGAP_REGISTRY_PASSWORD": "Harbor12345-test"}


@pytest.fixture
def harbor(harbor_factory):
    return harbor_factory({"admin": ADMIN["AIRGAP_REGISTRY_PASSWORD"]})[0]

def test_immutable_ecr_takes_each_index_once_and_a_rerun_pushes_nothing(tools, upstream, carried, ecr,  # noqa: F811
                                                                        tmp_path):
    out, _, listed = carried
    ecr.ecr.create_repository(repositoryName="imm/app", imageTagMutability="IMMUTABLE")
    args = ["--registry", f"{ecr.data.host}/imm", "--insecure-registry", "--target", "ecr", "--naming", "flat",
            "--values-out", str(tmp_path / "v.yaml")]
    first = json.loads(airgap("load", "--insecure-skip-verify", str(out), *args, "--json", env=ecr_env(ecr)).stdout)
    assert {a["digest"] for a in first["attachments"] + first["signatures"]} == {a["digest"] for a in listed}
    index = ecr.registry.manifest_digest("imm/app", f"sha256-{upstream['digest'].split(':')[1]}")
    assert index  # written once, listing both referrers of the index
    again = json.loads(airgap("load", "--insecure-skip-verify", str(out), *args, "--json", env=ecr_env(ecr)).stdout)
    assert again["manifests_pushed"] == 0
    assert ecr.registry.manifest_digest("imm/app", f"sha256-{upstream['digest'].split(':')[1]}") == index
    entries = json.loads(_manifest_index(ecr.registry, "imm/app", index))["manifests"]
    assert {e["digest"] for e in entries} == {upstream["bundle"], upstream["spdx"]}


def test_immutable_harbor_second_release_never_rewrites_a_tag(tools, upstream, carried, harbor, tmp_path):
    out, _, listed = carried
    harbor.projects.add("frozen")
    harbor.immutable.add("frozen")
    load_report(out, harbor, "frozen", "--naming", "flat", "--values-out", str(tmp_path / "v.yaml"), env=ADMIN)
    # release 1.1, nothing new upstream: the index tags are there already, nothing is rewritten
    again, _ = _bundle(tmp_path, upstream, release="1.1", name="again.tar")
    report = load_report(again, harbor, "frozen", "--naming", "flat", "--values-out", str(tmp_path / "v.yaml"),
                         env=ADMIN)
    assert all(a["status"] == "present" for a in report["attachments"] + report["signatures"])

    # upstream publishes one more SBOM for the same image: its index would have to move on a frozen tag
    # (this test runs last in the module: it changes the shared upstream)
    _oras_attach(tools, f"{upstream['repo']}@{upstream['digest']}", "application/vnd.example.vex+json",
                 "vex.json", b'{"vex":1}', tmp_path)
    newer, _ = _bundle(tmp_path, upstream, release="1.2", name="newer.tar")
    proc = run_load(newer, harbor, "frozen", "--naming", "flat", "--values-out", str(tmp_path / "v.yaml"),
                    env=ADMIN, check=False)
    assert proc.returncode != 0
    line = proc.stderr.strip().splitlines()[-1]   # progress notes first, then the one error line
    tag = f"sha256-{upstream['digest'].split(':')[1]}"
    assert "image app" in line and tag in line and "Nothing was pushed" in line, line
    # what the site can do about it: take only the signatures (all there already), leaving the new one behind
    ok = load_report(newer, harbor, "frozen", "--naming", "flat", "--attachments", "signatures",
                     "--values-out", str(tmp_path / "v.yaml"), env=ADMIN)
    assert ok["manifests_pushed"] == 0
