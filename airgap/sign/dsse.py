"""DSSE envelopes over in-toto statements, the content of a cosign v3 image signature (Sigstore bundle).

cosign v3 ``sign`` (cmd/cosign/cli/sign/sign.go ``signDigestBundle``) signs an in-toto Statement v1
whose subject is the image manifest digest and whose predicate type is ``https://sigstore.dev/cosign/sign/v1``
(an empty predicate), wrapped in a DSSE envelope: the signature is over PAE(payloadType, payload)
(DSSE protocol v1), never over the payload alone. cosign 2.5 ``attest`` writes Statement v0.1 with the
same layout; both are accepted.

The key-based path is written here, not taken from the ``sigstore`` package: it is a few lines over
``cryptography``, sigstore-python verifies only certificate-bearing bundles, and it needs Python 3.10
while airgap runs on 3.9. Keyless verification is :mod:`airgap.sign.keyless`.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from airgap.errors import SignatureError
from airgap.model import Digest

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_V1 = "https://in-toto.io/Statement/v1"
STATEMENT_V01 = "https://in-toto.io/Statement/v0.1"
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 Pre-Authentication Encoding: what the signature covers."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def make_statement(digest: Digest, name: str = "") -> bytes:
    """cosign v3's signing statement for an image digest; ``name`` (the signed repository, as cosign
    2.5's ``attest`` writes it) lets a verifier check which image the signer meant, like the legacy
    payload's docker-reference."""
    subject: dict[str, Any] = {"digest": {digest.algorithm: digest.hex}}
    if name:
        subject = {"name": name, **subject}
    doc = {"_type": STATEMENT_V1, "subject": [subject], "predicateType": COSIGN_SIGN_PREDICATE, "predicate": {}}
    return json.dumps(doc, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: list[bytes]   # raw (DER) signatures

    def to_json(self) -> dict:
        return {"payload": base64.b64encode(self.payload).decode(), "payloadType": self.payload_type,
                "signatures": [{"sig": base64.b64encode(s).decode()} for s in self.signatures]}

    @classmethod
    def from_json(cls, doc: Any) -> Envelope:
        try:
            payload = base64.b64decode(doc["payload"], validate=True)
            ptype = doc["payloadType"]
            sigs = [base64.b64decode(s["sig"], validate=True) for s in doc["signatures"]]
        except (KeyError, TypeError, ValueError):
            raise SignatureError("DSSE envelope is malformed (payload, payloadType, signatures[].sig)") from None
        if not isinstance(ptype, str) or not sigs:
            raise SignatureError("DSSE envelope has no payload type or no signature")
        return cls(ptype, payload, sigs)


@dataclass(frozen=True)
class Statement:
    predicate_type: str
    subjects: list[tuple[str, dict[str, str]]]  # (name, {algorithm: hex})


def parse_statement(envelope: Envelope) -> Statement:
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise SignatureError(f"DSSE payload is {envelope.payload_type!r}, not an in-toto statement")
    try:
        doc = json.loads(envelope.payload)
        kind, ptype = doc["_type"], doc["predicateType"]
        subjects = [(str(s.get("name", "")), dict(s["digest"])) for s in doc["subject"]]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise SignatureError("signed payload is not an in-toto statement") from None
    if kind not in (STATEMENT_V1, STATEMENT_V01):
        raise SignatureError(f"signed statement has type {kind!r}, not an in-toto Statement")
    return Statement(str(ptype), subjects)


def check_signs_image(statement: Statement, digest: Digest) -> str:
    """The statement is cosign's signature of ``digest``; returns the subject's name ('' when none)."""
    if statement.predicate_type != COSIGN_SIGN_PREDICATE:
        raise SignatureError(f"signed statement is a {statement.predicate_type!r} attestation, not a cosign "
                             f"signature ({COSIGN_SIGN_PREDICATE})")
    for name, digests in statement.subjects:
        if digests.get(digest.algorithm) == digest.hex:
            return name
    claimed = ", ".join(f"{k}:{v}" for _, d in statement.subjects for k, v in d.items()) or "nothing"
    raise SignatureError(f"signature is for {claimed}, not for {digest} (swapped or modified manifest)")
