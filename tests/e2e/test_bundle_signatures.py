"""Sigstore-bundle image signatures (cosign v3's format) with the real cosign, offline.

- `airgap bundle --signature-format both|bundle` signs with legacy ``.sig`` tags and/or Sigstore-bundle
  referrers; after `airgap load` into real Distribution (no referrers API: the referrers tag schema),
  Debian trixie's cosign 2.5 accepts the relocated bundle signatures with the key
  (``verify-attestation --new-bundle-format --type https://sigstore.dev/cosign/sign/v1``: cosign 2.5's
  ``verify`` reads only the legacy format, "bundle support for image signatures is not yet implemented"),
  and ``cosign verify`` still accepts the legacy ones; ``oras discover`` lists the referrer.
- A bundle signature cosign 2.5 made (``attest --new-bundle-format --tlog-upload=false`` with cosign v3's
  sign predicate, the closest 2.5 comes to v3 ``sign``) verifies with our code, found through the tag
  schema although cosign lists it there with ``artifactType: application/vnd.oci.empty.v1+json``.
Every cosign call passes ``--offline``/``--tlog-upload=false`` and an empty trusted root: no TUF, no Rekor.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airgap.model import Digest
from airgap.places.registry import RegistryStore
from airgap.registry.client import RegistryClient, RegistryOptions
from airgap.sign import keys
from airgap.sign.formats import SigstoreBundle, find_verified
from airgap.sign.sigstore_bundle import BUNDLE_V03
from helpers import airgap, assert_upstream_refused, demo_images_md, demo_layout, load_json, run_load, trixie_tool

PASSWORD = "correct horse battery staple"
EMPTY_ROOT = {"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1", "tlogs": [],
              "certificateAuthorities": [], "ctlogs": [], "timestampAuthorities": []}
SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"


@pytest.fixture(scope="module")
def cosign() -> str:
    return trixie_tool("cosign")


@pytest.fixture(scope="module")
def oras() -> str:
    return trixie_tool("oras")


@pytest.fixture(scope="module")
def keypair(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    airgap("keygen", "--output-key-prefix", str(d / "cosign"), env={"COSIGN_PASSWORD": PASSWORD})
    (d / "empty-root.json").write_text(json.dumps(EMPTY_ROOT))
    return d / "cosign.key", d / "cosign.pub"


def _cosign(cosign: str, tmp: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOME": str(tmp), "COSIGN_PASSWORD": PASSWORD, "TUF_ROOT": str(tmp / "tuf")}
    proc = subprocess.run([cosign, *args], capture_output=True, text=True, env=env, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-500:]
    return proc


def _bundle(tmp: Path, keypair, fmt: str) -> tuple[Path, dict[str, str]]:
    layout = tmp / "src"
    digests = demo_layout(layout)
    out = tmp / f"bundle-{fmt}.tar"
    airgap("bundle", "--images", str(demo_images_md(tmp, layout)), "-o", str(out), "--no-chart",
           "--store", str(tmp / "store"), "--key", str(keypair[0]), "--signature-format", fmt,
           env={"COSIGN_PASSWORD": PASSWORD})
    return out, digests


def test_both_formats_travel_verify_and_are_accepted_by_real_cosign_after_load(tmp_path, keypair, registry,
                                                                               cosign, oras):
    bundle, _ = _bundle(tmp_path, keypair, "both")
    manifest = json.loads(airgap("inspect", str(bundle), "--json").stdout)
    images = {i["name"]: i for i in manifest.get("manifest", manifest)["images"]}
    opensearch = images["opensearch"]
    # The index and both platform manifests, in each format.
    assert len(opensearch["signatures"]) == 3 and len(opensearch["bundleSignatures"]) == 3
    report = load_json("verify", "--key", str(keypair[1]), str(bundle))
    assert {i["name"]: i["signatures_verified"] for i in report["images"]}["opensearch"] == 6

    run_load(bundle, registry, "haystack", "--values-out", str(tmp_path / "out" / "values.yaml"), key=keypair[1])
    ref = f"{registry.host}/haystack/opensearch:2.18.0"
    out = _cosign(cosign, tmp_path, "verify-attestation", "--new-bundle-format", "--key", str(keypair[1]),
                  "--type", SIGN_PREDICATE, "--insecure-ignore-tlog", "--offline", "--allow-http-registry",
                  "--trusted-root", str(keypair[1].parent / "empty-root.json"), ref)
    statement = _payload(out.stdout)
    assert statement["predicateType"] == SIGN_PREDICATE
    assert statement["subject"][0]["digest"]["sha256"] == opensearch["digest"].split(":")[1]
    _cosign(cosign, tmp_path, "verify", "--key", str(keypair[1]), "--insecure-ignore-tlog", "--offline",
            "--allow-http-registry", ref)
    # A platform manifest's signature travelled too, as a referrer of that manifest.
    child = opensearch["bundleSignatures"][1]["signed"]
    _cosign(cosign, tmp_path, "verify-attestation", "--new-bundle-format", "--key", str(keypair[1]),
            "--type", SIGN_PREDICATE, "--insecure-ignore-tlog", "--offline", "--allow-http-registry",
            "--trusted-root", str(keypair[1].parent / "empty-root.json"),
            f"{registry.host}/haystack/opensearch@{child}")
    discovered = subprocess.run([oras, "discover", "--plain-http", "--format", "json",
                                 f"{registry.host}/haystack/opensearch@{opensearch['digest']}"],
                                capture_output=True, text=True, check=True).stdout
    types = {m.get("artifactType") for m in json.loads(discovered).get("manifests", json.loads(discovered)
                                                                        .get("referrers", []))}
    assert BUNDLE_V03 in types
    # Another key is refused by cosign too: the check is real.
    other = tmp_path / "other"
    airgap("keygen", "--output-key-prefix", str(other), env={"COSIGN_PASSWORD": PASSWORD})
    refused = _cosign(cosign, tmp_path, "verify-attestation", "--new-bundle-format", "--key", f"{other}.pub",
                      "--type", SIGN_PREDICATE, "--insecure-ignore-tlog", "--offline", "--allow-http-registry",
                      "--trusted-root", str(keypair[1].parent / "empty-root.json"), ref, check=False)
    assert refused.returncode != 0


def _payload(stdout: str) -> dict:
    """The in-toto statement of the first DSSE envelope `cosign verify-attestation` prints."""
    import base64
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            return json.loads(base64.b64decode(json.loads(line)["payload"]))
    raise AssertionError(f"no envelope in {stdout[:500]!r}")


def _bundle_signatures(bundle: Path) -> dict[str, list[str]]:
    manifest = json.loads(airgap("inspect", str(bundle), "--json").stdout)
    return {i["name"]: [s["digest"] for s in i.get("bundleSignatures", [])] for i in manifest["images"]}


def test_bundle_only_signatures_load_and_verify_without_any_sig_tag(tmp_path, keypair, registry):
    bundle, digests = _bundle(tmp_path, keypair, "bundle")
    report = load_json("verify", "--key", str(keypair[1]), str(bundle))
    assert all(i["signatures_verified"] >= 1 for i in report["images"])
    # Kept by digest and key: the next bundle of the same images carries the same referrers (ECDSA is
    # randomised; a new signature per release would pile up referrers on the target).
    again = tmp_path / "again.tar"
    airgap("bundle", "--images", str(tmp_path / "IMAGES.md"), "-o", str(again), "--no-chart", "--store",
           str(tmp_path / "store"), "--key", str(keypair[0]), "--signature-format", "bundle",
           env={"COSIGN_PASSWORD": PASSWORD})
    assert _bundle_signatures(again) == _bundle_signatures(bundle)
    assert all(len(v) >= 1 for v in _bundle_signatures(bundle).values())
    run_load(bundle, registry, "haystack", "--values-out", str(tmp_path / "out" / "values.yaml"), key=keypair[1])
    client = RegistryClient(registry.host, RegistryOptions(insecure=True))
    try:
        store = RegistryStore(client, "haystack/haystack-query")
        digest = Digest.parse(digests["query"])
        assert store.resolve_tag(f"sha256-{digest.hex}.sig") is None  # no tag: immutable targets are safe
        verified, fmt, _ = find_verified([SigstoreBundle()], store, keys.load_public_key(keypair[1]), digest)
        assert fmt.name == "bundle" and verified.docker_reference == "localhost/haystack-query"
    finally:
        client.close()


def test_a_bundle_signature_cosign_made_verifies_with_our_code(tmp_path, keypair, registry, cosign):
    layout = tmp_path / "src"
    digests = demo_layout(layout)
    bundle = tmp_path / "plain.tar"
    airgap("bundle", "--images", str(demo_images_md(tmp_path, layout)), "-o", str(bundle), "--no-chart",
           "--store", str(tmp_path / "store"))
    run_load(bundle, registry, "up", "--values-out", str(tmp_path / "up" / "values.yaml"))
    digest = Digest.parse(digests["query"])
    predicate = tmp_path / "predicate.json"
    predicate.write_text("{}")
    _cosign(cosign, tmp_path, "attest", "--yes", "--new-bundle-format", "--tlog-upload=false",
            "--allow-http-registry", "--key", str(keypair[0]), "--type", SIGN_PREDICATE, "--predicate",
            str(predicate), f"{registry.host}/up/haystack-query@{digest}")
    client = RegistryClient(registry.host, RegistryOptions(insecure=True))
    try:
        store = RegistryStore(client, "up/haystack-query")
        found = SigstoreBundle().find(store, digest)
        assert len(found) == 1 and found[0].artifact_type == BUNDLE_V03
        verified = SigstoreBundle().verify(store, found[0], keys.load_public_key(keypair[1]), digest)
        assert verified.docker_reference == f"{registry.host}/up/haystack-query"
        with pytest.raises(Exception, match="does not verify with key"):
            SigstoreBundle().verify(store, found[0], keys.generate().public, digest)
    finally:
        client.close()


def test_upstream_signed_in_the_bundle_format_is_checked_at_bundle_time_and_again_offline(
        tmp_path, keypair, registry_factory, cosign):
    """verify: {key: vendor.pub} on an upstream that cosign signed the v3 way (a Sigstore-bundle referrer,
    no .sig tag): bundled, the signature and key travel, `airgap verify` checks them again."""
    from helpers import write_images_md

    upstream = registry_factory()
    layout = tmp_path / "src"
    digests = demo_layout(layout)
    for name in ("query", "impostor"):
        subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", "--preserve-digests", f"oci:{layout}:query",
                        f"docker://{upstream.host}/vendor/{name}:1.0"], check=True, capture_output=True)
    predicate = tmp_path / "predicate.json"
    predicate.write_text("{}")
    _cosign(cosign, tmp_path, "attest", "--yes", "--new-bundle-format", "--tlog-upload=false",
            "--allow-http-registry", "--key", str(keypair[0]), "--type", SIGN_PREDICATE, "--predicate",
            str(predicate), f"{upstream.host}/vendor/query@{digests['query']}")
    md = write_images_md(tmp_path / "IMAGES.md", "1.0.0", [
        {"name": "query", "source": f"{upstream.host}/vendor/query:1.0", "verify": f"{{key: {keypair[1]}}}"}])
    out = tmp_path / "b.tar"
    airgap("bundle", "--images", str(md), "-o", str(out), "--no-chart", "--insecure-registry", "--store",
           str(tmp_path / "store"), "--key", str(keypair[0]), env={"COSIGN_PASSWORD": PASSWORD})
    manifest = json.loads(airgap("inspect", str(out), "--json").stdout)
    image = manifest.get("manifest", manifest)["images"][0]
    assert image["upstream"]["format"] == "bundle" and image["upstream"]["verified"] is True
    assert image["upstream"]["signer"] == keys.load_public_key(keypair[1]).fingerprint
    report = load_json("verify", "--key", str(keypair[1]), str(out))
    assert report["images"][0]["upstream"].startswith("bundle signature re-checked")

    # cosign's statement names the repository it signed: served under another name, it is refused.
    _copy_referrers(upstream.host, "vendor/query", "vendor/impostor", Digest.parse(digests["query"]))
    other = tmp_path / "other"
    airgap("keygen", "--output-key-prefix", str(other), env={"COSIGN_PASSWORD": PASSWORD})
    assert_upstream_refused(tmp_path, upstream.host, [("query", f"{other}.pub", "upstream signature rejected"),
                                                      ("impostor", str(keypair[1]), "upstream signature is for")])


def _copy_referrers(host: str, src_repo: str, dst_repo: str, subject: Digest) -> None:
    """A mirror serving the vendor's signature next to another name: the referrer and its tag-schema index."""
    from airgap.places.base import read_small

    client = RegistryClient(host, RegistryOptions(insecure=True))
    try:
        src, dst = RegistryStore(client, src_repo), RegistryStore(client, dst_repo)
        for att in SigstoreBundle().find(src, subject):
            manifest = src.fetch_manifest(str(att.digest))
            for blob in manifest.blobs():
                data = read_small(src, blob)
                dst.put_blob(blob, lambda data=data: iter([data]))
            dst.put_attachment(manifest, att)
    finally:
        client.close()


