"""A private Sigstore made by the test: a Fulcio-like CA, a CT log and a Rekor-like transparency log,
each with its own key, and the ``trusted_root.json`` naming them. It issues what public-good Sigstore
issues for a keyless signature, so sigstore-python's verifier checks it like a real one, offline:

- a short-lived leaf certificate for an ephemeral P-256 key, with the signer's identity as SAN (e-mail
  or URI), the OIDC issuer in extension 1.3.6.1.4.1.57264.1.8 (DER UTF8String, and the older .1.1),
  code-signing EKU, and an embedded SCT from the CT log over the precertificate (RFC 6962);
- a DSSE envelope over the payload, signed with the ephemeral key;
- a Rekor v1 ``dsse/0.0.1`` entry for it in a one-entry Merkle tree: inclusion proof (no hashes: the
  leaf is the root), a signed checkpoint (a signed note) and an inclusion promise (SET) over the
  canonical entry, whose integrated time lies inside the certificate's validity.

Nothing here is a stand-in for a server: no server runs; the verifier is the real sigstore-python.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SCT_LIST_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
IN_TOTO = "application/vnd.in-toto+json"
BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
ORIGIN = "rekor.airgap.test - 1"


def _der(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _utf8string(text: str) -> bytes:
    raw = text.encode()
    assert len(raw) < 128
    return bytes([0x0C, len(raw)]) + raw


def _pae(payload_type: str, payload: bytes) -> bytes:
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def _sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


@dataclass
class PrivateSigstore:
    root: Path   # where trusted_root.json is written

    def __post_init__(self) -> None:
        self.now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ct_key = ec.generate_private_key(ec.SECP256R1())
        self.log_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "airgap.test"),
                          x509.NameAttribute(NameOID.COMMON_NAME, "airgap test fulcio")])
        ski = x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key())
        self.ca_cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - dt.timedelta(days=1)).not_valid_after(self.now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(self.ca_key, hashes.SHA256()))
        self.root.mkdir(parents=True, exist_ok=True)
        self.trusted_root = self.root / "trusted_root.json"
        self.trusted_root.write_text(json.dumps(self.trusted_root_doc(), indent=1))

    def _key_entry(self, key: ec.EllipticCurvePrivateKey, url: str) -> dict:
        der = _der(key.public_key())
        return {"baseUrl": url, "hashAlgorithm": "SHA2_256",
                "publicKey": {"rawBytes": _b64(der), "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                              "validFor": {"start": (self.now - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")}},
                "logId": {"keyId": _b64(hashlib.sha256(der).digest())}}

    def trusted_root_doc(self) -> dict:
        return {"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
                "tlogs": [self._key_entry(self.log_key, "https://rekor.airgap.test")],
                "certificateAuthorities": [{
                    "subject": {"organization": "airgap.test", "commonName": "airgap test fulcio"},
                    "uri": "https://fulcio.airgap.test",
                    "certChain": {"certificates": [{"rawBytes": _b64(self.ca_cert.public_bytes(
                        serialization.Encoding.DER))}]},
                    "validFor": {"start": (self.now - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")}}],
                "ctlogs": [self._key_entry(self.ct_key, "https://ctfe.airgap.test")],
                "timestampAuthorities": []}

    # -- Fulcio ---------------------------------------------------------------------------------
    def _leaf(self, key: ec.EllipticCurvePrivateKey, identity: str, issuer: str, serial: int,
              sct_list: bytes) -> x509.Certificate:
        san: x509.GeneralName = (x509.RFC822Name(identity) if "@" in identity and "://" not in identity
                                 else x509.UniformResourceIdentifier(identity))
        return (
            x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(self.ca_cert.subject)
            .public_key(key.public_key()).serial_number(serial)
            .not_valid_before(self.now - dt.timedelta(minutes=1)).not_valid_after(self.now + dt.timedelta(minutes=10))
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.SubjectAlternativeName([san]), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.UnrecognizedExtension(ISSUER_V1, issuer.encode()), critical=False)
            .add_extension(x509.UnrecognizedExtension(ISSUER_V2, _utf8string(issuer)), critical=False)
            .add_extension(x509.UnrecognizedExtension(SCT_LIST_OID, sct_list), critical=False)
            .sign(self.ca_key, hashes.SHA256()))

    def _sct_list(self, timestamp_ms: int, signature: bytes) -> bytes:
        log_id = hashlib.sha256(_der(self.ct_key.public_key())).digest()
        sct = (struct.pack("!B32sQH", 0, log_id, timestamp_ms, 0) + struct.pack("!BBH", 4, 3, len(signature))
               + signature)
        tls = struct.pack("!H", len(sct) + 2) + struct.pack("!H", len(sct)) + sct
        return bytes([0x04, len(tls)]) + tls if len(tls) < 128 else bytes([0x04, 0x81, len(tls)]) + tls

    def certificate(self, key: ec.EllipticCurvePrivateKey, identity: str, issuer: str) -> x509.Certificate:
        """A Fulcio-like leaf with an SCT over its precertificate (RFC 6962 digitally-signed struct)."""
        serial = x509.random_serial_number()
        timestamp_ms = int(self.now.timestamp() * 1000)
        dummy = self._leaf(key, identity, issuer, serial, self._sct_list(timestamp_ms, b"\x00" * 72))
        tbs = dummy.tbs_precertificate_bytes
        issuer_key_hash = hashlib.sha256(_der(self.ca_key.public_key())).digest()
        entry = issuer_key_hash + struct.pack("!I", len(tbs))[1:] + tbs
        signed = struct.pack("!BBQH", 0, 0, timestamp_ms, 1) + entry + struct.pack("!H", 0)
        return self._leaf(key, identity, issuer, serial, self._sct_list(timestamp_ms, _sign(self.ct_key, signed)))

    # -- Rekor ----------------------------------------------------------------------------------
    def _tlog_entry(self, cert: x509.Certificate, envelope: dict, payload: bytes, signature: bytes) -> dict:
        pem = cert.public_bytes(serialization.Encoding.PEM)
        body = {"apiVersion": "0.0.1", "kind": "dsse", "spec": {
            "envelopeHash": {"algorithm": "sha256",
                             "value": hashlib.sha256(json.dumps(envelope, separators=(",", ":")).encode()).hexdigest()},
            "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
            "signatures": [{"signature": _b64(signature), "verifier": _b64(pem)}]}}
        canonical = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        log_id = hashlib.sha256(_der(self.log_key.public_key())).digest()
        integrated = int(self.now.timestamp())
        # One entry: the tree's root is the leaf hash, and the inclusion proof has no hashes.
        root = hashlib.sha256(b"\x00" + canonical).digest()
        note = f"{ORIGIN}\n1\n{_b64(root)}\n"
        note_sig = _sign(self.log_key, note.encode())
        checkpoint = f"{note}\n\u2014 {ORIGIN.split(' ')[0]} {_b64(log_id[:4] + note_sig)}\n"
        set_payload = json.dumps({"body": _b64(canonical), "integratedTime": integrated, "logID": log_id.hex(),
                                  "logIndex": 0}, separators=(",", ":"), sort_keys=True).encode()
        return {"logIndex": "0", "logId": {"keyId": _b64(log_id)},
                "kindVersion": {"kind": "dsse", "version": "0.0.1"}, "integratedTime": str(integrated),
                "inclusionPromise": {"signedEntryTimestamp": _b64(_sign(self.log_key, set_payload))},
                "inclusionProof": {"logIndex": "0", "rootHash": _b64(root), "treeSize": "1", "hashes": [],
                                   "checkpoint": {"envelope": checkpoint}},
                "canonicalizedBody": _b64(canonical)}

    def sign_dsse(self, payload: bytes, identity: str, issuer: str, payload_type: str = IN_TOTO) -> bytes:
        """A keyless Sigstore bundle (v0.3) of a DSSE envelope over ``payload``, signed as ``identity``."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self.certificate(key, identity, issuer)
        signature = _sign(key, _pae(payload_type, payload))
        envelope = {"payload": _b64(payload), "payloadType": payload_type, "signatures": [{"sig": _b64(signature)}]}
        doc = {"mediaType": BUNDLE_V03,
               "verificationMaterial": {"certificate": {"rawBytes": _b64(cert.public_bytes(serialization.Encoding.DER))},
                                        "tlogEntries": [self._tlog_entry(cert, envelope, payload, signature)]},
               "dsseEnvelope": envelope}
        return json.dumps(doc).encode()
