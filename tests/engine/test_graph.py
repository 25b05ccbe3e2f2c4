"""One content graph: an image reaches its attachments (signatures, SBOMs, signatures of SBOMs) through
the Store interface, and the copy engine carries them with it, byte for byte, in its order.

In-process tests drive the engine between OCI layouts; the end-to-end one writes referrers with the
real `oras attach` (Debian trixie's oras 1.2, scripts/install-trixie.sh) on real Distribution, which
has no referrers API, so oras keeps the referrers tag schema (`sha256-<hex>` index), and `airgap
sync` must carry them, keep the digests, and merge into an index already at the destination.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from airgap.copy import Attached, CopyEngine, CopyJob, select_attachments
from airgap.model import Descriptor, sha256_digest
from airgap.model.attachment import REFERRER, Attachment, classify, merge_referrers, referrers_tag
from airgap.model.manifest import ImageIndex, ImageManifest, build_index, parse_manifest
from airgap.model.mediatypes import MediaType
from airgap.places.layout import LayoutStore
from airgap.sign.formats import CosignLegacy, verify_any
from airgap.sign.keys import generate
from synth import LayerSpec, add_image
from helpers import airgap, trixie_tool, write_images_md

SBOM_TYPE = "application/spdx+json"
SIG_TYPE = "application/vnd.example.signature.v1+json"
BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
EMPTY = b"{}"


def _referrer(layout: LayoutStore, subject: ImageManifest | ImageIndex, artifact_type: str, payload: bytes,
              layer_type: str) -> ImageManifest:
    """An OCI 1.1 artifact manifest with a subject, its blobs written into ``layout`` (by digest only)."""
    for data in (EMPTY, payload):
        layout.put_blob(Descriptor("x", sha256_digest(data), len(data)), lambda data=data: iter([data]))
    doc = {"schemaVersion": 2, "mediaType": MediaType.OCI_MANIFEST, "artifactType": artifact_type,
           "config": {"mediaType": MediaType.OCI_EMPTY, "digest": str(sha256_digest(EMPTY)), "size": 2},
           "layers": [{"mediaType": layer_type, "digest": str(sha256_digest(payload)), "size": len(payload)}],
           "subject": subject.descriptor.to_json(), "annotations": {"org.opencontainers.image.created": "2026"}}
    m = parse_manifest(json.dumps(doc).encode())
    assert isinstance(m, ImageManifest)
    return m


def _attach(layout: LayoutStore, subject, artifact_type: str, payload: bytes, layer_type: str = "text/plain"):
    m = _referrer(layout, subject, artifact_type, payload, layer_type)
    layout.put_attachment(m, Attachment.of(subject.digest, m))
    return m


class Recording(LayoutStore):
    """A layout destination that records the order of manifest writes (what a registry would see)."""

    def __init__(self, root: Path):
        super().__init__(root, create=True)
        self.writes: list[tuple[str, str | None]] = []

    def put_manifest(self, manifest, tag=None):
        self.writes.append((str(manifest.digest), tag))
        super().put_manifest(manifest, tag)


def test_manifest_model_keeps_artifact_type_subject_and_annotations():
    subject = Descriptor(MediaType.OCI_MANIFEST, sha256_digest(b"img"), 3)
    doc = {"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX, "artifactType": SBOM_TYPE,
           "manifests": [], "subject": subject.to_json(), "annotations": {"a": "b"}}
    index = parse_manifest(json.dumps(doc).encode())
    assert isinstance(index, ImageIndex)
    assert index.subject == subject and index.artifact_type == SBOM_TYPE and index.annotations == {"a": "b"}
    entry = index.referrer_descriptor()
    assert entry.artifact_type == SBOM_TYPE and entry.to_json()["artifactType"] == SBOM_TYPE
    assert Descriptor.from_json(entry.to_json()).artifact_type == SBOM_TYPE
    bad = dict(doc, annotations={"a": 1})
    with pytest.raises(Exception, match="annotations"):
        parse_manifest(json.dumps(bad).encode())


def test_attachments_are_classified_by_their_own_manifest_not_the_index_entry(tmp_path):
    """cosign 2.5 lists its Sigstore-bundle referrer in the tag-schema index as the empty type."""
    store = LayoutStore(tmp_path / "l", create=True)
    image = store.fetch_manifest(add_image(tmp_path / "l", "app", layers=[LayerSpec(size=1 << 16, seed=7)]))
    m = _referrer(store, image, BUNDLE_TYPE, b'{"mediaType":"bundle"}', BUNDLE_TYPE)
    store.put_manifest(m)
    wrong = Descriptor.from_json({**m.descriptor.to_json(), "artifactType": MediaType.OCI_EMPTY})
    store.put_manifest(build_index([wrong]), referrers_tag(image.digest))
    [att] = store.attachments(image.digest)
    assert att.artifact_type == BUNDLE_TYPE == classify(m) and att.kind == "signature" and att.found_by == REFERRER
    assert select_attachments("signatures")(att) and not select_attachments("sbom")(att)
    assert select_attachments("none") is None and select_attachments(BUNDLE_TYPE)(att)


def test_tag_schema_merge_keeps_other_tools_entries_in_their_order():
    a = Descriptor.from_json({"mediaType": MediaType.OCI_MANIFEST, "digest": str(sha256_digest(b"a")), "size": 1,
                              "artifactType": "x/other", "annotations": {"by": "someone else"}})
    b = Descriptor(MediaType.OCI_MANIFEST, sha256_digest(b"b"), 1, artifact_type=SBOM_TYPE)
    first = merge_referrers(None, a)
    merged = merge_referrers(first, b)
    assert merged is not None and [d.digest for d in merged.manifests] == [a.digest, b.digest]
    assert json.loads(merged.data)["manifests"][0] == a.to_json()  # someone else's entry as it was
    assert merge_referrers(merged, b) is None  # listed already: nothing to write


def test_engine_carries_attachments_recursively_and_tags_the_image_last(tmp_path):
    src = LayoutStore(tmp_path / "src", create=True)
    digest = add_image(tmp_path / "src", "app", layers=[LayerSpec(size=1 << 16, seed=8)],
                       platforms=["linux/amd64", "linux/arm64"])
    root = src.fetch_manifest(digest)
    assert isinstance(root, ImageIndex)
    arm = src.fetch_manifest(str(root.manifests[1].digest))
    sbom = _attach(src, root, SBOM_TYPE, b'{"spdxVersion":"SPDX-2.3"}', SBOM_TYPE)
    sbom_sig = _attach(src, sbom, SIG_TYPE, b"signature of the sbom")  # an attachment of an attachment
    arm_sbom = _attach(src, arm, SBOM_TYPE, b'{"spdxVersion":"SPDX-2.3","arm":1}', SBOM_TYPE)
    key = generate()
    ours = CosignLegacy().sign(key, "example.com/app", root.digest)

    dst = Recording(tmp_path / "dst")
    foreign = _attach(dst, root, "x/scan-report", b"someone else's report")  # already at the destination
    dst.writes.clear()
    job = CopyJob("app", src, "app", dst, ["1.0"], attach=[Attached(ours.attachment, ours.store)],
                  discover=select_attachments("all"))
    report = CopyEngine(concurrency=1).copy([job])

    kinds = sorted((i.kind, i.digest) for i in report.images if i.kind != "image")
    assert kinds == sorted([("sbom", str(sbom.digest)), ("sbom", str(arm_sbom.digest)),
                            ("signature", str(ours.attachment.digest)), ("signature", str(sbom_sig.digest))])
    # byte for byte, the same digests, found the same way at the destination
    for m in (sbom, sbom_sig, arm_sbom):
        assert dst.blob_path(m.digest).read_bytes() == src.blob_path(m.digest).read_bytes()
    assert {a.digest for a in dst.attachments(root.digest)} == {sbom.digest, foreign.digest, ours.attachment.digest}
    assert [a.digest for a in dst.attachments(sbom.digest)] == [sbom_sig.digest]
    assert verify_any(CosignLegacy(), dst, key.public, root.digest).docker_reference == "example.com/app"
    # order: the image's tag is the very last write; every attachment before it, subjects first
    assert dst.writes[-1] == (str(root.digest), "1.0")
    order = [d for d, _ in dst.writes]
    assert order.index(str(root.digest)) < order.index(str(sbom.digest)) < order.index(str(sbom_sig.digest))
    assert order.index(str(arm.digest)) < order.index(str(arm_sbom.digest))

    # resume: a second copy finds everything there and writes nothing
    dst.writes.clear()
    again = CopyEngine(concurrency=1).copy([job])
    assert dst.writes == [] and {i.status for i in again.images} == {"present"}


def test_engine_without_discover_copies_only_what_the_job_names(tmp_path):
    src = LayoutStore(tmp_path / "src", create=True)
    root = src.fetch_manifest(add_image(tmp_path / "src", "app", layers=[LayerSpec(size=1 << 16, seed=7)]))
    _attach(src, root, SBOM_TYPE, b"{}", SBOM_TYPE)
    dst = LayoutStore(tmp_path / "dst", create=True)
    CopyEngine().copy([CopyJob("app", src, "app", dst, ["1"])])
    assert dst.attachments(root.digest) == [] and dst.resolve_tag("1") == root.digest


# -- end to end: oras attach on Distribution, airgap sync -------------------------------------------

@pytest.fixture(scope="module")
def oras() -> str:
    return trixie_tool("oras")


def _oras(oras: str, *args: str, cwd: Path) -> str:
    proc = subprocess.run([oras, *args, "--plain-http"], capture_output=True, text=True, cwd=cwd)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout


def _attach_with_oras(oras: str, ref: str, artifact_type: str, name: str, body: bytes, tmp: Path) -> str:
    (tmp / name).write_bytes(body)
    _oras(oras, "attach", "--no-tty", "--artifact-type", artifact_type, ref, f"{name}:text/plain",
          "--export-manifest", f"{name}.manifest.json", cwd=tmp)
    return str(sha256_digest((tmp / f"{name}.manifest.json").read_bytes()))


def _discover(oras: str, repo: str, digest: str, tmp: Path) -> set[tuple[str, str]]:
    """(artifactType, digest) of every referrer `oras discover` lists, recursively (its JSON is one level)."""
    out: set[tuple[str, str]] = set()
    doc = json.loads(_oras(oras, "discover", "--format", "json", f"{repo}@{digest}", cwd=tmp))
    for m in doc.get("manifests") or []:
        out.add((m.get("artifactType", ""), m["digest"]))
        out |= _discover(oras, repo, m["digest"], tmp)
    return out


def test_sync_carries_oras_referrers_byte_identical_and_merges_at_the_destination(tmp_path, registry_factory,
                                                                                  oras):
    src, dst = registry_factory(), registry_factory()
    layout = tmp_path / "layout"
    digest = add_image(layout, "app", layers=[LayerSpec(size=1 << 16, seed=7)])
    for reg, repo in ((src, "site/app"), (dst, "inner/app")):
        subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", "--preserve-digests", f"oci:{layout}:app",
                        f"docker://{reg.host}/{repo}:1.0"], check=True, capture_output=True)
    sbom = _attach_with_oras(oras, f"{src.host}/site/app@{digest}", SBOM_TYPE, "sbom.json", b'{"spdx":1}', tmp_path)
    sig = _attach_with_oras(oras, f"{src.host}/site/app@{sbom}", SIG_TYPE, "sig.txt", b"sbom signature", tmp_path)
    theirs = _attach_with_oras(oras, f"{dst.host}/inner/app@{digest}", "x/scan-report", "scan.txt", b"ok", tmp_path)
    # Distribution 2.8 has no referrers API: oras fell back to the tag schema
    assert f"sha256-{digest.split(':')[1]}" in src.tags("site/app")

    md = write_images_md(tmp_path / "SYNC.md", "1.0", [{"name": "app", "source": "oci:x:y", "tag": "1.0"}])
    report = json.loads(airgap("sync", "--images", str(md), "--from", f"{src.host}/site", "--to",
                               f"{dst.host}/inner", "--from-insecure", "--to-insecure", "--json").stdout)
    carried = {(a["kind"], a["digest"]) for a in report["attachments"] + report["signatures"]}
    assert carried == {("sbom", sbom), ("signature", sig)}, report

    found = _discover(oras, f"{dst.host}/inner/app", digest, tmp_path)
    assert found == {(SBOM_TYPE, sbom), (SIG_TYPE, sig), ("x/scan-report", theirs)}  # merged, theirs kept
    for d in (sbom, sig):
        a = src.client().get(src.url(f"/v2/site/app/manifests/{d}"), headers={"Accept": MediaType.OCI_MANIFEST})
        b = dst.client().get(dst.url(f"/v2/inner/app/manifests/{d}"), headers={"Accept": MediaType.OCI_MANIFEST})
        assert a.status_code == b.status_code == 200 and a.content == b.content

    again = json.loads(airgap("sync", "--images", str(md), "--from", f"{src.host}/site", "--to",
                              f"{dst.host}/inner", "--from-insecure", "--to-insecure", "--json").stdout)
    assert again["manifests_pushed"] == 0 and again["blobs_uploaded"] == 0
    assert all(i["status"] == "present" for i in again["images"] + again["attachments"] + again["signatures"])


def test_referrers_go_through_the_api_where_the_target_has_one_and_back_to_the_tag_schema(
        tmp_path, registry_factory, referrers_registry, oras):
    src, plain = registry_factory(), registry_factory()
    api = referrers_registry
    layout = tmp_path / "layout"
    digest = add_image(layout, "app", layers=[LayerSpec(size=1 << 16, seed=9)])
    subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", "--preserve-digests", f"oci:{layout}:app",
                    f"docker://{src.host}/site/app:1.0"], check=True, capture_output=True)
    sbom = _attach_with_oras(oras, f"{src.host}/site/app@{digest}", SBOM_TYPE, "sbom.json", b'{"spdx":2}', tmp_path)
    sig = _attach_with_oras(oras, f"{src.host}/site/app@{sbom}", SIG_TYPE, "sig.txt", b"sbom signature", tmp_path)
    md = write_images_md(tmp_path / "SYNC.md", "1.0", [{"name": "app", "source": "oci:x:y", "tag": "1.0"}])

    def sync(a: str, b: str) -> dict:
        return json.loads(airgap("sync", "--images", str(md), "--from", a, "--to", b, "--from-insecure",
                                 "--to-insecure", "--json").stdout)

    sync(f"{src.host}/site", f"{api.host}/mid")
    # the registry indexed them by subject (OCI-Subject): no tag-schema index was written there
    tags = httpx.get(f"http://{api.host}/v2/mid/app/tags/list").json()["tags"]
    assert tags == ["1.0"], tags
    assert {e["digest"] for e in api.listed[("mid/app", digest)].values()} == {sbom}
    assert {e["digest"] for e in api.listed[("mid/app", sbom)].values()} == {sig}
    listed = _oras(oras, "discover", "--distribution-spec", "v1.1-referrers-api", "--format", "json",
                   f"{api.host}/mid/app@{digest}", cwd=tmp_path)
    assert sbom in listed

    # read back through the API (discovery) and written where there is none, as a tag-schema index
    queries = api.queries
    report = sync(f"{api.host}/mid", f"{plain.host}/inner")
    assert api.queries > queries
    assert {a["digest"] for a in report["attachments"] + report["signatures"]} == {sbom, sig}
    assert _discover(oras, f"{plain.host}/inner/app", digest, tmp_path) == {(SBOM_TYPE, sbom), (SIG_TYPE, sig)}