def _push_keyless_signature(host: str, repo: str, digest: Digest, bundle_json: bytes) -> None:
    """What `cosign sign` (v3, keyless) leaves in the registry: the bundle as a referrer of the image."""
    from airgap.model.attachment import Attachment
    from airgap.sign.sigstore_bundle import referrer_manifest

    client = RegistryClient(host, RegistryOptions(insecure=True))
    try:
        store = RegistryStore(client, repo)
        subject = store.fetch_manifest(str(digest)).descriptor
        manifest, blobs = referrer_manifest(bundle_json, subject)
        for desc in manifest.blobs():
            data = blobs[desc.digest]
            store.put_blob(desc, lambda data=data: iter([data]))
        store.put_attachment(manifest, Attachment.of(digest, manifest))
    finally:
        client.close()


@pytest.mark.skipif(not __import__("airgap.sign.keyless", fromlist=["x"]).available(),
                    reason="the sigstore package (keyless extra) is not installed")
def test_keyless_upstream_from_a_private_sigstore_end_to_end(tmp_path, keypair, registry_factory, registry):
    """A vendor signs keyless with its own Sigstore (CA, CT log and transparency log keys made here, its
    trusted_root.json): verify: identity + issuer + trusted-root passes at bundle time, the root travels,
    `airgap verify` and load check again offline; a wrong identity, issuer or root is refused."""
    from helpers import write_images_md
    from private_sigstore import PrivateSigstore

    from airgap.sign.dsse import make_statement

    upstream = registry_factory()
    layout = tmp_path / "src"
    digests = demo_layout(layout)
    subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", "--preserve-digests", f"oci:{layout}:query",
                    f"docker://{upstream.host}/vendor/query:1.0"], check=True, capture_output=True)
    vendor = PrivateSigstore(tmp_path / "vendor-sigstore")
    identity = "https://ci.vendor.example/pipelines/release@refs/tags/v1.0"
    issuer = "https://token.ci.vendor.example"
    digest = Digest.parse(digests["query"])
    _push_keyless_signature(upstream.host, "vendor/query", digest,
                            vendor.sign_dsse(make_statement(digest), identity, issuer))

    def bundle(verify: str, out: Path, check: bool = True):
        md = write_images_md(tmp_path / "IMAGES.md", "1.0.0", [
            {"name": "query", "source": f"{upstream.host}/vendor/query:1.0", "verify": verify}])
        return airgap("bundle", "--images", str(md), "-o", str(out), "--no-chart", "--insecure-registry",
                      "--store", str(tmp_path / "store"), "--key", str(keypair[0]), check=check,
                      env={"COSIGN_PASSWORD": PASSWORD})

    good = tmp_path / "b.tar"
    bundle(f"{{identity-regexp: 'https://ci\\.vendor\\.example/.+@refs/tags/v.+', issuer: {issuer}, "
           f"trusted-root: {vendor.trusted_root}}}", good)
    image = json.loads(airgap("inspect", str(good), "--json").stdout)["images"][0]
    assert image["upstream"]["format"] == "bundle"
    assert image["upstream"]["signer"] == f"keyless:{identity} @ {issuer}"
    # `airgap verify` checks the keyless signature again, with the trusted root from the bundle only.
    # No network at all (unshare -n): the check needs nothing but the bundle.
    vendor.trusted_root.unlink()
    proc = subprocess.run(["unshare", "-n", sys.executable, "-m", "airgap", "verify", "--key", str(keypair[1]),
                           str(good), "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["images"][0]["upstream"] == f"bundle signature re-checked: keyless:{identity} @ {issuer}"
    run_load(good, registry, "mirror", "--values-out", str(tmp_path / "out" / "values.yaml"), key=keypair[1])
    vendor.trusted_root.write_text(json.dumps(vendor.trusted_root_doc()))

    other = PrivateSigstore(tmp_path / "other-sigstore")
    for verify, words in (
            (f"{{identity: release@vendor.example, issuer: {issuer}, trusted-root: {vendor.trusted_root}}}",
             "certificate identity is"),
            (f"{{identity: '{identity}', issuer: https://accounts.google.com, trusted-root: {vendor.trusted_root}}}",
             "certificate issuer is"),
            (f"{{identity: '{identity}', issuer: {issuer}, trusted-root: {other.trusted_root}}}",
             "keyless signature rejected")):
        proc = bundle(verify, tmp_path / "c.tar", check=False)
        assert proc.returncode == 3 and words in proc.stderr and "image query" in proc.stderr, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("airgap: error:")]
        assert len(errors) == 1 and words in errors[0] and "Traceback" not in proc.stderr, proc.stderr
        assert not (tmp_path / "c.tar").exists()


def test_on_a_target_with_the_referrers_api_bundle_signatures_need_no_tag_at_all(tmp_path, keypair,
                                                                                   registry_factory, cosign):
    """Harbor >= 2.8 and ECR index referrers by subject: the load writes the bundle signature by digest
    only (no sha256-<hex> index, no .sig tag: nothing an immutable-tag rule could refuse), and both our
    verifier and cosign find it through the API (tests/support/referrers_standin.py in front of Distribution)."""
    import httpx
    from referrers_standin import ReferrersStandIn

    api = ReferrersStandIn(registry_factory().host)
    try:
        bundle, digests = _bundle(tmp_path, keypair, "bundle")
        run_load(bundle, api.host, "haystack", "--values-out", str(tmp_path / "out" / "values.yaml"),
                 key=keypair[1])
        tags = httpx.get(f"http://{api.host}/v2/haystack/haystack-query/tags/list").json()["tags"]
        assert tags == ["0.1.0"], tags
        client = RegistryClient(api.host, RegistryOptions(insecure=True))
        try:
            store = RegistryStore(client, "haystack/haystack-query")
            digest = Digest.parse(digests["query"])
            verified, _, _ = find_verified([SigstoreBundle()], store, keys.load_public_key(keypair[1]), digest)
            assert verified.digest == str(digest)
        finally:
            client.close()
        _cosign(cosign, tmp_path, "verify-attestation", "--new-bundle-format", "--key", str(keypair[1]),
                "--type", SIGN_PREDICATE, "--insecure-ignore-tlog", "--offline", "--allow-http-registry",
                "--trusted-root", str(keypair[1].parent / "empty-root.json"),
                f"{api.host}/haystack/haystack-query@{digest}")
    finally:
        api.stop()
