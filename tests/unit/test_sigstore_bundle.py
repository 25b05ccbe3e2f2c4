"""The Sigstore-bundle signature format (cosign v3): our key-based bundles, and keyless verification of
real public-good bundles offline.

tests/data/sigstore/ holds published vectors, copied unchanged (Apache-2.0):
- from sigstore/sigstore-conformance test/assets/bundle-verify/ (commit a73de49): ``a.txt``;
  ``happy-path-intoto-in-dsse-v3`` -> dsse-v3-happy.sigstore.json (public-good production Fulcio and Rekor v1);
  ``rekor2-dsse-happy-path`` -> rekor2-dsse-happy.sigstore.json and its trusted_root.json (staging, Rekor v2
  with a signed timestamp); ``dsse-invalid-sig_fail`` and ``dsse-mismatch-envelope_fail``;
- from sigstore/sigstore-python sigstore/_store/https%3A%2F%2Ftuf-repo-cdn.sigstore.dev/trusted_root.json
  (commit 27db13d) -> public-good.trusted_root.json, the production trusted root those vectors chain to.
Their signer is the conformance suite's GitHub Actions beacon workflow.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from airgap.errors import InputError, SignatureError
from airgap.model import Descriptor, sha256_digest
from airgap.model.mediatypes import MediaType
from airgap.places.memory import MemoryStore
from airgap.sign import keys
from airgap.sign.dsse import check_signs_image, make_statement, parse_statement
from airgap.sign.formats import CosignLegacy, SigstoreBundle, find_verified, signature_formats
from airgap.sign.keyless import KeylessTrust, verify_bundle
from airgap.sign.sigstore_bundle import BUNDLE_V03, BundleKeeper, make_bundle

DATA = Path(__file__).resolve().parents[1] / "data" / "sigstore"
BEACON = ("https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/"
          "extremely-dangerous-oidc-beacon.yml@refs/heads/main")
GITHUB = "https://token.actions.githubusercontent.com"
PUBLIC_GOOD = DATA / "public-good.trusted_root.json"
A_TXT = sha256_digest((DATA / "a.txt").read_bytes())

needs_sigstore = pytest.mark.skipif(
    not __import__("airgap.sign.keyless", fromlist=["available"]).available(),
    reason="the sigstore package (the keyless extra, Python >= 3.10) is not installed")


def _image() -> Descriptor:
    data = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}'
    return Descriptor(MediaType.OCI_MANIFEST, sha256_digest(data), len(data))


def _store_with(signed) -> MemoryStore:
    store = MemoryStore("registry example.com/app")
    for d, data in signed.store._blobs.items():
        store.add_blob(data, d)
    manifest = signed.store.fetch_manifest(str(signed.attachment.digest))
    store.add_manifest(manifest)
    return store


def test_our_bundle_is_a_cosign_v3_referrer_and_verifies_with_our_key(tmp_path):
    key, image = keys.generate(), _image()
    signed = SigstoreBundle().sign(key, "example.com/app", image.digest, image)
    store = _store_with(signed)
    manifest = store.fetch_manifest(str(signed.attachment.digest))
    assert manifest.artifact_type == BUNDLE_V03 and manifest.subject.digest == image.digest
    assert [layer.media_type for layer in manifest.layers] == [BUNDLE_V03]
    found = SigstoreBundle().find(store, image.digest)
    assert [a.digest for a in found] == [signed.attachment.digest] and found[0].kind == "signature"
    verified = SigstoreBundle().verify(store, found[0], key.public, image.digest)
    assert verified.docker_reference == "example.com/app" and verified.key == key.public.fingerprint
    # The legacy format does not see it (no .sig tag), both formats together do.
    with pytest.raises(SignatureError, match="no legacy signature"):
        find_verified(CosignLegacy(), store, key.public, image.digest)
    assert find_verified(signature_formats("both"), store, key.public, image.digest)[1].name == "bundle"


def test_bundle_signature_refused_with_another_key_for_another_digest_or_when_an_attestation():
    key, image = keys.generate(), _image()
    store = _store_with(SigstoreBundle().sign(key, "example.com/app", image.digest, image))
    att = SigstoreBundle().find(store, image.digest)[0]
    with pytest.raises(SignatureError, match="does not verify with key"):
        SigstoreBundle().verify(store, att, keys.generate().public, image.digest)
    other = sha256_digest(b"another manifest")
    with pytest.raises(SignatureError, match="refers to another manifest"):
        SigstoreBundle().verify(store, att, key.public, other)
    # A statement for another digest, validly signed, is refused by what it says.
    doc = json.loads(make_bundle(key, other, "example.com/app"))
    from airgap.sign.dsse import Envelope
    with pytest.raises(SignatureError, match="not for"):
        check_signs_image(parse_statement(Envelope.from_json(doc["dsseEnvelope"])), image.digest)
    spdx = Envelope("application/vnd.in-toto+json", json.dumps(
        {"_type": "https://in-toto.io/Statement/v1", "predicateType": "https://spdx.dev/Document",
         "subject": [{"digest": {"sha256": image.digest.hex}}], "predicate": {}}).encode(), [b"x"])
    with pytest.raises(SignatureError, match="attestation, not a cosign signature"):
        check_signs_image(parse_statement(spdx), image.digest)


def test_kept_bundles_give_the_same_referrer_every_time_and_a_damaged_one_is_replaced(tmp_path):
    key, image = keys.generate(), _image()
    keeper = BundleKeeper(tmp_path)
    first = keeper.bundle(key, "example.com/app", image.digest)
    assert keeper.bundle(key, "example.com/app", image.digest) == first
    fmt = SigstoreBundle(keeper)
    assert fmt.sign(key, "example.com/app", image.digest, image).attachment.digest == \
        fmt.sign(key, "example.com/app", image.digest, image).attachment.digest
    kept = next(tmp_path.rglob("*.sigstore.json"))
    kept.write_bytes(kept.read_bytes().replace(b'"sig":"', b'"sig":"AAAA'))
    again = keeper.bundle(key, "example.com/app", image.digest)
    assert again != first and json.loads(again)["mediaType"] == BUNDLE_V03


def test_statement_is_cosign_v3s():
    d = _image().digest
    doc = json.loads(make_statement(d))
    assert doc == {"_type": "https://in-toto.io/Statement/v1", "subject": [{"digest": {"sha256": d.hex}}],
                   "predicateType": "https://sigstore.dev/cosign/sign/v1", "predicate": {}}


# -- keyless, real public-good bundles, offline -------------------------------------------------------

@needs_sigstore
@pytest.mark.parametrize("bundle, root", [("dsse-v3-happy", PUBLIC_GOOD),
                                          ("rekor2-dsse-happy", DATA / "rekor2-dsse-happy.trusted_root.json")])
def test_public_good_keyless_bundles_verify_offline(bundle, root):
    trust = KeylessTrust(root, identity=BEACON, issuer=GITHUB)
    result = verify_bundle((DATA / f"{bundle}.sigstore.json").read_bytes(), trust)
    assert (result.identity, result.issuer) == (BEACON, GITHUB)
    assert parse_statement(result.envelope).subjects == [("a.txt", {"sha256": A_TXT.hex})]
    regexp = KeylessTrust(root, identity_regexp=r"https://github\.com/sigstore-conformance/.+@refs/heads/main",
                          issuer_regexp=r"https://token\.actions\.githubusercontent\.com")
    assert verify_bundle((DATA / f"{bundle}.sigstore.json").read_bytes(), regexp).identity == BEACON


@needs_sigstore
@pytest.mark.parametrize("trust, message", [
    (KeylessTrust(PUBLIC_GOOD, identity="release@example.com", issuer=GITHUB), "certificate identity is .* not release@"),
    (KeylessTrust(PUBLIC_GOOD, identity=BEACON, issuer="https://accounts.google.com"), "certificate issuer is"),
    (KeylessTrust(PUBLIC_GOOD, identity_regexp="https://github.com/other/.*", issuer=GITHUB), "not a match of"),
    # The staging root does not know production's Fulcio: the chain does not build.
    (KeylessTrust(DATA / "rekor2-dsse-happy.trusted_root.json", identity=BEACON, issuer=GITHUB), "rejected"),
])
def test_wrong_identity_issuer_or_root_is_refused_in_one_line(trust, message):
    with pytest.raises(SignatureError, match=message) as exc:
        verify_bundle((DATA / "dsse-v3-happy.sigstore.json").read_bytes(), trust)
    assert "\n" not in str(exc.value)


@needs_sigstore
@pytest.mark.parametrize("vector, message", [("dsse-invalid-sig", "invalid signature"),
                                             ("dsse-mismatch-envelope", "does not match")])
def test_conformance_failure_vectors_are_refused(vector, message):
    with pytest.raises(SignatureError, match=message):
        verify_bundle((DATA / f"{vector}.sigstore.json").read_bytes(),
                      KeylessTrust(PUBLIC_GOOD, identity=BEACON, issuer=GITHUB))


@needs_sigstore
def test_an_altered_payload_is_refused():
    doc = json.loads((DATA / "dsse-v3-happy.sigstore.json").read_bytes())
    statement = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    statement["subject"][0]["digest"]["sha256"] = "0" * 64
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    with pytest.raises(SignatureError, match="rejected"):
        verify_bundle(json.dumps(doc).encode(), KeylessTrust(PUBLIC_GOOD, identity=BEACON, issuer=GITHUB))


def test_keyless_trust_needs_one_identity_and_one_issuer_and_real_regexps(tmp_path):
    with pytest.raises(InputError, match="identity"):
        KeylessTrust(tmp_path, issuer=GITHUB)
    with pytest.raises(InputError, match="issuer"):
        KeylessTrust(tmp_path, identity="a", issuer=GITHUB, issuer_regexp=".*")
    with pytest.raises(InputError, match="not a regular expression"):
        KeylessTrust(tmp_path, identity_regexp="(", issuer=GITHUB)


@needs_sigstore
def test_a_broken_trusted_root_is_an_input_error(tmp_path):
    bad = tmp_path / "root.json"
    bad.write_text('{"mediaType": "nope"}')
    with pytest.raises(InputError, match="not a Sigstore trusted_root.json"):
        verify_bundle((DATA / "dsse-v3-happy.sigstore.json").read_bytes(),
                      KeylessTrust(bad, identity=BEACON, issuer=GITHUB))
