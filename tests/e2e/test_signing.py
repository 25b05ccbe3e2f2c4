"""Signing and verification: cosign's key and signature formats, a signed bundle, no push on failure.

Interop is checked against real cosign artefacts (keys and signatures cosign wrote, from
../shared/data/cosign-interop) and against Debian trixie's skopeo, whose containers/image verifies
and makes cosign signatures (scripts/install-trixie-skopeo.sh).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from airgap.model import Digest, sha256_digest
from airgap.places.registry import RegistryStore
from airgap.registry.client import RegistryClient, RegistryOptions
from airgap.sign import keys
from airgap.sign.cosign import SIGNATURE_ANNOTATION, SignatureError, signature_tag, verify_payload, \
    verify_signature_manifest
from helpers import REPO, airgap, assert_upstream_refused, demo_images_md, demo_layout, load_json, load_report, run_load

SHARED = REPO.parent / "shared" / "data" / "cosign-interop"
PASSWORD = "correct horse battery staple"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} is absent: no real cosign artefacts")


@pytest.fixture(scope="module")
def keypair(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    proc = airgap("keygen", "--output-key-prefix", str(d / "cosign"), env={"COSIGN_PASSWORD": PASSWORD})
    assert PASSWORD not in proc.stdout + proc.stderr
    return d / "cosign.key", d / "cosign.pub"


def _bundle(tmp_path, keypair, release="0.1.0", epoch=None, name="bundle.tar"):
    layout = tmp_path / "src"
    digests = demo_layout(layout)
    out = tmp_path / name
    env = {"COSIGN_PASSWORD": PASSWORD}
    if epoch:
        env["SOURCE_DATE_EPOCH"] = str(epoch)
    airgap("bundle", "--images", str(demo_images_md(tmp_path, layout, release)), "-o", str(out), "--no-chart",
           "--store", str(tmp_path / "store"), "--key", str(keypair[0]), env=env)
    return out, digests


# -- keys -----------------------------------------------------------------------------------------

def test_keygen_writes_cosign_format(keypair):
    priv, pub = keypair
    text = priv.read_text()
    assert text.startswith("-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----")
    body = json.loads(base64.b64decode("".join(text.splitlines()[1:-1])))
    assert body["kdf"] == {"name": "scrypt", "params": {"N": 32768, "r": 8, "p": 1}, "salt": body["kdf"]["salt"]}
    assert body["cipher"]["name"] == "nacl/secretbox"
    assert oct(priv.stat().st_mode & 0o777) == "0o600"
    k = keys.load_private_key(priv, PASSWORD.encode())
    assert k.public.fingerprint == keys.load_public_key(pub).fingerprint
    again = airgap("keygen", "--output-key-prefix", str(priv.with_suffix("")), env={"COSIGN_PASSWORD": "x"}, check=False)
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr


@needs_shared
def test_keys_written_by_cosign_load_and_sec1_is_rejected():
    for name in ("pemcosignkey.key", "pemsigstorekey.key"):
        k = keys.load_private_key(SHARED / name, b"hello")
        assert k.public.verify(k.sign(b"x"), b"x")
    with pytest.raises(keys.KeyError_, match="PKCS#8"):
        keys.load_private_key(SHARED / "pemcosigneckey.key", b"hello")
    with pytest.raises(keys.KeyError_, match="wrong password"):
        keys.load_private_key(SHARED / "pemcosignkey.key", b"nope")
    with pytest.raises(keys.KeyError_, match="public key"):
        keys.load_public_key(SHARED / "pemcosignkey.key")


def _dir_signatures(d: Path):
    for f in sorted(d.glob("signature-*")):
        raw = f.read_bytes()
        doc = json.loads(raw[raw.index(b"\n") + 1:])
        yield doc["mimeType"], base64.b64decode(doc["payload"]), doc.get("annotations", {}).get(SIGNATURE_ANNOTATION, "")


@needs_shared
@pytest.mark.parametrize("fixture, accepted", [
    ("dir-img-cosign-valid", True), ("dir-img-cosign-valid-2", True), ("dir-img-cosign-valid-with-tag", True),
    ("dir-img-cosign-mixed", True),  # one bad, one good signature: one good one is enough (cosign, containers/image)
    ("dir-img-cosign-manifest-digest-error", False), ("dir-img-cosign-modified-manifest", False),
    ("dir-img-cosign-other-attachment", False)])
def test_our_verifier_on_signatures_cosign_made(fixture, accepted):
    key = keys.load_public_key(SHARED / "cosign.pub")
    d = SHARED / fixture
    digest = sha256_digest((d / "manifest.json").read_bytes())
    ok = []
    for mime, payload, sig in _dir_signatures(d):
        if mime != "application/vnd.dev.cosign.simplesigning.v1+json":
            ok.append(False)
            continue
        try:
            verify_payload(payload, sig, key, digest)
            ok.append(True)
        except SignatureError:
            ok.append(False)
    assert any(ok) is accepted
    wrong = keys.load_public_key(SHARED / "cosign2.pub")
    for _, payload, sig in _dir_signatures(d):
        with pytest.raises(SignatureError):
            verify_payload(payload, sig, wrong, digest)


# -- signed bundles -------------------------------------------------------------------------------

def test_signed_bundle_verifies_offline_and_loads_with_signatures(tmp_path, keypair, registry):
    bundle, digests = _bundle(tmp_path, keypair)
    with tarfile.open(bundle) as tf:
        assert [m.name for m in tf.getmembers()[:2]] == ["airgap-bundle.json", "airgap-bundle.json.sig"]
    report = json.loads(airgap("verify", str(bundle), "--key", str(keypair[1]), "--json").stdout)
    assert report["verified"] and {i["name"] for i in report["images"]} == {"haystack-query", "haystack-indexing",
                                                                          "opensearch"}
    # index + 2 platform manifests for opensearch
    assert {i["name"]: i["signatures_verified"] for i in report["images"]}["opensearch"] == 3

    out = tmp_path / "site"
    res = load_report(bundle, registry, "haystack", "--values-out", str(out / "values.yaml"), key=str(keypair[1]))
    assert res["verified_by"].startswith("sha256:")
    assert signature_tag(digests["opensearch"]) in registry.tags("haystack/opensearch")
    policy = json.loads((out / "policy.json").read_text())
    rule = policy["transports"]["docker"][f"{registry.host}/haystack/opensearch"][0]
    assert rule["type"] == "sigstoreSigned" and rule["signedIdentity"]["dockerRepository"] == "localhost/opensearch"
    assert base64.b64decode(rule["keyData"]) == keypair[1].read_bytes()
    assert "kyverno.io/v1" in (out / "kyverno-policy.yaml").read_text()

    # The pushed signature verifies against the registry's copy of the image (what cosign verify does).
    v = _verify_in_registry(registry, "haystack/opensearch", digests["opensearch"], keys.load_public_key(keypair[1]))
    assert v.docker_reference == "localhost/opensearch"


def _verify_in_registry(registry, repo: str, digest: str, key: keys.PublicKey):
    """Fetch `sha256-<hex>.sig` for an image from the registry and verify it, as cosign verify does."""
    client = RegistryClient(registry.host, RegistryOptions(insecure=True))
    try:
        store = RegistryStore(client, repo)
        sig = store.fetch_manifest(signature_tag(digest))

        def read_blob(desc):
            with store.open_blob(desc) as chunks:
                return b"".join(chunks)
        return verify_signature_manifest(sig, read_blob, key, Digest.parse(digest))
    finally:
        client.close()


def _rejected(proc, registry, words):
    assert proc.returncode == 3, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("airgap: error:") and words in last, last
    assert "Traceback" not in proc.stderr
    assert registry.catalog() == []


def test_unsigned_bundle_or_wrong_key_pushes_nothing(tmp_path, keypair, registry):
    layout = tmp_path / "src"
    demo_layout(layout)
    unsigned = tmp_path / "unsigned.tar"
    airgap("bundle", "--images", str(demo_images_md(tmp_path, layout)), "-o", str(unsigned), "--no-chart",
           "--store", str(tmp_path / "s"))
    _rejected(run_load(unsigned, registry, "", key=str(keypair[1]), check=False), registry, "is not signed")
    no_key = airgap("load", str(unsigned), "--registry", registry.host, "--insecure-registry", check=False)
    assert no_key.returncode == 2 and "--key" in no_key.stderr and registry.catalog() == []

    signed, _ = _bundle(tmp_path, keypair, name="signed.tar")
    other = tmp_path / "other"
    airgap("keygen", "--output-key-prefix", str(other), env={"COSIGN_PASSWORD": "x"})
    _rejected(run_load(signed, registry, "", key=f"{other}.pub", check=False), registry, "does not verify")
    v = airgap("verify", str(signed), "--key", f"{other}.pub", check=False)
    assert v.returncode == 3


def _rewrite(bundle: Path, out: Path, change) -> Path:
    with tarfile.open(bundle) as src, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read()
            data = change(m.name, data)
            m.size = len(data)
            import io
            dst.addfile(m, io.BytesIO(data))
    return out


def test_tampered_manifest_or_swapped_image_pushes_nothing(tmp_path, keypair, registry):
    bundle, digests = _bundle(tmp_path, keypair)
    # A changed bundle manifest (someone edits the release) breaks the bundle signature.
    edited = _rewrite(bundle, tmp_path / "edited.tar",
                      lambda n, d: d.replace(b'"release": "0.1.0"', b'"release": "9.9.9"')
                      if n == "airgap-bundle.json" else d)
    _rejected(run_load(edited, registry, "", key=str(keypair[1]), check=False), registry, "does not verify")
    # One image's manifest swapped for another's under the same name: caught by its digest.
    q, i = digests["query"].split(":")[1], digests["indexing"].split(":")[1]
    with tarfile.open(bundle) as tf:
        other = tf.extractfile(f"oci/blobs/sha256/{i}").read()
    swapped = _rewrite(bundle, tmp_path / "swapped.tar",
                       lambda n, d: other if n == f"oci/blobs/sha256/{q}" else d)
    _rejected(run_load(swapped, registry, "", key=str(keypair[1]), check=False), registry, "tampered")


def test_tampered_layer_pushes_nothing(tmp_path, keypair, registry):
    bundle, _ = _bundle(tmp_path, keypair)
    from airgap.bundle.reader import BundleReader
    r = BundleReader(bundle)
    name, member = max(((n, m) for n, m in r.members.items() if n.startswith("oci/blobs/")), key=lambda x: x[1].size)
    with open(bundle, "r+b") as fh:
        fh.seek(member.offset + 10)
        fh.write(b"X")
    _rejected(run_load(bundle, registry, "", key=str(keypair[1]), check=False), registry, "corrupt or tampered")
    assert airgap("verify", str(bundle), "--key", str(keypair[1]), check=False).returncode == 3


def test_replayed_older_bundle_is_refused(tmp_path, keypair, registry):
    new, _ = _bundle(tmp_path / "new", keypair, release="0.2.0", epoch=1_800_000_000)
    old, _ = _bundle(tmp_path / "old", keypair, release="0.1.0", epoch=1_700_000_000)
    args = ["--registry", f"{registry.host}/rag", "--insecure-registry", "--key", str(keypair[1]),
            "--values-out", str(tmp_path / "v.yaml")]
    load_json("load", str(new), *args)
    before = {r: registry.tags(r) for r in registry.catalog()}
    proc = airgap("load", str(old), *args, check=False)
    assert proc.returncode == 3
    assert "release 0.1.0" in proc.stderr and "older than release 0.2.0" in proc.stderr and "--allow-downgrade" in proc.stderr
    assert {r: registry.tags(r) for r in registry.catalog()} == before
    ok = load_json("load", str(old), *args, "--allow-downgrade")
    assert ok["images"]
    # the record still names the newest release: a second replay is refused again
    assert airgap("load", str(old), *args, check=False).returncode == 3


# -- interop with containers/image (Debian trixie's skopeo) ----------------------------------------

@pytest.fixture(scope="module")
def trixie_skopeo():
    proc = subprocess.run(["bash", str(REPO / "scripts/install-trixie-skopeo.sh")], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"Debian trixie's skopeo could not be installed here: {proc.stderr.strip()[-300:]}")
    return proc.stdout.strip().splitlines()[-1]


def test_skopeo_accepts_our_signatures_and_rejects_tampered(tmp_path, keypair, registry_factory, trixie_skopeo):
    registry = registry_factory()
    bundle, digests = _bundle(tmp_path, keypair)
    site = tmp_path / "site"
    load_report(bundle, registry, "haystack", "--values-out", str(site / "values.yaml"), key=str(keypair[1]))
    env = dict(os.environ, HOME=str(tmp_path))
    base = [trixie_skopeo, "--policy", str(site / "policy.json"), "--registries.d", str(site / "registries.d")]
    for name, tag in (("opensearch", "2.18.0"), ("haystack-query", "0.1.0")):
        ok = subprocess.run(base + ["copy", "--src-tls-verify=false", "--all",
                                    f"docker://{registry.host}/haystack/{name}:{tag}", f"dir:{tmp_path / name}"],
                            capture_output=True, text=True, env=env)
        assert ok.returncode == 0, ok.stderr
    # Tamper: the query tag now points at the indexing image (validly signed, but for another identity
    # and digest): containers/image refuses it.
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--preserve-digests",
                    f"docker://{registry.host}/haystack/haystack-indexing:0.1.0",
                    f"docker://{registry.host}/haystack/haystack-query:0.1.0"], check=True, capture_output=True)
    bad = subprocess.run(base + ["copy", "--src-tls-verify=false",
                                 f"docker://{registry.host}/haystack/haystack-query:0.1.0", f"dir:{tmp_path / 'bad'}"],
                         capture_output=True, text=True, env=env)
    assert bad.returncode != 0 and "signature" in bad.stderr.lower()


def test_we_accept_signatures_skopeo_makes_with_our_key(tmp_path, keypair, registry, trixie_skopeo):
    layout = tmp_path / "src"
    digests = demo_layout(layout)
    proc = _skopeo_sign(trixie_skopeo, keypair[0], tmp_path, f"oci:{layout}:query", registry.host, "app/query:1")
    assert proc.returncode == 0, proc.stderr
    v = _verify_in_registry(registry, "app/query", digests["query"], keys.load_public_key(keypair[1]))
    assert v.docker_reference == f"{registry.host}/app/query:1"  # skopeo signs the reference with its tag
    with pytest.raises(SignatureError):
        _verify_in_registry(registry, "app/query", digests["query"], keys.generate().public)


def _skopeo_sign(skopeo: str, key: Path, tmp: Path, src: str, host: str, dest: str,
                 check: bool = False) -> subprocess.CompletedProcess:
    """Push `src` to host/dest with containers/image signing it by our key (sigstore attachments on)."""
    pw = tmp / "pw"
    pw.write_text(PASSWORD)
    regd = tmp / f"registries.d-{host.replace(':', '_')}"
    regd.mkdir(exist_ok=True)
    (regd / "t.yaml").write_text(f"docker:\n  {host}:\n    use-sigstore-attachments: true\n")
    return subprocess.run([skopeo, "--registries.d", str(regd), "copy", "--dest-tls-verify=false",
                           "--preserve-digests", "--sign-by-sigstore-private-key", str(key),
                           "--sign-passphrase-file", str(pw), src, f"docker://{host}/{dest}"],
                          capture_output=True, text=True, check=check, env=dict(os.environ, HOME=str(tmp)))


def test_upstream_signature_is_checked_at_bundle_time(tmp_path, keypair, registry_factory, trixie_skopeo):
    """An IMAGES.md entry with verify: {key: upstream.pub}: bundled only if the upstream's signature holds."""
    upstream = registry_factory()
    layout = tmp_path / "src"
    digests = demo_layout(layout)
    _skopeo_sign(trixie_skopeo, keypair[0], tmp_path, f"oci:{layout}:query", upstream.host, "vendor/query:1.0",
                 check=True)
    subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", "--preserve-digests", f"oci:{layout}:indexing",
                    f"docker://{upstream.host}/vendor/unsigned:1.0"], check=True, capture_output=True)
    from helpers import write_images_md
    md = write_images_md(tmp_path / "IMAGES.md", "1.0.0", [
        {"name": "query", "source": f"{upstream.host}/vendor/query:1.0", "verify": f"{{key: {keypair[1]}}}"}])
    out = tmp_path / "b.tar"
    res = json.loads(airgap("bundle", "--images", str(md), "-o", str(out), "--no-chart", "--insecure-registry",
                            "--store", str(tmp_path / "store"), "--json").stdout)
    assert res["images"][0]["digest"] == digests["query"]
    manifest = json.loads(airgap("inspect", str(out), "--json").stdout)
    assert manifest["images"][0]["upstream"]["verified"] is True

    # The vendor's signature for query, served (with the image) under another name: refused.
    sig = "sha256-" + digests["query"].split(":")[1] + ".sig"
    for tag in ("1.0", sig):
        subprocess.run(["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--preserve-digests",
                        f"docker://{upstream.host}/vendor/query:{tag}", f"docker://{upstream.host}/vendor/impostor:{tag}"],
                       check=True, capture_output=True)
    other = tmp_path / "other"
    airgap("keygen", "--output-key-prefix", str(other), env={"COSIGN_PASSWORD": "x"})
    assert_upstream_refused(tmp_path, upstream.host, [("query", f"{other}.pub", "upstream signature rejected"),
                                                      ("unsigned", str(keypair[1]), "has no cosign signature"),
                                                      ("impostor", str(keypair[1]), "upstream signature is for")])
